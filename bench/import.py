#!/usr/bin/env python3
"""`sspr users import`: users per second, total time and peak memory, for this tree and a
baseline commit built in the same run (the machine is shared: compare the rows of one run,
not figures across runs).

    bench/import.py [--users 1000000] [--baseline-users 2000] [--baseline 0cdb43f|none]
                    [--store sqlite|postgres] [--debug]

`--users 0` leaves out the pre-hashed row; `--baseline-users 0` the plaintext rows (and the
baseline build).

Each row imports a generated CSV (`login,display_name,email,mobile,groups,password`, one group
each) into a fresh data directory (SQLite) or a fresh schema (PostgreSQL,
`SSPR_TEST_POSTGRES_URL`, default postgres://postgres:postgres@127.0.0.1:5432/test):

- this tree, `--users` accounts with pre-hashed `{SSHA}` passwords (what an OpenLDAP export
  holds; each with its own salt): the figure the issue asks for;
- this tree and the baseline, `--baseline-users` accounts with plaintext passwords, which both
  must hash with Argon2id (m = 19 MiB, t = 2): the baseline cannot take hashes, and at about
  17.5 ms per user it would need hours for a million, so its time for a million is
  extrapolated from this row and labelled so.

Time is wall-clock for the whole command (both passes); memory is the process's peak
resident set (wait4's ru_maxrss). The baseline shares this tree's target directory so that
only the workspace crates are compiled twice; each binary is copied aside once built.
"""
import argparse
import base64
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cargo_build(cwd, debug):
    args = ["cargo", "build", "-q", "-p", "sspr", "--bin", "sspr"] + ([] if debug else ["--release"])
    subprocess.run(args, cwd=cwd, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target")))
    return os.path.join(ROOT, "target", "debug" if debug else "release", "sspr")


def build(commit, debug, keep):
    """Builds `commit` (None: this tree) and copies the binary into `keep`."""
    if commit is None:
        binary = cargo_build(ROOT, debug)
        name = "sspr-tree"
    else:
        wt = tempfile.mkdtemp(prefix="sspr-import-base.")
        subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, commit], cwd=ROOT,
                       check=True)
        try:
            binary = cargo_build(wt, debug)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT)
        name = "sspr-base"
    out = os.path.join(keep, name)
    shutil.copy2(binary, out)
    return out


def ssha(password, salt):
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password + salt).digest() + salt).decode()


def write_csv(path, n, hashed):
    with open(path, "w") as f:
        f.write("login,display_name,email,mobile,groups,password\n")
        for i in range(n):
            login = f"user{i:07d}"
            if hashed:
                pw = ssha(f"passphrase of {login}".encode(), os.urandom(8))
            else:
                # Random letters, none of them in the login, the name or "sspr", which the
                # policy would refuse as context words.
                pw = "".join(random.choice("abcdefghijkmnoqtvwxyz") for _ in range(24))
            f.write(f"{login},User {i},{login}@example.test,,staff,{pw}\n")


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True,
                   stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))


def setup(store, d):
    """The config file for a fresh installation in `d`, and a clean-up."""
    cfg = os.path.join(d, "sspr.toml")
    text = f'data_dir = "{d}/data"\ndemo = false\n'
    cleanup = lambda: None  # noqa: E731
    if store == "postgres":
        url = os.environ.get("SSPR_TEST_POSTGRES_URL",
                             "postgres://postgres:postgres@127.0.0.1:5432/test")
        schema = f"bench_import_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
        psql(url, f"CREATE SCHEMA {schema}")
        text += f'[database]\nurl = "{url}"\nschema = "{schema}"\n'
        cleanup = lambda: psql(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # noqa: E731
    with open(cfg, "w") as f:
        f.write(text)
    return cfg, cleanup


def run(binary, cfg, *args):
    """(seconds, peak RSS MiB, stdout) of one command; its stderr (progress) is shown."""
    t = time.monotonic()
    p = subprocess.Popen([binary, "-c", cfg, *args], stdout=subprocess.PIPE)
    out = p.stdout.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{binary} {' '.join(args)} exited {code}: {out}")
    return time.monotonic() - t, usage.ru_maxrss / 1024, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--baseline-users", type=int, default=2_000)
    ap.add_argument("--baseline", default="0cdb43f", help="commit to compare with, or none")
    ap.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--debug", action="store_true", help="debug builds (a quick check)")
    a = ap.parse_args()
    keep = tempfile.mkdtemp(prefix="sspr-import-bench.")
    try:
        log("== building this tree")
        head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       text=True).strip()
        tree = build(None, a.debug, keep)
        rows = [(f"this tree ({head})", tree, a.users, True)] if a.users > 0 else []
        if a.baseline_users > 0:
            rows.append((f"this tree ({head})", tree, a.baseline_users, False))
        if a.baseline not in ("", "none") and a.baseline_users > 0:
            log(f"== building baseline {a.baseline}")
            rows.append((f"baseline {a.baseline}", build(a.baseline, a.debug, keep),
                         a.baseline_users, False))
        print(f"store: {a.store}; {os.cpu_count()} cores")
        print()
        print("| build | users | passwords | total s | users/s | peak RSS MiB | 1 M users would take |")
        print("|---|---|---|---|---|---|---|")
        for label, binary, n, hashed in rows:
            d = tempfile.mkdtemp(prefix="sspr-import-run.", dir=keep)
            csv = os.path.join(d, "users.csv")
            write_csv(csv, n, hashed)
            cfg, cleanup = setup(a.store, d)
            try:
                log(f"== {label}: {n:,} users, {'{SSHA}' if hashed else 'plaintext'}")
                secs, rss, out = run(binary, cfg, "users", "import", csv)
                m = re.search(r"(\d+) added, (\d+) failed", out)
                if not m or int(m.group(1)) != n or int(m.group(2)) != 0:
                    raise SystemExit(f"{label}: unexpected summary: {out}")
                rate = n / secs
                million = 1_000_000 / rate
                took = (f"{million / 60:.1f} min (measured)" if n == 1_000_000
                        else f"~{million / 3600:.1f} h (extrapolated)" if million > 3600
                        else f"~{million / 60:.0f} min (extrapolated)")
                kind = "{SSHA} pre-hashed" if hashed else "plaintext (Argon2id)"
                print(f"| {label} | {n:,} | {kind} | {secs:.1f} | {rate:,.0f} | {rss:.0f} | {took} |",
                      flush=True)
            finally:
                cleanup()
                shutil.rmtree(d, ignore_errors=True)
    finally:
        shutil.rmtree(keep, ignore_errors=True)


if __name__ == "__main__":
    main()
