#!/usr/bin/env python3
"""Expiry reminders over a large built-in directory: how long `sspr reminders run --dry-run`
takes and how much memory it holds, for this tree and a baseline commit built in the same run
(the machine is shared: compare the rows of one run, not figures across runs).

    bench/reminders.py [--users 100000,1000000] [--baseline COMMIT|none]

Each size gets a fresh SQLite data directory: the schema made by the binary itself, then the
users written straight into `dir_users` (password change times spread evenly over the last
365 days, `password_max_age_days = 365`, reminders 14/7/3/1 days ahead), so about 4 % of them
are due. The dry run reads the directory, decides each due user's reminder and queues
nothing. Time is wall-clock; memory is the process's peak resident set (wait4's ru_maxrss).
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = 86_400


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cargo_build(cwd, env=None):
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "sspr", "--bin", "sspr"],
                   cwd=cwd, check=True, env=env)


def build_baseline(commit):
    target = os.path.join(ROOT, "target", "conn-baseline")
    wt = tempfile.mkdtemp(prefix="sspr-reminders-base.")
    subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, commit], cwd=ROOT, check=True)
    try:
        cargo_build(wt, dict(os.environ, CARGO_TARGET_DIR=target))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT)
    return os.path.join(target, "release", "sspr")


def run(binary, cfg, *args):
    """(seconds, peak RSS MiB, stdout) of one command."""
    t = time.monotonic()
    p = subprocess.Popen([binary, "-c", cfg, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{binary} {' '.join(args)} exited {p.returncode}")
    return time.monotonic() - t, usage.ru_maxrss / 1024, out


def directory(binary, n, seed):
    """A data directory with `n` built-in users; the config file's path."""
    d = tempfile.mkdtemp(prefix="sspr-reminders-bench.")
    cfg = os.path.join(d, "sspr.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{d}/data"\ndemo = false\n'
                "[directory]\npassword_max_age_days = 365\n"
                "[reminders]\ndays = [14, 7, 3, 1]\n")
    run(binary, cfg, "users", "list", "--format", "json")  # creates the schema
    now = int(time.time())
    rng = random.Random(seed)
    db = sqlite3.connect(os.path.join(d, "data", "sspr.db"))
    fake = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
    rows = ((f"user{i:07d}", f"User {i}", 1, 0, fake, f"user{i:07d}@example.test", None, now,
             now - rng.randrange(365 * DAY)) for i in range(n))
    with db:
        db.executemany("INSERT INTO dir_users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO dir_groups VALUES (?, ?)",
                       ((f"user{i:07d}", "staff") for i in range(n)))
    db.close()
    return d, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", default="100000,1000000")
    ap.add_argument("--baseline", default="none", help="commit to compare with, or none")
    a = ap.parse_args()
    log("== building this tree")
    cargo_build(ROOT)
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    builds = [(f"this tree ({head})", os.path.join(ROOT, "target", "release", "sspr"))]
    if a.baseline not in ("", "none"):
        log(f"== building baseline {a.baseline}")
        builds.append((f"baseline {a.baseline}", build_baseline(a.baseline)))
    print("| build | users | due | dry run s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in a.users.split(",")):
        for label, binary in builds:
            d, cfg = directory(binary, n, seed=n)
            try:
                secs, rss, out = run(binary, cfg, "reminders", "run", "--dry-run", "--format", "json")
                due = json.loads(out).get("due")
                print(f"| {label} | {n:,} | {due:,} | {secs:.1f} | {rss:.0f} |", flush=True)
            finally:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
