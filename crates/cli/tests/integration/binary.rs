//! The real `sspr` binary: the zero-config quick start, the admin CLI, config errors.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{client_for, extract_code, free_port};

fn sspr(dir: &std::path::Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sspr"));
    c.current_dir(dir)
        .env("SSPR_LISTEN", format!("127.0.0.1:{port}"))
        .env("SSPR_PUBLIC_URL", format!("https://localhost:{port}"))
        .env_remove("SSPR_CONFIG")
        .env_remove("RUST_LOG");
    c
}

#[tokio::test]
async fn quick_start_runs_a_reset_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The log goes to a file: a pipe nobody reads would fill up and stall the server.
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = sspr(dir.path(), port)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let ca = dir.path().join("sspr-data/tls/ca.pem");
    for _ in 0..300 {
        if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = client_for(&ca);
    let url = format!("https://localhost:{port}");
    let start = http
        .post(format!("{url}/api/v1/flow/start"))
        .json(&json!({"user": "demo"}))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = start.json().await.unwrap();
    assert_eq!(v["status"], "choose_method", "{v}");
    let token = v["flow_token"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{url}/api/v1/flow/challenge"))
        .bearer_auth(&token)
        .json(&json!({"method": "email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The dev outbox shows the "sent" code.
    let mut code = None;
    for _ in 0..100 {
        let out = sspr(dir.path(), port)
            .args(["outbox", "--json"])
            .output()
            .unwrap();
        let msgs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
        if let Some(body) = msgs.get(0).and_then(|m| m["body"].as_str()) {
            code = extract_code(body);
            if code.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = code.expect("a code in the dev outbox");
    let r = http
        .post(format!("{url}/api/v1/flow/verify"))
        .bearer_auth(&token)
        .json(&json!({"method": "email", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{url}/api/v1/flow/password"))
        .bearer_auth(&token)
        .json(&json!({"new_password": "a brand new sunny passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The CLI reads the audit log of the running server's database.
    let out = sspr(dir.path(), port)
        .args(["audit", "--user", "demo", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acts: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["activity"].as_str().unwrap())
        .collect();
    assert!(acts.contains(&"reset_password"), "{acts:?}");

    // SIGTERM stops it cleanly, and the banner told the newcomer what to do.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut stopped = None;
    for _ in 0..200 {
        if let Some(st) = child.try_wait().unwrap() {
            stopped = Some(st);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = stopped.expect("sspr did not stop on SIGTERM");
    assert!(status.success(), "{status:?}");
    let stderr = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        stderr.contains("DEV MODE")
            && stderr.contains("sspr outbox")
            && stderr.contains("password sspr-demo-initial-password"),
        "{stderr}"
    );
}

#[test]
fn cli_admin_commands_work_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let run = |args: &[&str], stdin: &str| {
        let mut c = sspr(dir.path(), port)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, _, err) = run(
        &[
            "users",
            "add",
            "zoe",
            "--name",
            "Zoe Z",
            "--email",
            "zoe@x.test",
            "--group",
            "staff",
        ],
        "short\n",
    );
    assert_eq!(code, 2, "a weak password is refused");
    assert!(err.contains("at least 15 characters"), "{err}");
    let (code, out, err) = run(
        &[
            "users",
            "add",
            "zoe",
            "--name",
            "Zoe Z",
            "--email",
            "zoe@x.test",
            "--group",
            "staff",
        ],
        "a perfectly long passphrase\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "login,display_name,email,mobile,groups,password\nyan,Yan,yan@x.test,+4915100000001,staff;it,another long passphrase\nbad,,,,,short\n").unwrap();
    let (code, out, err) = run(&["users", "import", csv.to_str().unwrap()], "");
    assert_eq!(code, 2, "one line failed: {out}{err}");
    assert!(out.contains("0 added, 1 failed"), "{out}");
    assert!(err.contains("line 3: bad:"), "{err}");
    let (code, out, _) = run(&["users", "list", "--format", "json"], "");
    assert_eq!(code, 0);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        users.as_array().unwrap().len(),
        1,
        "all or nothing: yan was not imported: {out}"
    );
    std::fs::write(&csv, "login,display_name,email,mobile,groups,password\nyan,Yan,yan@x.test,+4915100000001,staff;it,another long passphrase\n").unwrap();
    let (code, out, err) = run(&["users", "import", csv.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 added, 0 failed"), "{out}");
    assert!(err.contains("inserted accounts: 1/1"), "{err}");
    let (code, out, _) = run(&["users", "list", "--format", "json"], "");
    assert_eq!(code, 0);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2, "{out}");
    for (cmd, want) in [
        ("lock", "locked"),
        ("unlock", "unlocked"),
        ("disable", "disabled"),
        ("enable", "enabled"),
    ] {
        let (code, out, _) = run(&["users", cmd, "zoe"], "");
        assert_eq!((code, out.trim()), (0, format!("zoe {want}").as_str()));
    }
    let (code, _, _) = run(&["users", "lock", "nobody"], "");
    assert_eq!(code, 2);
    let (code, out, _) = run(&["users", "expire", "zoe"], "");
    assert_eq!(
        (code, out.trim()),
        (0, "zoe must change the password at the next sign-in")
    );
    let (code, _, err) = run(&["users", "expire", "nobody"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("pwdLastSet = 0"),
        "says where to do it instead: {err}"
    );

    // Login names that look like another: refused in words, nothing created.
    for (login, says) in [
        ("zo\u{200B}e", "invisible character (U+200B)"),
        ("\u{0437}oe", "mixes Cyrillic letters"),
        ("\u{0430}lice", "mixes Cyrillic letters"),
        ("zoe smith", "U+0020) at position 4"),
        ("\u{FB01}ona", "U+FB01) at position 1"),
    ] {
        let (code, out, err) = run(&["users", "add", login], "a perfectly long passphrase\n");
        assert_ne!(code, 0, "{login:?} was accepted: {out}");
        assert!(err.contains(says), "{login:?}: {err}");
    }
    let (_, out, _) = run(&["users", "list", "--format", "json"], "");
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 2, "{out}");
    let (code, _, _) = run(&["users", "status", "zo\u{200B}e"], "");
    assert_eq!(code, 2, "an invisible character never finds an account");

    // Policy: a bad change is refused in words and nothing changes; a good one is audited.
    let (code, _, err) = run(&["policy", "set", "methods_required=3"], "");
    assert_eq!(code, 2);
    assert!(err.contains("methods_required must be 1 or 2"), "{err}");
    let (code, out, err) = run(
        &[
            "policy",
            "set",
            "methods_required=2",
            "password.min_length=12",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(&["policy", "show", "--json"], "");
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            p["methods_required"].as_u64(),
            p["password"]["min_length"].as_u64()
        ),
        (Some(2), Some(12))
    );
    let (_, out, _) = run(
        &[
            "audit",
            "--activity",
            "policy_changed",
            "--result",
            "success",
            "--format",
            "json",
        ],
        "",
    );
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = &ev[0]["details"]["changes"];
    assert_eq!(changes["methods_required"]["old"], 1, "{ev}");
    assert_eq!(changes["methods_required"]["new"], 2);
    assert_eq!(ev[0]["client_type"], "cli");
    let (_, out, _) = run(&["audit", "--format", "csv"], "");
    assert!(
        out.starts_with("id,time,activity,actor,target,client_ip,client_type,result,reason"),
        "{out}"
    );
    let (code, _, err) = run(&["audit", "--since", "yesterday"], "");
    assert_eq!(code, 2);
    assert!(err.contains("since must be a UTC time"), "{err}");

    // An admin token is printed once and only its hash is stored.
    let (code, token, _) = run(&["admin", "token", "create", "helpdesk"], "");
    assert_eq!(code, 0);
    assert_eq!(token.trim().len(), 64);
    let db = std::fs::read(dir.path().join("sspr-data/sspr.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains(token.trim()));
}

#[test]
fn config_check_names_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sspr.toml");
    std::fs::write(
        &cfg,
        "public_url = \"http://example.test\"\n[limits]\ncode_ttl_secs = 3600\ncode_digits = 4\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["config", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("public_url must start with https://"),
        "{text}"
    );
    assert!(text.contains("code_ttl_secs"), "{text}");
    assert!(text.contains("code_digits must be 6, 7 or 8"), "{text}");
    std::fs::write(&cfg, "listen = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["config", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every problem at once: two keys that do not parse (each with the file it is in), an
    // unknown one, and what the rest then fails in its checks.
    std::fs::write(
        &cfg,
        "listen = \"nope\"\nbogus = 1\npublic_url = \"http://x.test\"\n[limits]\ncode_digits = 4\nflow_ttl_secs = \"long\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["config", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for problem in [
        "5 problems:",
        "listen: invalid socket address syntax (in ",
        "bogus: unknown field",
        "limits.flow_ttl_secs: invalid type",
        "public_url must start with https://",
        "code_digits must be 6, 7 or 8",
    ] {
        assert!(said.contains(problem), "no `{problem}` in: {said}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["config", "check"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "defaults are valid");
}

/// Everything durable about an installation, for comparing two stores.
async fn snapshot(cfg: &sspr::config::Config) -> serde_json::Value {
    use sspr_app::ports::AuditFilter;
    let (store, users) = sspr::runtime::open_store(cfg).await.unwrap();
    let mut regs = Vec::new();
    for id in store.registration_ids().await.unwrap() {
        let methods: Vec<_> = store
            .methods(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| json!([m.method.as_str(), m.status.as_str(), m.value, m.verified_at]))
            .collect();
        regs.push(json!({
            "id": id,
            "methods": methods,
            "answers": store.answers(&id).await.unwrap(),
            "confirmed": store.confirmed_at(&id).await.unwrap(),
            "totp_step": store.totp_last_step(&id).await.unwrap(),
        }));
    }
    let users: Vec<_> = users
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| {
            json!([
                u.id,
                u.display_name,
                u.enabled,
                u.locked,
                u.password_hash,
                u.email,
                u.mobile,
                u.groups
            ])
        })
        .collect();
    let audit: Vec<_> = store
        .audit_query(&AuditFilter {
            after_id: Some(0),
            limit: 100_000,
            ..AuditFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            json!([
                e.at,
                e.activity.as_str(),
                e.actor,
                e.target,
                e.client_ip,
                e.outcome.as_str(),
                e.reason,
                e.details
            ])
        })
        .collect();
    json!({
        "users": users,
        "registrations": regs,
        "policy": store.load_policy().await.unwrap(),
        "tokens": store
            .admin_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.token_hash, t.created_at, t.role))
            .collect::<Vec<_>>(),
        "reminders": store.reminders().await.unwrap().iter().map(|r| json!([r.user_id, r.expires_at, r.days, r.sent_at])).collect::<Vec<_>>(),
        "skips": store.all_registration_skips().await.unwrap(),
        "audit": audit,
    })
}

#[tokio::test]
async fn store_copy_round_trips_an_installation_through_postgresql() {
    use sspr_app::ports::{MethodRecord, MethodStatus};
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .current_dir(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    // An installation on SQLite: users, registrations, a policy, a token, audit events.
    for u in ["ann", "ben"] {
        let (code, out, err) = run(
            &[
                "users",
                "add",
                u,
                "--email",
                &format!("{u}@x.test"),
                "--group",
                "staff",
            ],
            "a long enough passphrase\n",
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    assert_eq!(run(&["policy", "set", "methods_required=2"], "").0, 0);
    assert_eq!(run(&["admin", "token", "create", "ops"], "").0, 0);
    let sqlite_cfg = sspr::config::Config {
        data_dir: dir.path().join("sspr-data"),
        demo: false,
        ..Default::default()
    };
    {
        let (store, _) = sspr::runtime::open_store(&sqlite_cfg).await.unwrap();
        for (m, v) in [
            (sspr_domain::Method::Email, "ann@x.test"),
            (sspr_domain::Method::Sms, "+4915112345678"),
        ] {
            store
                .put_method(&MethodRecord {
                    user_id: "ann".into(),
                    method: m,
                    status: MethodStatus::Active,
                    value: v.into(),
                    created_at: 5,
                    verified_at: Some(6),
                })
                .await
                .unwrap();
        }
        store
            .put_answers(
                "ben",
                &[
                    ("q1".into(), "$argon2id$fake1".into()),
                    ("q3".into(), "$argon2id$fake2".into()),
                ],
                7,
            )
            .await
            .unwrap();
        store.confirm("ann", 1234).await.unwrap();
        assert!(store.totp_use_step("ann", 99).await.unwrap());
        // A reminder already sent must not go out again from the new store.
        store
            .record_reminder(&sspr_app::ports::Reminder {
                user_id: "ann".into(),
                expires_at: 5_000_000,
                days: 7,
                sent_at: 4_400_000,
            })
            .await
            .unwrap();
        assert_eq!(
            store.skip_registration("ben", 77, 3).await.unwrap(),
            Some(1)
        );
    }
    let before = snapshot(&sqlite_cfg).await;
    assert_eq!(before["users"].as_array().unwrap().len(), 2);
    assert!(before["audit"].as_array().unwrap().len() >= 4);
    assert_eq!(before["reminders"].as_array().unwrap().len(), 1);
    assert_eq!(before["skips"], json!([["ben", 1, 77]]));

    // SQLite → PostgreSQL.
    let url = std::env::var("SSPR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("sspr_copy_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let sqlite_url = format!(
        "sqlite://{}",
        dir.path().join("sspr-data/sspr.db").display()
    );
    let (code, out, err) = run(
        &[
            "store",
            "copy",
            "--from",
            &sqlite_url,
            "--to",
            &url,
            "--to-schema",
            &schema,
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 2 users, 2 registrations"), "{out}");
    assert!(out.contains("1 reminders sent"), "{out}");
    assert!(err.contains("copying users"), "progress is shown: {err}");
    let pg_cfg = sspr::config::Config {
        database: sspr::config::DatabaseConfig {
            url: url.clone(),
            schema: Some(schema.clone()),
            password_file: None,
        },
        ..sqlite_cfg.clone()
    };
    assert_eq!(
        snapshot(&pg_cfg).await,
        before,
        "PostgreSQL holds the same installation"
    );

    // A second copy into a non-empty target is refused and changes nothing.
    let (code, _, err) = run(
        &[
            "store",
            "copy",
            "--from",
            &sqlite_url,
            "--to",
            &url,
            "--to-schema",
            &schema,
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(err.contains("already holds an installation"), "{err}");

    // And back: PostgreSQL → a new SQLite file.
    let back = dir.path().join("back.db");
    let (code, out, err) = run(
        &[
            "store",
            "copy",
            "--from",
            &url,
            "--from-schema",
            &schema,
            "--to",
            &format!("sqlite://{}", back.display()),
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let back_cfg = sspr::config::Config {
        database: sspr::config::DatabaseConfig {
            url: format!("sqlite://{}", back.display()),
            schema: None,
            password_file: None,
        },
        ..sqlite_cfg
    };
    assert_eq!(
        snapshot(&back_cfg).await,
        before,
        "the round trip loses nothing"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn reminders_run_from_the_cli_as_a_table_or_json_and_bad_settings_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sspr.toml");
    std::fs::write(
        &cfg,
        "[directory]\npassword_max_age_days = 10\n[reminders]\ndays = [0, 7]\nevery_minutes = 2\nlanguage = \"fr\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["config", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for want in [
        "reminders.days: 0 is not between 1 and 365",
        "reminders.every_minutes (2) must be between 5 and 1440",
        "reminders.language \"fr\"",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // kim's password is new and lasts 10 days: the 14-day reminder is due.
    std::fs::write(&cfg, "[directory]\npassword_max_age_days = 10\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .current_dir(dir.path())
            .args(["reminders", "run", "-c"])
            .arg(&cfg)
            .args(args)
            .env_remove("SSPR_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    add_kim(dir.path(), &["-c", &cfg.to_string_lossy()]);
    let table = run(&["--dry-run"]);
    assert!(table.contains("in 8–14 days"), "{table}");
    assert!(table.contains("would be queued"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(json["queued"], 1, "{json}");
    assert_eq!(json["dry_run"], false, "{json}");
    let json: serde_json::Value = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    assert_eq!(json["already_sent"], 1, "{json}");
    assert_eq!(json["queued"], 0, "{json}");
}

#[tokio::test]
async fn users_invite_takes_a_csv_from_hr_and_reports_each_line() {
    let dir = tempfile::tempdir().unwrap();
    add_kim(dir.path(), &[]);
    let csv = dir.path().join("new-hires.csv");
    std::fs::write(&csv, "login,channel\nkim\nnobody\nkim,fax\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .current_dir(dir.path())
        .args(["users", "invite", "--csv"])
        .arg(&csv)
        .env_remove("SSPR_CONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("line 2: invited kim by email to"),
        "{stdout}"
    );
    assert!(
        stderr.contains("line 3: nobody: There is no user"),
        "{stderr}"
    );
    assert!(stderr.contains("line 4: kim: channel \"fax\""), "{stderr}");
    // The link is in the (dev) outbox.
    let out = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .current_dir(dir.path())
        .args(["outbox", "--json"])
        .env_remove("SSPR_CONFIG")
        .output()
        .unwrap();
    let outbox = String::from_utf8_lossy(&out.stdout);
    assert!(outbox.contains("/invite/"), "{outbox}");
}

/// `sspr users add kim --email kim@example.test` in `dir`, the password on stdin.
fn add_kim(dir: &std::path::Path, extra: &[&str]) {
    let mut add = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .current_dir(dir)
        .args(["users", "add", "kim", "--email", "kim@example.test"])
        .args(extra)
        .env_remove("SSPR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        add.stdin.as_mut().unwrap(),
        b"a long enough passphrase for kim\n",
    )
    .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Issue 18's safe defaults: the demo accounts, whose passwords the README publishes, exist
/// only in the zero-config quick start. A config file (or live delivery, or an LDAP directory)
/// makes none and refuses `demo = true`; the startup message says how to make the first
/// administrator, and links follow the port listened on. Demo accounts an earlier version
/// left on such an installation are a `sspr doctor` failure while their password is the
/// published one.
#[tokio::test]
async fn a_configured_installation_has_no_demo_accounts_and_makes_its_first_admin_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let cfg = d.join("sspr.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n",
            d.join("data").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str], stdin: &str, env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .current_dir(d)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("SSPR_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let c = cfg.to_str().unwrap();

    let log_path = d.join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sspr"))
        .args(["-c", c, "serve"])
        .env_remove("SSPR_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let ca = d.join("data/tls/ca.pem");
    let mut log = String::new();
    for _ in 0..300 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if ca.exists() && log.contains("sspr is running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains(&format!("sspr is running at https://localhost:{port}")),
        "{log}"
    );
    assert!(log.contains("sspr users add --admin LOGIN"), "{log}");
    assert!(!log.contains("sspr-demo-admin-password"), "{log}");
    let (code, out, _) = run(&["-c", c, "users", "list", "--format", "json"], "", &[]);
    assert_eq!((code, out.trim()), (0, "[]"), "no demo accounts");

    // demo = true in a file is refused in words; without a file, live delivery turns it off.
    let demo = d.join("demo.toml");
    std::fs::write(&demo, "demo = true\n").unwrap();
    let (code, _, err) = run(&["-c", demo.to_str().unwrap(), "config", "check"], "", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("only in the zero-config quick start"), "{err}");
    let (_, out, _) = run(&["config", "show"], "", &[("SSPR_DELIVERY__MODE", "live")]);
    assert!(out.contains("demo = false"), "{out}");

    // The first administrator.
    let (code, out, err) = run(
        &["-c", c, "users", "add", "boss", "--admin"],
        "violet harbour lantern seventy-two\n",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = run(&["-c", c, "users", "list", "--format", "json"], "", &[]);
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        users[0]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("sspr-admins")),
        "{users}"
    );

    // doctor --user on the built-in directory looks the account up (it was ignored).
    let (code, out, _) = run(&["-c", c, "doctor", "--user", "boss"], "", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("boss found, enabled, not locked; nothing registered"),
        "{out}"
    );
    let (code, out, _) = run(&["-c", c, "doctor", "--user", "nobody"], "", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no account nobody in the built-in directory"),
        "{out}"
    );

    // Demo accounts an earlier version made here: a failure until they are disabled.
    {
        let config = sspr::config::Config::load(Some(&cfg)).unwrap();
        let rt = sspr::runtime::build(config, std::sync::Arc::new(sspr_domain::SystemClock::new()))
            .await
            .unwrap();
        sspr::runtime::create_demo_accounts(&rt).await.unwrap();
    }
    let (code, out, _) = run(&["-c", c, "doctor"], "", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL demo accounts")
            && out.contains(
                "demo-admin exists outside the quick start with the password the README publishes"
            ),
        "{out}"
    );
    for login in ["demo-admin", "demo"] {
        assert_eq!(run(&["-c", c, "users", "disable", login], "", &[]).0, 0);
    }
    let (code, out, _) = run(&["-c", c, "doctor"], "", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok   demo accounts"), "{out}");
}

/// Issue 18's CLI conventions: a listing piped into a reader that stops early ends quietly
/// (it panicked, exit 101); an unknown `--format` is an error that lists the choices (it
/// printed a table); every listing, the outbox too, takes `--format json`; an import is
/// audited account by account; a missing key file names the command that exists.
#[test]
fn cli_listings_follow_unix_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let run = |args: &[&str], stdin: &str| {
        let mut c = sspr(dir.path(), port)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(c.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let csv = dir.path().join("users.csv");
    let mut text = String::from("login,display_name,email,mobile,groups,password\n");
    for i in 0..40 {
        text.push_str(&format!(
            "user{i},User {i},user{i}@x.test,,staff,another long passphrase\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let (code, out, err) = run(&["users", "import", csv.to_str().unwrap()], "");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = run(
        &[
            "audit",
            "--activity",
            "admin_user_changed",
            "--format",
            "json",
            "--limit",
            "1000",
        ],
        "",
    );
    assert_eq!(code, 0);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let imported = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "imported")
        .count();
    assert_eq!(imported, 40, "one event per imported account");

    // The reader goes away before the listing is written.
    for args in [&["audit", "--limit", "1000"][..], &["users", "list"][..]] {
        let mut c = sspr(dir.path(), port)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(c.stdout.take());
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(o.status.code(), Some(101), "{args:?}: {err}");
    }

    for args in [
        &["users", "list", "--format", "yaml"][..],
        &["audit", "--format", "xml"][..],
    ] {
        let (code, _, err) = run(args, "");
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains("possible values: table, json, csv"), "{err}");
    }
    let (code, out, _) = run(&["outbox", "--format", "json"], "");
    assert_eq!(code, 0);
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).is_ok(),
        "{out}"
    );

    let (code, _, err) = run(&["users", "list"], "");
    assert_eq!(code, 0, "{err}");
    let missing = dir.path().join("nowhere.key");
    let (code, _, err) = {
        let o = sspr(dir.path(), port)
            .args(["users", "list"])
            .env("SSPR_SECRET_KEY_FILE", &missing)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::new(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    assert_ne!(code, 0);
    assert!(err.contains("sspr key >"), "{err}");
}

/// Run in the wrong directory, a reading command says where it looked instead of answering
/// from a new, empty database ("no users"); a command that starts an installation says it does.
#[test]
fn the_cli_in_a_directory_without_data_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["users", "list"][..],
        &["audit", "--user", "kim"],
        &["outbox"],
        &["policy", "show"],
    ] {
        let out = sspr(dir.path(), free_port()).args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(
            said.contains("no sspr installation found")
                && said.contains("/etc/sspr/sspr.toml")
                && said.contains(&format!("{}", dir.path().join("sspr-data").display())),
            "{args:?}: {said}"
        );
        assert!(
            !dir.path().join("sspr-data").exists(),
            "{args:?} created sspr-data"
        );
    }
    let mut add = sspr(dir.path(), free_port())
        .args(["users", "add", "kim"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        add.stdin.as_mut().unwrap(),
        b"a long enough passphrase for kim\n",
    )
    .unwrap();
    let out = add.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("starting a new quick-start installation at"),
        "{said}"
    );
    let out = sspr(dir.path(), free_port())
        .args(["users", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("kim"));
}

/// Issue 19 item 6: `sspr users import` checks the whole file first and writes all of it or
/// nothing; pre-hashed passwords (argon2, bcrypt, {SSHA}) are taken as they are, sign in, and
/// are upgraded to sspr's Argon2id at that sign-in; each account is audited. On PostgreSQL too
/// with `SSPR_TEST_DB=postgres`.
#[tokio::test]
async fn import_is_all_or_nothing_and_pre_hashed_accounts_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg_path = d.join("sspr.toml");
    let base = format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\n",
        d.join("data").display(),
        free_port()
    );
    std::fs::write(&cfg_path, &base).unwrap();
    let mut config = sspr::config::Config::load(Some(&cfg_path)).unwrap();
    crate::harness::use_postgres_if_asked(&mut config).await;
    if let Some(schema) = &config.database.schema {
        std::fs::write(
            &cfg_path,
            format!(
                "{base}[database]\nurl = \"{}\"\nschema = \"{schema}\"\n",
                config.database.url
            ),
        )
        .unwrap();
    }
    let c = cfg_path.to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_sspr"))
            .current_dir(d)
            .args(["-c", &c])
            .args(args)
            .env_remove("SSPR_CONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let count_users = || {
        let (code, out, err) = run(&["users", "list", "--format", "json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let before = count_users();

    let bcrypt = bcrypt::hash("bcrypt passphrase 1", 4).unwrap();
    let ssha = sspr_app::foreign_hash::ssha1("ssha passphrase 1", b"s4lt");
    let argon = sspr_app::crypto::HashPool::with_params(1, Duration::from_secs(30), 1_024, 1)
        .unwrap()
        .hash("argon passphrase 1", &sspr_domain::OsRandom)
        .await
        .unwrap();
    let mut good = String::from("login,display_name,email,mobile,groups,password\n");
    for i in 0..300 {
        good.push_str(&format!("user{i},User {i},user{i}@x.test,,staff,{ssha}\n"));
    }
    good.push_str(&format!(
        "bc,Bc,,,,{bcrypt}\nss,Ss,,,,{ssha}\nar,\"Ar, Argon\",,,,{argon}\n"
    ));
    good.push_str("pl,Pl,pl@x.test,,staff;it,a plaintext long passphrase\n");

    // The same lines with four mistakes: nothing of the 300 good lines may land.
    let mut bad: Vec<String> = good.lines().map(str::to_string).collect();
    bad[50] = "User7,dup,,,,another long passphrase".into(); // line 51, duplicate of line 9
    bad[120] = "weak,Weak,,,,short".into(); // line 121
    bad[200] = "brk,Brk,,,,$2b$04$tooshort".into(); // line 201
    bad[250] = "sha,Sha,,,,{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=".into(); // line 251
    let file = d.join("bad.csv");
    std::fs::write(&file, bad.join("\n")).unwrap();
    let (code, out, err) = run(&["users", "import", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("0 added, 4 failed") && out.contains("nothing was imported"),
        "{out}{err}"
    );
    for want in [
        "line 51: user7: the same login as line 9",
        "line 121: weak: ",
        "line 201: brk: a bcrypt hash is 60 characters",
        "line 251: sha: the password looks like an unsalted",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
    assert_eq!(count_users(), before, "nothing half-imported");

    let file = d.join("good.csv");
    std::fs::write(&file, &good).unwrap();
    let (code, out, err) = run(&["users", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("304 added, 0 failed in "), "{out}");
    assert!(
        err.contains("hashed passwords: 1/1") && err.contains("inserted accounts: 304/304"),
        "{err}"
    );
    assert_eq!(count_users(), before + 304);

    // Again: every line is now an existing account, and says so.
    let (code, _, err) = run(&["users", "import", file.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2: user0: an account with this login already exists"),
        "{err}"
    );

    let (code, out, _) = run(&[
        "audit",
        "--activity",
        "admin_user_changed",
        "--format",
        "json",
        "--limit",
        "1000",
    ]);
    assert_eq!(code, 0);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let imported = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "imported")
        .count();
    assert_eq!(imported, 304, "one event per imported account");

    let config = sspr::config::Config::load(Some(&cfg_path)).unwrap();
    let rt = sspr::runtime::build(config, std::sync::Arc::new(sspr_domain::SystemClock::new()))
        .await
        .unwrap();
    use sspr_app::ports::{Directory, PasswordCheck};
    for (login, password) in [
        ("bc", "bcrypt passphrase 1"),
        ("ss", "ssha passphrase 1"),
        ("ar", "argon passphrase 1"),
        ("pl", "a plaintext long passphrase"),
    ] {
        let user = rt.builtin.find_user(login).await.unwrap().unwrap();
        assert_eq!(
            rt.builtin
                .check_password(&user, "not the passphrase")
                .await
                .unwrap(),
            PasswordCheck::Wrong,
            "{login}"
        );
        assert_eq!(
            rt.builtin.check_password(&user, password).await.unwrap(),
            PasswordCheck::Right,
            "{login}"
        );
        let stamp = rt.builtin.password_stamp(&user).await.unwrap();
        assert_eq!(
            rt.builtin.check_password(&user, password).await.unwrap(),
            PasswordCheck::Right,
            "{login}: the upgraded hash verifies"
        );
        assert_eq!(
            rt.builtin.password_stamp(&user).await.unwrap(),
            stamp,
            "{login}: upgraded once, to sspr's own Argon2id, then left alone"
        );
    }
}
