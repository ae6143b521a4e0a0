#!/usr/bin/env python3
"""Audit queries at 10 M events: how long each query the CLI, the API and the admin viewer run
takes, on SQLite and PostgreSQL, for this tree and a baseline commit built in the same run (the
machine is shared: compare the rows of one run, not figures across runs).

    bench/audit.py [--events 10000000] [--stores sqlite,postgres] [--baseline COMMIT|none]
                   [--repeat 5] [--pg postgres://postgres:postgres@127.0.0.1:5432/postgres]

Each build and store gets its own database: the schema made by that build (`sspr migrate`),
then the events written straight into `audit` by SQL (a year of them, one every ~3 s; 100,000
users; an administrator acting in 1 %; 10 % failures with a support code; one rare activity,
`unlock_account`, in 0.01 %). Each query is timed through the admin API of a running
`sspr serve` (`GET /api/v1/admin/audit`, 100 events a page, as the CLI asks by default and the
admin viewer shows up to 200): the median of `--repeat` runs, after one warm-up run, in ms.
The CLI's own start-up (a process, the configuration, the database) is timed once per build
(`sspr audit --support-code none`).
"""
import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = 86_400
YEAR = 365 * DAY
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
USERS = 100_000

ACTIVITIES = ["reset_started", "code_sent", "method_verified", "reset_password",
              "verification_failed", "security_info_added", "change_password", "admin_sign_in",
              "flow_expired", "questions_drawn"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cargo_build(cwd, env=None):
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "sspr", "--bin", "sspr"],
                   cwd=cwd, check=True, env=env)


def build_baseline(commit):
    target = os.path.join(ROOT, "target", "conn-baseline")
    wt = tempfile.mkdtemp(prefix="sspr-audit-base.")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, commit], cwd=ROOT, check=True)
    try:
        cargo_build(wt, dict(os.environ, CARGO_TARGET_DIR=target))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT)
    return os.path.join(target, "release", "sspr")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fill_sql(n, series):
    """The INSERT … SELECT that writes `n` events; `series` is the row source of 1..n as `i`."""
    acts = "CASE WHEN i % 10000 = 7 THEN 'unlock_account' ELSE (CASE i % 10 " + " ".join(
        f"WHEN {k} THEN '{a}'" for k, a in enumerate(ACTIVITIES)) + " END) END"
    user = f"'user' || ((i * 7919) % {USERS})"
    return f"""
INSERT INTO audit (at, activity, actor, target, client_ip, client_type, outcome, reason,
                   flow_id, support_code, details)
SELECT {T0} + (i * {YEAR}) / {n},
       {acts},
       CASE WHEN i % 100 = 3 THEN 'admin' ELSE {user} END,
       {user},
       '10.' || (i % 200) || '.' || ((i / 200) % 250) || '.' || (i % 7),
       CASE i % 5 WHEN 0 THEN 'browser' WHEN 1 THEN 'browser' WHEN 2 THEN 'logon_screen'
                  WHEN 3 THEN 'api' ELSE 'ssh' END,
       CASE WHEN i % 10 = 4 THEN 'failure' ELSE 'success' END,
       CASE WHEN i % 10 = 4 THEN 'wrong_code' ELSE '' END,
       NULL,
       CASE WHEN i % 10 = 4 THEN 'SC' || i ELSE NULL END,
       '{{}}'
FROM {series}"""


