#!/usr/bin/env python3
"""Whole resets under concurrency, against the Argon2 bound measured in the same run, and the
server's memory while they run; this tree and a baseline commit built in the same run (the
machine is shared: compare the rows of one run, not figures across runs).

    bench/resets.py [--baseline 8104d9c] [--users 200] [--conc 2,16,200] [--secs 20]

Each build gets a fresh zero-config server (SQLite, built-in directory; start limits raised,
the metrics listener on). --users accounts are imported and each registers three security
questions through the API. Then:

- the Argon2 bound: registration sign-ins (one Argon2id verification each, nothing else of
  weight) from as many clients as the pool has slots and two more, for --secs / 2 seconds; the
  server's own count of Argon2 operations (`sspr_argon2_queue_wait_seconds_count`) over the
  elapsed time is what the pool can do on this machine right now;
- per concurrency C: C clients, each resetting its own account over and over (flow start,
  questions, three answers, a new password: four requests on one kept-alive connection) for
  --secs seconds. The row gives resets/s, the Argon2 operations one reset cost (the same
  counter), the bound that makes (operations/s ÷ operations per reset) and the share of it
  reached, latency, failures, and the server's resident memory: the peak over the row, and the
  part of it that is the allocator's (anonymous pages) rather than the binary's and libraries'.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flows  # noqa: E402
from flows import free_port  # noqa: E402



def answer(question_id):
    """Every account gives the same answer to a question: the bench's, not a secret."""
    return f"the bench's answer to {question_id}"


class Server(flows.Server):
    def __init__(self, binary):
        self.binary = binary
        self.metrics_port = free_port()
        self._ctx = None
        super().__init__(binary, {"SSPR_METRICS__LISTEN": f"127.0.0.1:{self.metrics_port}"})

    def ctx(self):
        if self._ctx is None:
            self._ctx = ssl.create_default_context(
                cafile=os.path.join(self.dir, "sspr-data", "tls", "ca.pem"))
        return self._ctx

    def connect(self):
        return http.client.HTTPSConnection("localhost", self.port, context=self.ctx(), timeout=60)

    def cli(self, *args):
        subprocess.run([self.binary, *args], cwd=self.dir, env=self.env, check=True,
                       capture_output=True)

    def argon2_ops(self):
        c = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^sspr_argon2_queue_wait_seconds_count\S* (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def memory(self):
        """(RSS MiB, anonymous MiB) now."""
        rss = anon = 0
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) / 1024
        return rss, anon


