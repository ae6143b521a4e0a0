#!/usr/bin/env python3
"""Email delivery throughput: a burst of codes in the outbox, sent to a local SMTP listener,
for this tree and a baseline commit built in the same run. Prints one table row per build
and setting of `[delivery.smtp] pool_size` (the machine is shared: compare the rows of one run,
not figures across runs).

    bench/delivery.py [--baseline 8104d9c] [--messages 10000] [--pools 4,16] [--postgres URL]

Each row gets a fresh server (live delivery to the listener, plain SMTP on 127.0.0.1, so the
figure is the server's own cost and not TLS's) and a fresh listener. The burst is written into
the outbox in one transaction while the server runs, as if that many users had asked for a code
at the same moment; the server's worker finds it at its next look (at most 0.5 s later). The
row gives messages per second from the first to the last arrival, the time the last message
waited in the queue against the code lifetime (`limits.code_ttl_secs`, 300 s: a code that waits
longer arrives dead), how many arrived over how many SMTP connections, and the CPU time of the
server and of the listener per message.

The listener is a minimal SMTP server in a process of its own (asyncio, no TLS, every command
answered at once); its CPU column shows it is not what limits the figure.
"""
import argparse
import asyncio
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flows  # noqa: E402
from flows import free_port  # noqa: E402

CODE_TTL = 300


