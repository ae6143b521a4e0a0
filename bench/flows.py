#!/usr/bin/env python3
"""Flow starts under concurrency: the first request of every reset, against this tree and a
baseline commit built in the same run, on the zero-config server (SQLite, built-in directory).
Prints one table row per build and concurrency (the machine is shared: compare the rows of
one run, not figures across runs).

    bench/flows.py [--baseline 7447088] [--conns 1,16,64] [--secs 10] [--user demo]
                   [--paced-conns 16]

The load is wrk (apt-get install wrk): POST /api/v1/flow/start for the demo user over kept-
alive TLS connections, two client threads. Each build and concurrency gets a fresh server and
data directory, its rate limits raised (the bench measures the server, not its limits), and
the builds alternate at each concurrency. Besides throughput and latency the table shows what
one start costs the server: CPU time, context switches and bytes written (from /proc), and
the SQLite write-ahead log's size when the load ends. A last table holds each build at half
its own peak (connections that pause between starts) and shows the latency there.
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Sspr-Client"] = "api"
wrk.body = '{"user":"%s","kind":"reset"}'
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """The zero-config server in a directory of its own, start limits raised; `extra_env`
    adds settings (`SSPR_…` variables). The other bench scripts build on it."""

    def __init__(self, binary, extra_env=None):
        self.dir = tempfile.mkdtemp(prefix="sspr-bench.")
        self.port = free_port()
        self.env = dict(os.environ, SSPR_LISTEN=f"127.0.0.1:{self.port}",
                        SSPR_PUBLIC_URL=f"https://localhost:{self.port}", RUST_LOG="warn",
                        SSPR_LIMITS__ACCOUNT_STARTS__MAX="100000000",
                        SSPR_LIMITS__IP_STARTS__MAX="100000000", **(extra_env or {}))
        self.env.pop("SSPR_CONFIG", None)
        self.log = open(os.path.join(self.dir, "server.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], cwd=self.dir, env=self.env,
                                     stdout=self.log, stderr=self.log)
        for _ in range(600):
            if self.healthy():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit(f"the server did not start; see {self.dir}/server.log")

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def healthy(self):
        ca = os.path.join(self.dir, "sspr-data", "tls", "ca.pem")
        if not os.path.exists(ca):
            return False
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca,
                            f"https://localhost:{self.port}/healthz"],
                           capture_output=True, text=True)
        return r.stdout == "200"

    def counters(self):
        """(cpu seconds, context switches, bytes written) of the server so far."""
        pid = self.proc.pid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / tick
        switches = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            switches += int(line.split()[1])
            except OSError:
                pass
        written = 0
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    written = int(line.split()[1])
        return cpu, switches, written

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return -1

    def wal_mib(self):
        p = os.path.join(self.dir, "sspr-data", "sspr.db-wal")
        return os.path.getsize(p) / 2**20 if os.path.exists(p) else 0.0

    def stop(self):
        terminate(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def terminate(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def builds(baseline, skip_baseline=False):
    """[(label, binary)]: this tree's release build, then the baseline's (built once)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    print("== building this tree", flush=True)
    cargo_build(ROOT)
    out = [(f"this tree ({head})", os.path.join(ROOT, "target", "release", "sspr"))]
    if not skip_baseline:
        print(f"== building the baseline {baseline}", flush=True)
        out.append((f"baseline {baseline}", build(baseline)))
    return out


def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


PACED = """
function delay()
  return %d
end
"""


def wrk(port, conns, secs, script):
    out = subprocess.run(["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{secs}s",
                          "--latency", "-s", script, f"https://localhost:{port}/api/v1/flow/start"],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return rate, total, lat.get("50"), lat.get("99"), int(bad.group(1)) if bad else 0, \
        errors.group(1) if errors else ""


def cargo_build(cwd, env=None):
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "sspr", "--bin", "sspr"],
                   cwd=cwd, check=True, env=env)