def request(conn, method, path, body=None, token=None):
    headers = {"content-type": "application/json", "x-sspr-client": "api"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, (json.loads(data) if data.startswith(b"{") else {})


def ssha(password):
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def seed(server, users):
    """Imports the accounts and registers three questions for each; returns their passwords."""
    passwords = {f"bench{i}": f"initial passphrase {i} {secrets.token_hex(6)}" for i in range(users)}
    csv = os.path.join(server.dir, "users.csv")
    with open(csv, "w") as f:
        f.write("login,display_name,email,mobile,groups,password\n")
        for login, pw in passwords.items():
            f.write(f"{login},{login},{login}@bench.test,,,{ssha(pw)}\n")
    server.cli("users", "import", csv)
    errors = []

    def register(logins):
        conn = server.connect()
        for login in logins:
            st, s = request(conn, "POST", "/api/v1/session",
                            {"user": login, "password": passwords[login]})
            if st != 200:
                errors.append(f"sign-in {login}: {st} {s}")
                continue
            st, q = request(conn, "GET", "/api/v1/questions")
            ids = [x["id"] for x in q["questions"]][:max(q.get("to_register", 3), 3)]
            answers = [{"question_id": i, "answer": answer(i)} for i in ids]
            st, r = request(conn, "PUT", "/api/v1/me/questions", {"answers": answers},
                            s["session_token"])
            if st != 200:
                errors.append(f"questions {login}: {st} {r}")
        conn.close()

    logins = list(passwords)
    threads = [threading.Thread(target=register, args=(logins[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("seeding failed: " + "; ".join(errors[:3]))
    return passwords


class Load:
    """Runs `work(conn, user)` in `conc` threads until the deadline; samples memory."""

    def __init__(self, server, conc, secs, work, users):
        self.lat, self.fail, self.done = [], {}, 0
        self.lock = threading.Lock()
        stop = time.time() + secs

        def loop(user):
            conn = server.connect()
            while time.time() < stop:
                t0 = time.perf_counter()
                try:
                    work(conn, user)
                    with self.lock:
                        self.done += 1
                        self.lat.append(time.perf_counter() - t0)
                except Exception as e:  # noqa: BLE001 - counted, not raised
                    with self.lock:
                        key = str(e)[:60]
                        self.fail[key] = self.fail.get(key, 0) + 1
                    conn.close()
                    conn = server.connect()
            conn.close()

        ops0 = server.argon2_ops()
        t0 = time.time()
        threads = [threading.Thread(target=loop, args=(users[k % len(users)],), daemon=True)
                   for k in range(conc)]
        for t in threads:
            t.start()
        self.peak, self.peak_anon = server.memory()
        while any(t.is_alive() for t in threads):
            rss, anon = server.memory()
            self.peak, self.peak_anon = max(self.peak, rss), max(self.peak_anon, anon)
            time.sleep(0.2)
        self.elapsed = time.time() - t0
        self.ops = server.argon2_ops() - ops0

    def pct(self, q):
        if not self.lat:
            return float("nan")
        s = sorted(self.lat)
        return 1000 * s[min(len(s) - 1, int(q * len(s)))]


def reset_once(n=[0]):
    def work(conn, login):
        st, flow = request(conn, "POST", "/api/v1/flow/start", {"user": login, "kind": "reset"})
        if st != 200:
            raise RuntimeError(f"start {st} {flow.get('error')}")
        token = flow["flow_token"]
        st, ch = request(conn, "POST", "/api/v1/flow/challenge", {"method": "questions"}, token)
        if st != 200:
            raise RuntimeError(f"challenge {st} {ch.get('error')}")
        answers = [{"question_id": q["id"], "answer": answer(q["id"])} for q in ch["questions"]]
        st, v = request(conn, "POST", "/api/v1/flow/verify",
                        {"method": "questions", "answers": answers}, token)
        if st != 200:
            raise RuntimeError(f"verify {st} {v.get('error')}")
        n[0] += 1
        st, p = request(conn, "POST", "/api/v1/flow/password",
                        {"new_password": f"bench passphrase {n[0]} {secrets.token_hex(8)}"}, token)
        if st != 200:
            raise RuntimeError(f"password {st} {p.get('error')}")
    return work


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="8104d9c", help="commit to compare with")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--conc", default="2,16,200")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--slots", type=int, default=2, help="limits.argon2_concurrency (default 2)")
    ap.add_argument("--skip-baseline", action="store_true")
    a = ap.parse_args()
    builds = flows.builds(a.baseline, a.skip_baseline)
    concs = [int(c) for c in a.conc.split(",")]
    print(f"\n{os.cpu_count()} cores; {a.users} accounts; {a.secs} s per row\n")
    print("| build | clients | resets/s | Argon2 ops per reset | bound resets/s | share of the "
          "bound | p50 ms | p99 ms | failed | RSS MiB idle → peak | of it anonymous at peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for label, binary in builds:
        server = Server(binary)
        try:
            passwords = seed(server, a.users)
            users = list(passwords)

            def sign_in(conn, login):
                st, s = request(conn, "POST", "/api/v1/session",
                                {"user": login, "password": passwords[login]})
                if st != 200:
                    raise RuntimeError(f"sign-in {st}")
            time.sleep(21)  # the pool gives its buffers back 10–20 s after the last hash
            idle, _ = server.memory()
            bound = Load(server, a.slots + 2, max(a.secs // 2, 5), sign_in, users)
            ops_per_s = bound.ops / bound.elapsed
            print(f"| {label} | Argon2 bound: {a.slots + 2} sign-ins at once | "
                  f"{ops_per_s:.1f} Argon2 ops/s | 1 | | | {bound.pct(.5):.0f} | "
                  f"{bound.pct(.99):.0f} | {sum(bound.fail.values())} | | |", flush=True)
            for conc in concs:
                load = Load(server, conc, a.secs, reset_once(), users)
                rate = load.done / load.elapsed
                per = load.ops / max(load.done, 1)
                limit = ops_per_s / per if per else float("nan")
                fails = sum(load.fail.values())
                why = "; ".join(f"{k} ×{v}" for k, v in list(load.fail.items())[:2])
                print(f"| {label} | {conc} | {rate:.1f} | {per:.1f} | {limit:.1f} | "
                      f"{100 * rate / limit:.0f} % | {load.pct(.5):.0f} | {load.pct(.99):.0f} | "
                      f"{fails}{' (' + why + ')' if why else ''} | {idle:.0f} → {load.peak:.0f} | "
                      f"{load.peak_anon:.0f} |", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