def sink_main(port, count, first, last, conns, ready):
    """The listener: counts whole messages (the 250 to the end of DATA) and connections."""

    class Smtp(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport
            self.buf = b""
            self.in_data = False
            with conns.get_lock():
                conns.value += 1
            transport.write(b"220 sink ESMTP\r\n")

        def data_received(self, data):
            self.buf += data
            while True:
                if self.in_data:
                    # The body ends with CRLF . CRLF; a body that starts with the dot line is
                    # empty.
                    if self.buf.startswith(b".\r\n"):
                        end, skip = 0, 3
                    else:
                        end = self.buf.find(b"\r\n.\r\n")
                        skip = 5
                    if end < 0:
                        return
                    self.buf = self.buf[end + skip:]
                    self.in_data = False
                    now = time.time()
                    with count.get_lock():
                        count.value += 1
                        if count.value == 1:
                            first.value = now
                        last.value = now
                    self.t.write(b"250 2.0.0 queued\r\n")
                    continue
                nl = self.buf.find(b"\r\n")
                if nl < 0:
                    return
                line, self.buf = self.buf[:nl], self.buf[nl + 2:]
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    self.t.write(b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                elif verb == b"DATA":
                    self.in_data = True
                    self.t.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    self.t.write(b"221 bye\r\n")
                    self.t.close()
                    return
                else:
                    self.t.write(b"250 ok\r\n")

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Smtp, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class Sink:
    def __init__(self):
        self.port = free_port()
        self.count = multiprocessing.Value("q", 0)
        self.first = multiprocessing.Value("d", 0.0)
        self.last = multiprocessing.Value("d", 0.0)
        self.conns = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        self.proc = multiprocessing.Process(
            target=sink_main,
            args=(self.port, self.count, self.first, self.last, self.conns, ready),
            daemon=True)
        self.proc.start()
        if not ready.wait(30):
            raise SystemExit("the SMTP listener did not start")

    def cpu(self):
        return flows.proc_cpu(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.join(5)


class Server(flows.Server):
    def __init__(self, binary, smtp_port, pool, postgres):
        self.postgres = postgres
        extra = dict(SSPR_DELIVERY__MODE="live",
                     SSPR_DELIVERY__SMTP__HOST="127.0.0.1",
                     SSPR_DELIVERY__SMTP__PORT=str(smtp_port),
                     SSPR_DELIVERY__SMTP__TLS="none",
                     SSPR_DELIVERY__SMTP__ALLOW_INSECURE="true",
                     SSPR_DELIVERY__SMTP__FROM="Password reset <sspr@bench.test>",
                     SSPR_DELIVERY__SMTP__POOL_SIZE=str(pool))
        if postgres:
            extra["SSPR_DATABASE__URL"] = postgres
        super().__init__(binary, extra)

    def enqueue(self, n):
        """Writes n queued emails in one transaction; returns the commit's time."""
        now = int(time.time())
        rows = [("email", f"user{i}@bench.test", "Your password reset code",
                 f"Your code is {i % 1000000:06d}. It expires in 5 minutes.\n", "queued", now, now)
                for i in range(n)]
        sql = ("INSERT INTO outbox (channel, recipient, subject, body, status, created_at, "
               "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
        if self.postgres:
            esc = lambda v: str(v).replace("\\", "\\\\").replace("\n", "\\n")  # noqa: E731
            pg_rows = "\n".join("\t".join(esc(v) for v in r) for r in rows)
            subprocess.run(["psql", "-q", self.postgres, "-c",
                            "COPY outbox (channel, recipient, subject, body, status, created_at, "
                            "next_attempt_at) FROM STDIN"],
                           input=pg_rows + "\n", text=True, check=True)
            return time.time()
        db = sqlite3.connect(os.path.join(self.dir, "sspr-data", "sspr.db"), timeout=30)
        db.executemany(sql, rows)
        db.commit()
        t = time.time()
        db.close()
        return t


def reset_postgres(url):
    subprocess.run(["psql", "-q", url, "-c", "DROP SCHEMA public CASCADE; CREATE SCHEMA public"],
                   check=True, capture_output=True)


def one_row(label, binary, pool, n, postgres, timeout):
    if postgres:
        reset_postgres(postgres)
    sink = Sink()
    server = Server(binary, sink.port, pool, postgres)
    try:
        time.sleep(1)
        cpu0, sink0 = server.cpu(), sink.cpu()
        t0 = server.enqueue(n)
        end = time.time() + timeout
        while sink.count.value < n and time.time() < end:
            time.sleep(0.05)
        got = sink.count.value
        cpu1, sink1 = server.cpu(), sink.cpu()
        span = max(sink.last.value - sink.first.value, 1e-6)
        rate = (got - 1) / span if got > 1 else 0.0
        waited = sink.last.value - t0 if got else float("nan")
        late = "all in time" if got == n and waited <= CODE_TTL else \
            f"{n - got} not sent in {timeout} s" if got < n else "the last waited too long"
        print(f"| {label} | {pool} | {n:,} | {got:,} | {rate:,.0f} | {waited:.1f} | {late} | "
              f"{sink.conns.value} | {1000 * (cpu1 - cpu0) / max(got, 1):.2f} | "
              f"{1000 * (sink1 - sink0) / max(got, 1):.2f} |", flush=True)
        return rate
    finally:
        server.stop()
        sink.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="8104d9c", help="commit to compare with")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--pools", default="4,16", help="values of [delivery.smtp] pool_size")
    ap.add_argument("--postgres", help="run on this PostgreSQL database (its schema is wiped)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds to wait for a burst")
    ap.add_argument("--skip-baseline", action="store_true")
    a = ap.parse_args()
    builds = flows.builds(a.baseline, a.skip_baseline)
    store = "PostgreSQL" if a.postgres else "SQLite"
    print(f"\n{os.cpu_count()} cores; {store}; a burst of {a.messages:,} emails per row\n")
    print("| build | pool_size | burst | delivered | messages/s | last one waited s | "
          "against the 300 s code lifetime | SMTP connections | server CPU ms/msg | "
          "listener CPU ms/msg |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rates = {}
    for pool in [int(p) for p in a.pools.split(",")]:
        for label, binary in builds:
            rates[(label, pool)] = one_row(label, binary, pool, a.messages, a.postgres,
                                           a.timeout)
    if len(builds) > 1:
        print()
        for pool in [int(p) for p in a.pools.split(",")]:
            b = rates.get((builds[1][0], pool))
            if b:
                print(f"pool_size {pool}: this tree / baseline = "
                      f"{rates[(builds[0][0], pool)] / b:.2f}×")


if __name__ == "__main__":
    main()
