//! SQLite's connections, lent without sqlx's pool: one that writes and a few that only read.
//!
//! Every statement on a sqlx SQLite connection is a trip to that connection's own thread and
//! back, and those hand-overs, not SQL, are most of what a request costs (a profile of flow
//! starts: about half the server's time in the scheduler, SQLite's own code under 2 %). sqlx's
//! pool adds a trip per store call: it pings every connection given back, in a task of its
//! own. Here a connection is lent by a fair mutex and given back by dropping the guard.
//!
//! One connection writes. When several raced for SQLite's write lock, the losers slept in its
//! busy handler (1, 2, 5 … 100 ms) and retried, even after the lock was free: under load that
//! sleeping set the tail latency. Writers now wait their turn in order, bounded by
//! [`ACQUIRE_TIMEOUT`]. The readers are `query_only`: in WAL mode they never wait for the
//! writer.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use sspr_app::ports::StoreResult;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Semaphore, SemaphorePermit};

use crate::codec::{err, file_faults};

/// How long a caller waits for a connection (the write lock, in effect, for the writer).
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections that only read: a few serve the two cores this runs on.
const READERS: usize = 4;

#[derive(Debug)]
pub(crate) struct Connections {
    writer: Slot,
    readers: Vec<Slot>,
    free_readers: Semaphore,
    write_opts: SqliteConnectOptions,
    read_opts: SqliteConnectOptions,
}

#[derive(Debug)]
struct Slot(Mutex<Lent>);

#[derive(Debug)]
struct Lent {
    conn: SqliteConnection,
    /// [`file_faults`] when it was opened.
    faults: u64,
}

/// A reader, lent until dropped.
pub(crate) struct Reader<'a> {
    conn: MappedMutexGuard<'a, SqliteConnection>,
    _turn: SemaphorePermit<'a>,
}

impl Deref for Reader<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Connections {
    /// Opens the writer first (it creates the file and sets WAL), then the readers.
    pub(crate) async fn open(opts: SqliteConnectOptions) -> StoreResult<Self> {
        let read_opts = opts.clone().pragma("query_only", "ON");
        let writer = Slot::open(&opts).await?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Slot::open(&read_opts).await?);
        }
        Ok(Self {
            writer,
            readers,
            free_readers: Semaphore::new(READERS),
            write_opts: opts,
            read_opts,
        })
    }

    /// The writing connection, when its turn comes; every write, and every read inside a
    /// write, goes through it.
    pub(crate) async fn writer(&self) -> StoreResult<MappedMutexGuard<'_, SqliteConnection>> {
        let lent = within(self.writer.0.lock()).await?;
        self.writer.lend(lent, &self.write_opts).await
    }

    /// A reading connection, for reads that stand alone.
    pub(crate) async fn reader(&self) -> StoreResult<Reader<'_>> {
        let turn = within(self.free_readers.acquire())
            .await?
            .map_err(|_| err(sqlx::Error::PoolClosed))?;
        // A turn means one slot is free; the first one found is taken.
        let (slot, lent) = match self
            .readers
            .iter()
            .find_map(|s| s.0.try_lock().ok().map(|l| (s, l)))
        {
            Some(found) => found,
            None => {
                let slot = self
                    .readers
                    .first()
                    .ok_or_else(|| err(sqlx::Error::PoolClosed))?;
                (slot, within(slot.0.lock()).await?)
            }
        };
        Ok(Reader {
            conn: slot.lend(lent, &self.read_opts).await?,
            _turn: turn,
        })
    }
}

impl Slot {
    async fn open(opts: &SqliteConnectOptions) -> StoreResult<Self> {
        Ok(Self(Mutex::new(Lent {
            conn: connect(opts).await?,
            faults: file_faults(),
        })))
    }

    /// A write that failed on a full disk or an I/O error can leave SQLite's write lock held
    /// by its connection (the statement's transaction left open), and every other write would
    /// then wait and fail: a connection opened before the last such failure is replaced
    /// before it is lent again.
    async fn lend<'a>(
        &'a self,
        mut lent: MutexGuard<'a, Lent>,
        opts: &SqliteConnectOptions,
    ) -> StoreResult<MappedMutexGuard<'a, SqliteConnection>> {
        let faults = file_faults();
        if faults != lent.faults {
            let fresh = connect(opts).await?;
            let old = std::mem::replace(&mut lent.conn, fresh);
            lent.faults = faults;
            let _ = old.close_hard().await;
        }
        Ok(MutexGuard::map(lent, |l| &mut l.conn))
    }
}

async fn connect(opts: &SqliteConnectOptions) -> StoreResult<SqliteConnection> {
    within(opts.connect()).await?.map_err(err)
}

async fn within<T>(f: impl Future<Output = T>) -> StoreResult<T> {
    tokio::time::timeout(ACQUIRE_TIMEOUT, f)
        .await
        .map_err(|_| err(sqlx::Error::PoolTimedOut))
}
