#!/usr/bin/env python3
"""Timing: do known and unknown user IDs take the same time? For this tree and a baseline
commit built in the same run, starts the real server (release build, SQLite, zero-config with
the rate limits raised so nothing is throttled), creates users, and sends interleaved requests
in a seeded random order over one keep-alive HTTPS connection:

- POST /api/v1/flow/start for registered, unregistered (no methods) and unknown IDs;
- POST /api/v1/session (registration sign-in) with a wrong password for known and unknown IDs.

Each pair of classes is compared with a two-sided Mann-Whitney U test (normal approximation,
tie and continuity corrections). Goal: no significant difference at 0.01 where the server
does the same work. A registered user's flow start answers with its masked methods and an
unknown one's with `registration_required`, so that pair differs by design; unregistered and
unknown get the same answer.

    bench/timing.py [--n 1000] [--seed S] [--ids 20] [BASELINE_COMMIT | none]

Each ID is used n/ids times (IDs of every class equally often), so the per-account throttle
counters each request reads are the same size in every class. Stdlib only.
"""
import argparse
import gc
import http.client
import json
import math
import os
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASELINE = "0f7e603"  # the parent of a088e8f (unknown IDs take the directory's path)
WARMUP = 30  # unrecorded requests per class before measuring

# Raised so that thousands of requests from one address and to one account are never
# throttled (a 429 would be fast and spoil the sample). account_failures is capped at 100 by
# validation: each ID gets fewer failed sign-ins than that (see --ids).
LIMITS = {
    "SSPR_LIMITS__IP_STARTS__MAX": "10000000",
    "SSPR_LIMITS__ACCOUNT_STARTS__MAX": "10000000",
    "SSPR_LIMITS__IP_FAILURES__MAX": "10000000",
    "SSPR_LIMITS__ACCOUNT_FAILURES__MAX": "100",
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Server:
    """One `sspr serve` in a temporary directory of its own, with its users imported first."""

    def __init__(self, binary, label, users_csv):
        self.label = label
        self.dir = tempfile.mkdtemp(prefix="sspr-timing.")
        self.port = free_port()
        self.env = dict(os.environ, SSPR_LISTEN=f"127.0.0.1:{self.port}",
                        SSPR_PUBLIC_URL=f"https://localhost:{self.port}", SSPR_DEMO="false",
                        SSPR_LOG_LEVEL="warn", **LIMITS)
        self.env.pop("SSPR_CONFIG", None)
        csv = os.path.join(self.dir, "users.csv")
        with open(csv, "w") as f:
            f.write(users_csv)
        subprocess.run([binary, "users", "import", csv], cwd=self.dir, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], cwd=self.dir, env=self.env,
                                     stdout=self.log, stderr=self.log)
        ca = os.path.join(self.dir, "sspr-data", "tls", "ca.pem")
        for _ in range(600):
            if self.proc.poll() is not None:
                break
            if os.path.exists(ca):
                try:
                    self.conn = self.connect()
                    if self.call("GET", "/healthz")[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise SystemExit(f"{label}: the server did not start; see {self.dir}/server.log")

    def connect(self):
        ctx = ssl.create_default_context(
            cafile=os.path.join(self.dir, "sspr-data", "tls", "ca.pem"))
        conn = http.client.HTTPSConnection("localhost", self.port, context=ctx, timeout=30)
        conn.connect()
        # Small requests must not wait for a delayed ACK (Nagle) on the client side either.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def call(self, method, path, body=None, token=None):
        """One request on the keep-alive connection: (status, parsed body, seconds)."""
        headers = {"content-type": "application/json", "x-sspr-client": "api"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = json.dumps(body) if body is not None else None
        for attempt in range(2):
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                elapsed = time.perf_counter() - t0
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # The server closed the idle connection: the request was not handled, so it
                # is sent again (and timed) on a fresh one.
                self.conn.close()
                if attempt:
                    raise
                self.conn = self.connect()
        if r.getheader("connection", "").lower() == "close":
            self.conn.close()
            self.conn = self.connect()
        return r.status, (json.loads(raw) if raw.startswith(b"{") else {}), elapsed

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def register(server, login, password):
    """Signs in and registers security questions: one usable method, enough for the policy."""
    st, s, _ = server.call("POST", "/api/v1/session", {"user": login, "password": password})
    if st != 200:
        raise SystemExit(f"{server.label}: sign-in of {login} failed: {st} {s}")
    st, q, _ = server.call("GET", "/api/v1/questions")
    ids = [x["id"] for x in q["questions"]][: q["to_register"]]
    answers = [{"question_id": i, "answer": f"answer {i} of {login}"} for i in ids]
    st, r, _ = server.call("PUT", "/api/v1/me/questions", {"answers": answers},
                           s["session_token"])
    if st != 200:
        raise SystemExit(f"{server.label}: registering {login} failed: {st} {r}")


def expect(server, method, path, body, status, flow_status=None):
    st, r, _ = server.call(method, path, body)
    if st != status or (flow_status and r.get("status") != flow_status):
        raise SystemExit(f"{server.label}: {path} {body} answered {st} {r}, "
                         f"expected {status} {flow_status or ''}")


def run_interleaved(server, plan, rng, status):
    """Sends `plan` ([(class, request body)]) in a shuffled order; seconds per class."""
    plan = list(plan)
    rng.shuffle(plan)
    out = {}
    gc.disable()
    try:
        for cls, path, body in plan:
            st, r, secs = server.call("POST", path, body)
            if st != status[cls]:
                raise SystemExit(f"{server.label}: {path} for {cls} answered {st} {r}")
            out.setdefault(cls, []).append(secs)
    finally:
        gc.enable()
    return out


def mann_whitney(a, b):
    """Two-sided Mann-Whitney U: (U of a, p) with the normal approximation, average ranks for
    ties, the tie correction of the variance and a continuity correction (as scipy's
    default)."""
    n1, n2 = len(a), len(b)
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    n = n1 + n2
    rank_sum_a, ties, i = 0.0, 0.0, 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2 + 1  # ranks start at 1
        t = j - i + 1
        ties += t ** 3 - t
        rank_sum_a += avg * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u = rank_sum_a - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return u, 1.0
    z = (abs(u - mu) - 0.5) / math.sqrt(var)
    return u, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


PAIRS = [
    ("flow start: registered vs unknown", "registered", "unknown"),
    ("flow start: unregistered vs unknown", "unregistered", "unknown"),
    ("sign-in, wrong password: known vs unknown", "known", "unknown id"),
]


def measure(binary, label, n, ids, seed):
    rng = random.Random(seed)
    tag = f"{rng.getrandbits(32):08x}"
    pw = {f"reg{i:03d}": f"timing bench {tag} registered {i}" for i in range(ids)}
    pw.update({f"unreg{i:03d}": f"timing bench {tag} unregistered {i}" for i in range(ids)})
    users_csv = "".join(f"{u},{u},,,staff,{p}\n" for u, p in pw.items())
    log(f"== {label}: starting the server, {2 * ids} users")
    server = Server(binary, label, users_csv)
    try:
        for i in range(ids):
            register(server, f"reg{i:03d}", pw[f"reg{i:03d}"])
        start = "/api/v1/flow/start"
        session = "/api/v1/session"
        registered = [f"reg{i:03d}" for i in range(ids)]
        unregistered = [f"unreg{i:03d}" for i in range(ids)]
        # Unknown IDs shaped like the known ones, none of which exists.
        unknown = [f"nouser{i:03d}" for i in range(ids)]
        unknown_sign_in = [f"nosign{i:03d}" for i in range(ids)]
        expect(server, "POST", start, {"user": registered[0]}, 200, "choose_method")
        expect(server, "POST", start, {"user": unregistered[0]}, 200, "registration_required")
        expect(server, "POST", start, {"user": unknown[0]}, 200, "registration_required")
        wrong = "wrong password for the timing bench"

        def plan(per_class, path, classes):
            return [(cls, path, body(ids_[k % len(ids_)]))
                    for cls, (ids_, body) in classes.items() for k in range(per_class)]

        starts = {
            "registered": (registered, lambda u: {"user": u, "kind": "reset"}),
            "unregistered": (unregistered, lambda u: {"user": u, "kind": "reset"}),
            "unknown": (unknown, lambda u: {"user": u, "kind": "reset"}),
        }
        sign_ins = {
            "known": (registered, lambda u: {"user": u, "password": wrong}),
            "unknown id": (unknown_sign_in, lambda u: {"user": u, "password": wrong}),
        }
        status = {"registered": 200, "unregistered": 200, "unknown": 200, "known": 401,
                  "unknown id": 401}
        log(f"== {label}: {3 * n} flow starts, then {2 * n} sign-ins, interleaved")
        run_interleaved(server, plan(WARMUP, start, starts), rng, status)
        samples = run_interleaved(server, plan(n, start, starts), rng, status)
        run_interleaved(server, plan(WARMUP // 3, session, sign_ins), rng, status)
        samples.update(run_interleaved(server, plan(n, session, sign_ins), rng, status))
    finally:
        server.stop()
    rows = []
    for name, a, b in PAIRS:
        ma, mb = statistics.median(samples[a]), statistics.median(samples[b])
        _, p = mann_whitney(samples[a], samples[b])
        rows.append((name, 1000 * ma, 1000 * mb, 1000 * (ma - mb), p))
    return rows


def print_table(label, n, seed, rows):
    print(f"\n### {label} (n = {n} per class, seed {seed})\n")
    print("| pair | median A ms | median B ms | difference ms | p (Mann-Whitney) | "
          "significant at 0.01 |")
    print("|---|---|---|---|---|---|")
    for name, ma, mb, d, p in rows:
        print(f"| {name} | {ma:.3f} | {mb:.3f} | {d:+.3f} | {p:.3g} | "
              f"{'yes' if p < 0.01 else 'no'} |")
    sys.stdout.flush()


def cargo_build(cwd, env=None):
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "sspr", "--bin", "sspr"],
                   cwd=cwd, check=True, env=env)


def build_baseline(commit):
    """The baseline's binary, built once per commit in a worktree under /tmp with a target
    directory of its own, and kept (target/timing-baseline/sspr-COMMIT) for later runs."""
    full = subprocess.check_output(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"],
                                   cwd=ROOT, text=True).strip()
    target = os.path.join(ROOT, "target", "timing-baseline")
    kept = os.path.join(target, f"sspr-{full[:12]}")
    if os.path.exists(kept):
        log(f"== baseline {commit}: using {kept}")
        return kept
    log(f"== building baseline {commit}")
    wt = os.path.join(tempfile.gettempdir(), f"sspr-timing-base.{full[:12]}")
    if not os.path.isdir(wt):
        subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, full], cwd=ROOT,
                       check=True)
    try:
        cargo_build(wt, dict(os.environ, CARGO_TARGET_DIR=target))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT)
    shutil.copy2(os.path.join(target, "release", "sspr"), kept)
    return kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("baseline", nargs="?", default=DEFAULT_BASELINE,
                    help=f"commit to compare with (default {DEFAULT_BASELINE}), or none")
    ap.add_argument("--n", type=int, default=1000, help="requests per class")
    ap.add_argument("--seed", type=int, default=None, help="order of the requests")
    ap.add_argument("--ids", type=int, default=20,
                    help="IDs per class; each gets n/ids requests (failed sign-ins per ID "
                         "must stay under the cap of 100)")
    a = ap.parse_args()
    if a.n / a.ids + WARMUP >= 100:
        raise SystemExit("--n / --ids must leave each ID under 100 failed sign-ins")
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)

    log("== building this tree")
    cargo_build(ROOT)
    head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                   text=True).strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    builds = [(f"this tree ({head}{', modified' if dirty else ''})",
               os.path.join(ROOT, "target", "release", "sspr"))]
    if a.baseline not in ("", "none"):
        builds.append((f"baseline {a.baseline}", build_baseline(a.baseline)))

    print(f"seed {seed}, n = {a.n} per class, {a.ids} IDs per class")
    results = []
    for label, binary in builds:
        rows = measure(binary, label, a.n, a.ids, seed)
        print_table(label, a.n, seed, rows)
        results.append((label, rows))
    if len(results) == 2:
        (tl, tr), (bl, br) = results
        print(f"\n### {bl} vs {tl}\n")
        print("| pair | baseline difference ms | baseline p | this tree difference ms | "
              "this tree p |")
        print("|---|---|---|---|---|")
        for (name, _, _, bd, bp), (_, _, _, td, tp) in zip(br, tr):
            print(f"| {name} | {bd:+.3f} | {bp:.3g} | {td:+.3f} | {tp:.3g} |")


if __name__ == "__main__":
    main()
