//! The audit log from the real `sspr` binary: pages behind a cursor, a signed checkpoint, the
//! chain verified, and tampering with the database file found and named.

use std::process::{Command, Stdio};

use sqlx::{Connection, Executor};

fn sspr(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .current_dir(dir)
        .env_remove("SSPR_CONFIG")
        .env_remove("RUST_LOG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `users add` reads the password from standard input.
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"a long enough passphrase 1\n").unwrap();
    let o = c.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[tokio::test]
async fn the_cli_pages_verifies_and_finds_a_changed_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for u in ["ann", "bob", "cat", "dan"] {
        let (code, _, err) = sspr(d, &["users", "add", u]);
        assert_eq!(code, 0, "{err}");
    }
    // A full page says how to see the next one; that page holds the older events.
    let (code, first, err) = sspr(d, &["audit", "--limit", "2", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let cursor = err
        .split("--before ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no cursor in {err:?}"))
        .to_string();
    let (code, second, _) = sspr(
        d,
        &[
            "audit", "--limit", "2", "--format", "json", "--before", &cursor,
        ],
    );
    assert_eq!(code, 0);
    let ids = |s: &str| -> Vec<i64> {
        serde_json::from_str::<serde_json::Value>(s)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!((a.len(), b.len()), (2, 2));
    assert!(b.iter().max() < a.iter().min(), "{a:?} then {b:?}");
    let (code, _, err) = sspr(d, &["audit", "--before", "last-tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a page cursor"), "{err}");

    // A checkpoint, then the chain verifies.
    let (code, out, err) = sspr(d, &["audit", "checkpoint"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("audit checkpoint: event #"), "{out}");
    let (code, out, _) = sspr(d, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("intact: "), "{out}");
    assert!(out.contains("1 signed checkpoints agree"), "{out}");

    // Someone with the database file rewrites who an event was about.
    let db = d.join("sspr-data").join("sspr.db");
    assert!(db.exists(), "{}", db.display());
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    c.execute("UPDATE audit SET target = 'eve' WHERE id = 2")
        .await
        .unwrap();
    c.close().await.unwrap();
    let (code, out, _) = sspr(d, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("BROKEN: "), "{out}");
    assert!(out.contains("the chain breaks at event #2 "), "{out}");

    // Pruning asks for a retention.
    let (code, _, err) = sspr(d, &["audit", "prune"]);
    assert_eq!(code, 2);
    assert!(err.contains("audit.retention_days is 0"), "{err}");
    let (code, out, err) = sspr(d, &["audit", "prune", "--older-than-days", "30"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0 events older than "), "{out}");
}