def build(commit):
    """The release binary of a commit, built once and kept as target/bench-bin/sspr-<commit>
    (a fixed worktree path, so a rebuild reuses cargo's cache)."""
    full = subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    kept = os.path.join(ROOT, "target", "bench-bin", f"sspr-{full}")
    if os.path.exists(kept):
        return kept
    wt = os.path.join(tempfile.gettempdir(), "sspr-bench-baseline")
    subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT, capture_output=True)
    shutil.rmtree(wt, ignore_errors=True)
    subprocess.run(["git", "worktree", "add", "-q", "--detach", wt, commit], cwd=ROOT, check=True)
    target = os.path.join(ROOT, "target", "conn-baseline")
    try:
        cargo_build(wt, dict(os.environ, CARGO_TARGET_DIR=target))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", wt], cwd=ROOT)
    os.makedirs(os.path.dirname(kept), exist_ok=True)
    shutil.copy2(os.path.join(target, "release", "sspr"), kept)
    return kept


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="7447088", help="commit to compare with")
    ap.add_argument("--conns", default="1,16,64")
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--user", default="demo", help="the user ID every start names")
    ap.add_argument("--paced-conns", type=int, default=16,
                    help="connections of the paced rows (0: none), which hold each build at "
                         "half its peak to read the latency a sized server sees")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    built = builds(a.baseline)
    script = os.path.join(tempfile.mkdtemp(prefix="sspr-flow-lua."), "start.lua")
    with open(script, "w") as f:
        f.write(LUA % a.user)

    print(f"\n{os.cpu_count()} cores; {a.secs} s per row; every start names {a.user!r}\n")
    print("| build | connections | starts/s | p50 ms | p99 ms | non-2xx | CPU ms/start | "
          "switches/start | KB written/start | WAL MiB at end | RSS MiB idle → loaded |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rates = {}
    for conns in [int(c) for c in a.conns.split(",")]:
        for label, binary in built:
            s = Server(binary)
            try:
                time.sleep(1)
                idle = s.rss_mib()
                cpu0, sw0, wr0 = s.counters()
                rate, total, p50, p99, bad, errors = wrk(s.port, conns, a.secs, script)
                cpu1, sw1, wr1 = s.counters()
                n = max(total, 1)
                rates[(label, conns)] = rate
                print(f"| {label} | {conns} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {bad} "
                      f"{('(' + errors + ')') if errors else ''}| {1000 * (cpu1 - cpu0) / n:.2f} | "
                      f"{(sw1 - sw0) / n:.1f} | {(wr1 - wr0) / 1024 / n:.1f} | {s.wal_mib():.1f} | "
                      f"{idle:.0f} → {s.rss_mib():.0f} |", flush=True)
            finally:
                s.stop()
    if a.paced_conns:
        paced_rows(built, rates, a, script)
    this, base = built[0][0], built[1][0]
    print()
    for conns in [int(c) for c in a.conns.split(",")]:
        b = rates.get((base, conns))
        if b:
            print(f"{conns} connections: this tree / baseline = {rates[(this, conns)] / b:.2f}×")


def paced_rows(built, rates, a, script):
    """Each build at half its own peak: every connection waits between its starts so that
    all of them together ask for half the build's best starts/s of the table above."""
    print(f"\nAt half the peak rate ({a.paced_conns} connections, each pausing between "
          "starts):\n")
    print("| build | peak starts/s | asked starts/s | got starts/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for label, binary in built:
        peak = max(r for (l, _), r in rates.items() if l == label)
        target = peak / 2
        paced = script + ".paced.lua"
        with open(script) as f, open(paced, "w") as out:
            out.write(f.read() + PACED % round(1000 * a.paced_conns / target))
        s = Server(binary)
        try:
            time.sleep(1)
            rate, _, p50, p99, bad, errors = wrk(s.port, a.paced_conns, a.secs, paced)
            print(f"| {label} | {peak:,.0f} | {target:,.0f} | {rate:,.0f} | {p50:.1f} | "
                  f"{p99:.1f} | {bad} {('(' + errors + ')') if errors else ''}|", flush=True)
        finally:
            s.stop()


if __name__ == "__main__":
    main()
