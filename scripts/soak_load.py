#!/usr/bin/env python3
"""Mixed HTTP/1.1 load for scripts/soak.sh (Python standard library only).

    soak_load.py --plain 127.0.0.1:PORT --tls 127.0.0.1:PORT --secs 600

Runs until --secs pass, then prints one JSON line of counters and exits 0
if no request failed in a way the server is responsible for (1 otherwise).
Workers (threads), all on loopback:

  keepalive   GET / on persistent connections
  pipelined   bursts of 10 pipelined GETs, responses read in order
  chunked     POST /echo with a chunked body of random size and chunking
  slow_head   a request head trickled a byte at a time (under the 30 s
              header timeout)
  slow_read   POST 512 KiB to /echo, read the echo 4 KiB per 5 ms
  churn       one request per connection (Connection: close)
  bad         malformed requests: must get a 4xx/5xx and a close
  abort       connections reset (SO_LINGER 0) mid-body and mid-response
  tls         keep-alive GETs and echo POSTs over TLS, reconnecting every
              50 requests (handshakes included)
"""

import argparse
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time

COUNTS = {}
LOCK = threading.Lock()


def count(key, n=1):
    with LOCK:
        COUNTS[key] = COUNTS.get(key, 0) + n


class Closed(Exception):
    pass


def read_response(f, head=False):
    """Read one response from a buffered socket file: (status, headers, body)."""
    line = f.readline(65536)
    if not line:
        raise Closed()
    parts = line.split(b" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = f.readline(65536)
        if not h:
            raise Closed()
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.partition(b":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if 100 <= status < 200:
        return status, headers, body
    if head or status in (204, 304):
        return status, headers, body
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        body = f.read(n)
        if len(body) != n:
            raise Closed()
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int(f.readline(1024).split(b";")[0], 16)
            if size == 0:
                while f.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(f.read(size))
            f.readline(16)
        body = b"".join(chunks)
    else:
        body = f.read()
    return status, headers, body


def connect(addr, tls_ctx=None, timeout=30):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="localhost")
    return s


def worker(name, fn, deadline, *args):
    rnd = random.Random(hash(name))
    while time.monotonic() < deadline:
        try:
            fn(rnd, deadline, *args)
        except (Closed, ConnectionError, socket.timeout, ssl.SSLError, OSError) as e:
            # A server-side close between keep-alive requests is normal
            # (max requests per connection, timeouts); anything on a request
            # in flight is counted by the worker itself.
            count(name + "_reconnect")
            if isinstance(e, socket.timeout):
                count(name + "_timeout")


def keepalive(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        while time.monotonic() < deadline:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, body = read_response(f)
            if st != 200 or body != b"Hello, World!":
                count("keepalive_bad")
            count("keepalive_ok")
    finally:
        s.close()


def pipelined(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        while time.monotonic() < deadline:
            reqs = []
            for i in range(10):
                if i % 3 == 2:
                    reqs.append(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                else:
                    reqs.append(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.sendall(b"".join(reqs))
            for i in range(10):
                st, _, body = read_response(f)
                want = b"hello" if i % 3 == 2 else b"Hello, World!"
                if st != 200 or body != want:
                    count("pipelined_bad")
                count("pipelined_ok")
    finally:
        s.close()


def chunked_body(rnd, payload):
    out = []
    i = 0
    while i < len(payload):
        n = min(rnd.randint(1, 16384), len(payload) - i)
        out.append(b"%x\r\n" % n + payload[i:i + n] + b"\r\n")
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def chunked(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        while time.monotonic() < deadline:
            payload = os.urandom(rnd.randint(0, 256 * 1024))
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + chunked_body(rnd, payload))
            st, _, body = read_response(f)
            if st != 200 or body != payload:
                count("chunked_bad")
            count("chunked_ok")
    finally:
        s.close()


def slow_head(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 20 + b"\r\nConnection: close\r\n\r\n"
        for b in req:
            s.sendall(bytes([b]))
            time.sleep(0.03)
        st, _, body = read_response(f)
        if st != 200 or body != b"Hello, World!":
            count("slow_head_bad")
        count("slow_head_ok")
    finally:
        s.close()


def slow_read(rnd, deadline, addr):
    s = connect(addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    try:
        payload = os.urandom(512 * 1024)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                  % len(payload) + payload)
        got = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
            time.sleep(0.005)
        if not got.startswith(b"HTTP/1.1 200") or not got.endswith(payload):
            count("slow_read_bad")
        count("slow_read_ok")
    finally:
        s.close()


def churn(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, _, body = read_response(f)
        if st != 200 or body != b"Hello, World!" or f.read() != b"":
            count("churn_bad")
        count("churn_ok")
    finally:
        s.close()


BAD = [
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x00\x05hello\r\n\r\n",
]


def bad(rnd, deadline, addr):
    s = connect(addr)
    f = s.makefile("rb")
    try:
        s.sendall(rnd.choice(BAD))
        st, headers, _ = read_response(f)
        if st < 400 or headers.get(b"connection", b"").lower() != b"close":
            count("bad_unexpected")
        count("bad_ok")
    finally:
        s.close()


def abort(rnd, deadline, addr):
    s = connect(addr)
    try:
        if rnd.random() < 0.5:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 30000)
        else:
            payload = b"r" * (1024 * 1024)
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
            s.recv(1000)
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        count("abort_ok")
    time.sleep(0.05)


def tls(rnd, deadline, addr, ctx):
    s = connect(addr, ctx)
    f = s.makefile("rb")
    try:
        for _ in range(50):
            if time.monotonic() >= deadline:
                break
            if rnd.random() < 0.3:
                payload = os.urandom(rnd.randint(0, 64 * 1024))
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload) + payload)
                want = payload
            else:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                want = b"Hello, World!"
            st, _, body = read_response(f)
            if st != 200 or body != want:
                count("tls_bad")
            count("tls_ok")
        count("tls_handshakes")
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", required=True)
    ap.add_argument("--tls")
    ap.add_argument("--secs", type=float, default=600)
    a = ap.parse_args()
    deadline = time.monotonic() + a.secs
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    plan = [("keepalive", keepalive, 4), ("pipelined", pipelined, 2), ("chunked", chunked, 2),
            ("slow_head", slow_head, 4), ("slow_read", slow_read, 2), ("churn", churn, 1),
            ("bad", bad, 1), ("abort", abort, 1)]
    threads = []
    for name, fn, n in plan:
        for i in range(n):
            threads.append(threading.Thread(target=worker, args=(name, fn, deadline, a.plain), daemon=True))
    if a.tls:
        for i in range(3):
            threads.append(threading.Thread(target=worker, args=("tls", tls, deadline, a.tls, ctx), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.secs + 120)
    failures = sum(v for k, v in COUNTS.items() if k.endswith("_bad") or k.endswith("_unexpected")
                   or k.endswith("_timeout"))
    print(json.dumps(dict(sorted(COUNTS.items()))))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