def sqlite_store(binary, d, n):
    cfg = os.path.join(d, "sspr.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{d}/data"\n')
    subprocess.run([binary, "-c", cfg, "migrate"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    db = os.path.join(d, "data", "sspr.db")
    series = f"(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT i FROM c)"
    subprocess.run(["python3", "-c", f"""
import sqlite3
db = sqlite3.connect({db!r})
db.execute("PRAGMA journal_mode=WAL")
# The build's own indexes, made again after the rows are in: much faster than kept up row by row.
idx = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' AND sql IS NOT NULL")]
names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' AND sql IS NOT NULL")]
with db:
    for x in names:
        db.execute("DROP INDEX " + x)
    db.execute({fill_sql(n, series)!r})
    for x in idx:
        db.execute(x)
db.execute("ANALYZE")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
"""], check=True)
    return cfg


def pg_store(binary, d, n, pg, name):
    admin = pg
    subprocess.run(["psql", "-q", admin, "-c", f"DROP DATABASE IF EXISTS {name}"], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run(["psql", "-q", admin, "-c", f"CREATE DATABASE {name}"], check=True)
    url = pg.rsplit("/", 1)[0] + "/" + name
    cfg = os.path.join(d, "sspr.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{d}/data"\n[database]\nurl = "{url}"\n')
    subprocess.run([binary, "-c", cfg, "migrate"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    idx = [l.split("|", 1) for l in subprocess.run(
        ["psql", "-qAt", url, "-c",
         "SELECT indexname || '|' || indexdef FROM pg_indexes WHERE tablename = 'audit' AND indexname <> 'audit_pkey'"],
        check=True, capture_output=True, text=True).stdout.splitlines() if l]
    script = "".join(f"DROP INDEX {name};\n" for name, _ in idx)
    script += fill_sql(n, "generate_series(1::bigint, %d) AS s(i)" % n) + ";\n"
    script += "".join(f"{d};\n" for _, d in idx)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", "SET maintenance_work_mem = '512MB'", "-c", script],
                   check=True)
    subprocess.run(["psql", "-q", url, "-c", "VACUUM ANALYZE audit"], check=True)
    return cfg


def queries(n):
    """(label, query string): every filter the CLI, API and viewer offer."""
    month = T0 + YEAR // 2
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    some = n // 2 - (n // 2) % 10 + 4  # a failure in the middle of the log
    return [
        ("newest page", ""),
        ("--user (a user, ~100 events)", "user=user4242"),
        ("--user (admin, 1 % of all)", "user=admin"),
        ("--activity (rare)", "activity=unlock_account"),
        ("--activity (common)", "activity=code_sent"),
        ("--result failure", "result=failure"),
        ("--client-type ssh", "client_type=ssh"),
        ("--ip", "ip=10.4.20.4"),
        ("--support-code", f"support_code=SC{some}"),
        ("31-day window", f"since={iso(month)}&until={iso(month + 31 * DAY)}"),
        ("31-day window + --user", f"since={iso(month)}&until={iso(month + 31 * DAY)}&user=user4242"),
        ("31-day window + rare activity", f"since={iso(month)}&until={iso(month + 31 * DAY)}&activity=unlock_account"),
        ("--result failure --activity", "result=failure&activity=verification_failed"),
        ("page 50 (cursor)", "PAGE50"),
    ]


class Server:
    def __init__(self, binary, cfg):
        self.port = free_port()
        env = dict(os.environ, SSPR_LISTEN=f"127.0.0.1:{self.port}",
                   SSPR_PUBLIC_URL=f"https://localhost:{self.port}", RUST_LOG="warn")
        out = subprocess.run([binary, "-c", cfg, "admin", "token", "create", "bench"],
                             check=True, capture_output=True, text=True, env=env).stdout
        self.token = out.strip().split()[-1]
        self.proc = subprocess.Popen([binary, "-c", cfg, "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        for _ in range(600):
            try:
                self.get("/healthz")
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def get(self, path):
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=120) as r:
            return r.read(), r.headers.get("link")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def time_query(srv, q, repeat):
    def once():
        if q == "PAGE50":
            path, t = "/api/v1/admin/audit?limit=100", 0.0
            for _ in range(50):
                s = time.monotonic()
                body, link = srv.get(path)
                t = time.monotonic() - s
                if not link:
                    return None  # no cursors: the baseline has none
                path = link[1:link.index(">")]
            return t
        s = time.monotonic()
        body, _ = srv.get("/api/v1/admin/audit?limit=100" + ("&" + q if q else ""))
        t = time.monotonic() - s
        json.loads(body)
        return t
    once()
    times = [once() for _ in range(repeat)]
    if any(t is None for t in times):
        return None
    return statistics.median(times) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--baseline", default="0cdb43f", help="commit to compare with, or none")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pg", default="postgres://postgres:postgres@127.0.0.1:5432/postgres")
    a = ap.parse_args()
    log("== building this tree")
    cargo_build(ROOT)
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    builds = [(f"this tree ({head})", os.path.join(ROOT, "target", "release", "sspr"))]
    if a.baseline not in ("", "none"):
        log(f"== building baseline {a.baseline}")
        builds.append((f"baseline {a.baseline}", build_baseline(a.baseline)))
    results = {}
    cli = {}
    for store in a.stores.split(","):
        for bi, (label, binary) in enumerate(builds):
            d = tempfile.mkdtemp(prefix="sspr-audit-bench.")
            try:
                log(f"== {label}, {store}: writing {a.events:,} events")
                t = time.monotonic()
                cfg = (sqlite_store(binary, d, a.events) if store == "sqlite"
                       else pg_store(binary, d, a.events, a.pg, f"sspr_audit_bench_{bi}"))
                log(f"   written in {time.monotonic() - t:.0f} s")
                s = time.monotonic()
                subprocess.run([binary, "-c", cfg, "audit", "--support-code", "none"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cli[(label, store)] = (time.monotonic() - s) * 1000
                srv = Server(binary, cfg)
                try:
                    for name, q in queries(a.events):
                        ms = time_query(srv, q, a.repeat)
                        results[(name, label, store)] = ms
                        log(f"   {name}: {'n/a' if ms is None else f'{ms:.1f} ms'}")
                finally:
                    srv.stop()
            finally:
                shutil.rmtree(d, ignore_errors=True)
                if store == "postgres":
                    subprocess.run(["psql", "-q", a.pg, "-c",
                                    f"DROP DATABASE IF EXISTS sspr_audit_bench_{bi}"],
                                   stderr=subprocess.DEVNULL)
    stores = a.stores.split(",")
    cols = [(label, store) for store in stores for label, _ in builds]
    print(f"Audit API query, median of {a.repeat}, ms, at {a.events:,} events "
          "(100 events a page)\n")
    print("| query | " + " | ".join(f"{l} {s}" for l, s in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, _ in queries(a.events):
        row = []
        for l, s in cols:
            ms = results.get((name, l, s))
            row.append("n/a" if ms is None else f"{ms:.1f}")
        print(f"| {name} | " + " | ".join(row) + " |")
    print("| CLI `sspr audit --support-code none`, whole process | " +
          " | ".join(f"{cli[c]:.0f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
