//! How both SQL stores flatten lists into TEXT columns and map driver errors. Shared so the
//! SQLite and PostgreSQL stores read and write the very same column contents.

use sspr_app::ports::StoreError;
use sspr_domain::Method;

/// How many times an SQLite statement has failed on its file (full disk, I/O error,
/// read-only, cannot open). A connection opened before the latest one is replaced before it is
/// lent again (see `sqlite_conn`). A count, not a time: a clock that jumps cannot hide a
/// fault. Load (a busy lock, a timeout) does not count: reopening then would only add work.
static FILE_FAULTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn file_faults() -> u64 {
    FILE_FAULTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A driver error, marked unavailable when it is about the store rather than the statement:
/// no connection in time, the connection lost, an I/O error, a full disk, a read-only file or
/// database, a lock held too long, a statement cancelled by its deadline, a server shutting
/// down.
pub(crate) fn err(e: sqlx::Error) -> StoreError {
    let file_fault = match &e {
        sqlx::Error::Database(d) => {
            d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_none()
                && d.code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .is_some_and(|n| matches!(n & 0xff, 8 | 10 | 13 | 14))
        }
        _ => false,
    };
    if file_fault {
        FILE_FAULTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let unavailable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let postgres = d
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some();
            d.code().is_some_and(|c| unavailable_code(&c, postgres))
        }
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(e.to_string())
    } else {
        StoreError(e.to_string())
    }
}

/// SQLite extended result codes (decimal) and PostgreSQL SQLSTATEs that mean "the store cannot
/// serve right now".
fn unavailable_code(code: &str, postgres: bool) -> bool {
    if !postgres {
        // SQLite: the primary code is the low byte. BUSY 5, LOCKED 6, READONLY 8, IOERR 10,
        // FULL 13, CANTOPEN 14.
        return code
            .parse::<i64>()
            .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14));
    }
    // PostgreSQL: connection exceptions (08), insufficient resources such as a full disk (53),
    // shutdown or not accepting connections (57P01..57P04), statement or lock timeouts
    // (57014, 55P03), and a read-only server (25006, e.g. a standby after failover).
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "57014" | "55P03" | "25006")
}

pub(crate) fn join<T: AsRef<str>>(v: &[T]) -> String {
    v.iter().map(|s| s.as_ref()).collect::<Vec<_>>().join(",")
}

pub(crate) fn methods_csv(v: &[Method]) -> String {
    v.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
}

pub(crate) fn parse_methods(s: &str) -> Vec<Method> {
    s.split(',').filter_map(Method::parse).collect()
}

pub(crate) fn split(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unavailable_code;

    #[test]
    fn store_unavailable_codes() {
        // SQLite: SQLITE_FULL, SQLITE_READONLY_DBMOVED (extended), SQLITE_IOERR_WRITE, BUSY.
        for c in ["13", "1032", "778", "5"] {
            assert!(unavailable_code(c, false), "{c}");
        }
        // SQLite: constraint, generic error.
        for c in ["2067", "1", "19"] {
            assert!(!unavailable_code(c, false), "{c}");
        }
        // PostgreSQL: disk full, admin shutdown, cannot connect now, statement timeout.
        for c in ["53100", "57P01", "57P03", "57014", "08006", "25006"] {
            assert!(unavailable_code(c, true), "{c}");
        }
        // PostgreSQL: unique violation, syntax error, serialization failure.
        for c in ["23505", "42601", "40001"] {
            assert!(!unavailable_code(c, true), "{c}");
        }
    }
}
