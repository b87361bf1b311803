#!/usr/bin/env python3
"""How long a revocation made at one instance takes to stop its token at another.

Starts two latchkey servers (the release binary) on one fresh PostgreSQL
database, each with a data directory of its own, as two instances behind a
load balancer run. Then, COUNT times: mints a token at the first, checks that
the second accepts it, revokes it at the first (alternately by revoking its
key, DELETE /keys/{id}, and by RFC 7009, POST /auth/revoke), and polls GET /me
at the second until it answers 401. The time measured runs from the revoking
response to the first refusal. Prints the median, the 90th percentile and the
worst, and exits non-zero if any refusal took longer than --limit.

Needs Python 3 (standard library only) and a PostgreSQL server where the
given user may create databases; the database is dropped afterwards.

    python3 bench/revocation_latency.py [--count 100] [--server postgres://postgres@127.0.0.1:5432]
"""

import argparse
import base64
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "http://latchkey.bench"
PASSWORD = "revocation bench password"
# Generous, so that a refusal that never comes is told from a slow one.
GIVE_UP_AFTER = 10.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="revocations to time (default 100)")
    parser.add_argument(
        "--server",
        default=os.environ.get("LATCHKEY_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432"),
        help="the PostgreSQL server to create the database on (no database name)",
    )
    parser.add_argument("--binary", help="a built latchkey binary (default: cargo build --release)")
    parser.add_argument("--limit", type=float, default=1.0, help="worst acceptable seconds (default 1)")
    return parser.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(server, sql):
    subprocess.run(
        ["psql", f"{server}/postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
    )


class Client:
    """One kept-alive HTTP connection to one instance."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, token=None, form=None):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            # The server may close a kept-alive connection; one retry on a new one.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data and resp.getheader("content-type", "").find("json") >= 0 else None)

    def expect(self, status, method, path, **kwargs):
        got, body = self.request(method, path, **kwargs)
        if got != status:
            sys.exit(f"{method} {path} at :{self.port}: expected {status}, got {got}: {body}")
        return body


def start(binary, port, data_dir, database_url, keyring_secret, log):
    env = dict(
        os.environ,
        LATCHKEY_BIND=f"127.0.0.1:{port}",
        LATCHKEY_DATA_DIR=str(data_dir),
        LATCHKEY_DATABASE_URL=database_url,
        LATCHKEY_KEYRING_SECRET=keyring_secret,
        LATCHKEY_ISSUER=ISSUER,
        LATCHKEY_LOG_FORMAT="json",
    )
    process = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server on :{port} exited with {process.returncode}; see {log.name}")
        try:
            if Client(port).request("GET", "/ready")[0] == 200:
                return process
        except OSError:
            pass
        time.sleep(0.05)
    process.kill()
    sys.exit(f"the server on :{port} did not become ready; see {log.name}")


def login(client, email):
    return client.expect(
        200, "POST", "/auth/token", form={"grant_type": "password", "username": email, "password": PASSWORD}
    )["access_token"]


def refusal_after_revoke(one, two, login_token, kind):
    """Mints a token at one, revokes it there, and times its refusal at two."""
    key = one.expect(201, "POST", "/keys", body={"name": "bench"}, token=login_token)
    token = one.expect(
        200,
        "POST",
        "/auth/token",
        form={"grant_type": "client_credentials", "client_id": key["id"], "client_secret": key["key"]},
    )["access_token"]
    two.expect(200, "GET", "/me", token=token)
    if kind == "key":
        one.expect(204, "DELETE", f"/keys/{key['id']}", token=login_token)
    else:
        one.expect(200, "POST", "/auth/revoke", form={"token": token})
    revoked = time.perf_counter()
    while True:
        status, body = two.request("GET", "/me", token=token)
        now = time.perf_counter()
        if status == 401:
            return now - revoked
        if status != 200:
            sys.exit(f"GET /me at the second instance answered {status}: {body}")
        if now - revoked > GIVE_UP_AFTER:
            sys.exit(f"a revoked token was still accepted after {GIVE_UP_AFTER} s")


def main():
    args = parse_args()
    binary = args.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True)
        binary = str(ROOT / "target" / "release" / "latchkey")
    database = f"latchkey_bench_{secrets.token_hex(4)}"
    psql(args.server, f'CREATE DATABASE "{database}"')
    servers = []
    try:
        with tempfile.TemporaryDirectory(prefix="latchkey-bench-") as tmp:
            keyring_secret = base64.b64encode(os.urandom(32)).decode()
            ports = [free_port(), free_port()]
            for name, port in zip(["one", "two"], ports):
                log = open(Path(tmp) / f"{name}.log", "wb")
                servers.append(
                    start(binary, port, Path(tmp) / name, f"{args.server}/{database}", keyring_secret, log)
                )
            one, two = Client(ports[0]), Client(ports[1])

            # A few accounts, so that no per-account limit shapes the result.
            accounts = max(1, (args.count + 19) // 20)
            tokens = []
            for i in range(accounts):
                email = f"bench{i}@example.com"
                one.expect(201, "POST", "/users", body={"email": email, "password": PASSWORD})
                tokens.append(login(one, email))

            times = []
            for i in range(args.count):
                kind = "key" if i % 2 == 0 else "token"
                times.append(refusal_after_revoke(one, two, tokens[i % accounts], kind))
    finally:
        for process in servers:
            process.terminate()
        for process in servers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        psql(args.server, f'DROP DATABASE IF EXISTS "{database}"')

    times.sort()
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"revoke at one instance -> refused at the other, PostgreSQL, {len(times)} revocations")
    print(f"  median {ms(statistics.median(times))}   p90 {ms(p90)}   worst {ms(times[-1])}   best {ms(times[0])}")
    if times[-1] > args.limit:
        sys.exit(f"the worst ({ms(times[-1])}) is over the limit of {args.limit} s")


if __name__ == "__main__":
    main()
