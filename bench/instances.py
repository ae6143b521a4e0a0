#!/usr/bin/env python3
"""Flow starts on PostgreSQL with several instances behind nginx, against one instance on
SQLite and one on PostgreSQL, in the same run; for this tree and a baseline commit built in
the same run (the machine is shared: compare the rows of one run, not figures across runs).

    bench/instances.py --postgres URL [--baseline 8104d9c] [--conns 16,64] [--secs 10]
                       [--instances 3] [--spread]

The load is wrk (apt-get install wrk), as in bench/flows.py: POST /api/v1/flow/start for one
user over kept-alive TLS connections, start limits raised. The PostgreSQL rows use a schema of
their own in the database URL (dropped and made again for each row); every instance reads the
same TOML file but for its port and data directory, as a site runs them. nginx (apt-get
install nginx) terminates TLS and balances round-robin over kept-alive upstream connections.
Everything (instances, PostgreSQL, nginx and wrk) shares this machine's cores: on one machine,
more instances add no CPU, so the PostgreSQL rows show what the shared store costs.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flows import LUA, Server as ZeroConfig, builds, free_port, terminate, wrk  # noqa: E402

SCHEMA = "sspr_bench_instances"

# --spread: every start names a new (unknown) user from a new address (X-Forwarded-For, which
# the instances trust from 127.0.0.1), so no two starts share a rate-limit key, as when many
# people reset at once; the default load is one user from one address, every start on the
# same keys, as behind a NAT at its worst.
SPREAD = """
wrk.method = "POST"
request = function()
  local ip = "10." .. math.random(0, 255) .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
  local body = '{"user":"u' .. math.random(1, 1000000) .. '","kind":"reset"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                  ["X-Sspr-Client"] = "api", ["X-Forwarded-For"] = ip}, body)
end
"""
USER = "bench-user"


def curl_ok(port, ca):
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca,
                        f"https://localhost:{port}/healthz"], capture_output=True, text=True)
    return r.stdout == "200"


class Cluster:
    """n instances on PostgreSQL; with n > 1, nginx in front. `port` is where clients go."""

    def __init__(self, binary, n, pg_url):
        self.dir = tempfile.mkdtemp(prefix="sspr-instances-bench.")
        self.procs, self.logs = [], []
        d = self.dir
        subprocess.run(["psql", "-q", pg_url, "-c", f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; "
                        f"CREATE SCHEMA {SCHEMA}"], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost", "-keyout", f"{d}/tls.key",
                        "-out", f"{d}/tls.pem"], check=True, capture_output=True)
        with open(f"{d}/secret.key", "w") as f:
            f.write(subprocess.run([binary, "key"], check=True, capture_output=True,
                                   text=True).stdout)
        os.chmod(f"{d}/secret.key", 0o600)
        self.port = free_port()
        ports = [free_port() for _ in range(n)]
        env = dict(os.environ, RUST_LOG="warn",
                   SSPR_LIMITS__ACCOUNT_STARTS__MAX="100000000",
                   SSPR_LIMITS__IP_STARTS__MAX="100000000")
        env.pop("SSPR_CONFIG", None)
        public = self.port if n > 1 else ports[0]
        for i, port in enumerate(ports):
            cfg = f"{d}/sspr{i}.toml"
            with open(cfg, "w") as f:
                f.write(f'''data_dir = "{d}/i{i}"
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{public}"
trusted_proxies = ["127.0.0.1/32"]
secret_key_file = "{d}/secret.key"
log_level = "warn"

[tls]
cert_file = "{d}/tls.pem"
key_file = "{d}/tls.key"

[database]
url = "{pg_url}"
schema = "{SCHEMA}"

[directory]
trust_contacts = true
''')
            if i == 0:
                # The first instance makes the schema; the user is added once it has.
                self.spawn(binary, cfg, env, i)
                self.wait(port)
                add = subprocess.run([binary, "users", "add", USER, "--email",
                                      "bench@example.test", "-c", cfg], input="bench user passphrase 42\n",
                                     env=env, text=True, capture_output=True)
                if add.returncode != 0:
                    raise SystemExit(f"users add failed: {add.stderr}")
            else:
                self.spawn(binary, cfg, env, i)
        for port in ports:
            self.wait(port)
        if n > 1:
            upstreams = "".join(f"    server 127.0.0.1:{p};\n" for p in ports)
            with open(f"{d}/nginx.conf", "w") as f:
                f.write(f'''user root;
worker_processes 1;
error_log {d}/nginx-error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/ngx-body;
  proxy_temp_path {d}/ngx-proxy;
  fastcgi_temp_path {d}/ngx-fcgi;
  uwsgi_temp_path {d}/ngx-uwsgi;
  scgi_temp_path {d}/ngx-scgi;
  upstream sspr {{
{upstreams}    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {d}/tls.pem;
    ssl_certificate_key {d}/tls.key;
    location / {{
      proxy_pass https://sspr;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Host $host;
      proxy_ssl_server_name on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }}
  }}
}}
''')
            self.nginx = subprocess.Popen(["nginx", "-c", f"{d}/nginx.conf", "-g",
                                           "daemon off;"], stderr=subprocess.DEVNULL)
            self.procs.append(self.nginx)
        else:
            self.port = ports[0]
        self.wait(self.port)

    def spawn(self, binary, cfg, env, i):
        log = open(f"{self.dir}/server{i}.log", "w")
        self.logs.append(log)
        self.procs.append(subprocess.Popen([binary, "serve", "-c", cfg], env=env, stdout=log,
                                           stderr=log))

    def wait(self, port):
        for _ in range(600):
            if curl_ok(port, f"{self.dir}/tls.pem"):
                return
            time.sleep(0.1)
        raise SystemExit(f"port {port} did not answer; see {self.dir}")

    def stop(self):
        for p in self.procs:
            terminate(p)
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--postgres", required=True, help="database URL (a schema of its own is used)")
    ap.add_argument("--baseline", default="8104d9c")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--spread", action="store_true",
                    help="each PostgreSQL start a new user from a new address (no shared key)")
    a = ap.parse_args()
    for tool in ("wrk", "nginx", "openssl", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install {tool})")
    built = builds(a.baseline, a.skip_baseline)
    lua_dir = tempfile.mkdtemp(prefix="sspr-instances-lua.")
    scripts = {}
    for user in ("demo", USER):
        scripts[user] = os.path.join(lua_dir, f"{user}.lua")
        with open(scripts[user], "w") as f:
            f.write(LUA % user)
    if a.spread:
        scripts[USER] = os.path.join(lua_dir, "spread.lua")
        with open(scripts[USER], "w") as f:
            f.write(SPREAD)
    print(f"\n{os.cpu_count()} cores; {a.secs} s per row\n")
    print("| build | setup | connections | starts/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|---|---|", flush=True)
    setups = [("SQLite, 1 instance", None), ("PostgreSQL, 1 instance", 1),
              (f"PostgreSQL, {a.instances} instances + nginx", a.instances)]
    for conns in [int(c) for c in a.conns.split(",")]:
        for label, binary in built:
            for name, n in setups:
                if n is None:
                    s, user = ZeroConfig(binary), "demo"
                else:
                    s, user = Cluster(binary, n, a.postgres), USER
                try:
                    time.sleep(1)
                    rate, _, p50, p99, bad, errors = wrk(s.port, conns, a.secs, scripts[user])
                    print(f"| {label} | {name} | {conns} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | "
                          f"{bad}{' (' + errors + ')' if errors else ''} |", flush=True)
                finally:
                    s.stop()


if __name__ == "__main__":
    main()
