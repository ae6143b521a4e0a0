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
use sqlx::{ConnectOptions, Connection, Sqlite, SqliteConnection, Transaction};
use sspr_app::ports::StoreResult;
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Semaphore, SemaphorePermit};

use crate::codec::{err, file_faults};

/// How long a caller waits for a connection (the write lock, in effect, for the writer).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

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

/// The writer, lent until dropped. Its transactions begin `IMMEDIATE`, taking SQLite's write
/// lock at once: what one reads before its first write stays true until it commits, even
/// against another process (the CLI) writing the same file. The audit chain relies on it: an
/// append reads the newest event, then writes its successor.
pub(crate) struct Writer<'a>(MappedMutexGuard<'a, SqliteConnection>);

impl Writer<'_> {
    /// Shadows [`Connection::begin`], which begins `DEFERRED`.
    pub(crate) async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
        self.0.begin_with("BEGIN IMMEDIATE").await
    }
}

impl Deref for Writer<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.0
    }
}

impl DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.0
    }
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
    pub(crate) async fn writer(&self) -> StoreResult<Writer<'_>> {
        let lent = lend(within(self.writer.0.lock()).await?, &self.write_opts).await?;
        Ok(Writer(lent))
    }

    /// A reading connection, for reads that stand alone.
    pub(crate) async fn reader(&self) -> StoreResult<Reader<'_>> {
        let turn = within(self.free_readers.acquire())
            .await?
            .map_err(|_| err(sqlx::Error::PoolClosed))?;
        // A turn means one slot is free; the first one found is taken.
        let lent = match self.readers.iter().find_map(|s| s.0.try_lock().ok()) {
            Some(free) => free,
            None => {
                let slot = self
                    .readers
                    .first()
                    .ok_or_else(|| err(sqlx::Error::PoolClosed))?;
                within(slot.0.lock()).await?
            }
        };
        Ok(Reader {
            conn: lend(lent, &self.read_opts).await?,
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
}

/// A write that failed on a full disk or an I/O error can leave SQLite's write lock held
/// by its connection (the statement's transaction left open), and every other write would
/// then wait and fail: a connection opened before the last such failure is replaced before it
/// is lent again.
async fn lend<'a>(
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

async fn connect(opts: &SqliteConnectOptions) -> StoreResult<SqliteConnection> {
    within(opts.connect()).await?.map_err(err)
}

async fn within<T>(f: impl Future<Output = T>) -> StoreResult<T> {
    tokio::time::timeout(ACQUIRE_TIMEOUT, f)
        .await
        .map_err(|_| err(sqlx::Error::PoolTimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::sync::{Arc, Mutex as StdMutex};

    async fn open(dir: &tempfile::TempDir) -> Arc<Connections> {
        let path = dir.path().join("t.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_millis(100));
        let c = Connections::open(opts).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (n INTEGER)")
            .execute(&mut *c.writer().await.unwrap())
            .await
            .unwrap();
        Arc::new(c)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writers_take_their_turns_in_the_order_they_asked() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir).await;
        let order = Arc::new(StdMutex::new(Vec::new()));
        let first = c.writer().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (c, order) = (c.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let mut w = c.writer().await.unwrap();
                sqlx::query("INSERT INTO t (n) VALUES ($1)")
                    .bind(i)
                    .execute(&mut *w)
                    .await
                    .unwrap();
                order.lock().unwrap().push(i);
            }));
            // On this one thread, the task just spawned runs up to its wait for the writer.
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn readers_read_and_refuse_to_write() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir).await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *c.reader().await.unwrap())
            .await
            .unwrap();
        assert_eq!(n, 0);
        let refused = sqlx::query("INSERT INTO t (n) VALUES (1)")
            .execute(&mut *c.reader().await.unwrap())
            .await;
        assert!(refused.is_err(), "a reader wrote");
    }

    #[tokio::test]
    async fn a_writer_left_in_a_transaction_is_replaced_after_a_file_fault() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir).await;
        // As a write that failed on a full disk can: the transaction stays open, and with it
        // SQLite's write lock.
        {
            let mut w = c.writer().await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE; INSERT INTO t (n) VALUES (1)")
                .execute(&mut *w)
                .await
                .unwrap();
        }
        // A statement failing on the file (here: SQLITE_READONLY from a reader) is counted.
        let e = sqlx::query("INSERT INTO t (n) VALUES (2)")
            .execute(&mut *c.reader().await.unwrap())
            .await
            .unwrap_err();
        let _ = err(e);
        // The writer lent next is a new connection: its own transaction starts and commits,
        // and the abandoned one was rolled back with its connection.
        let mut w = c.writer().await.unwrap();
        let mut tx = w.begin().await.unwrap();
        sqlx::query("INSERT INTO t (n) VALUES (3)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        drop(w);
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(&mut *c.reader().await.unwrap())
            .await
            .unwrap();
        assert_eq!(rows, vec![3]);
    }
}
