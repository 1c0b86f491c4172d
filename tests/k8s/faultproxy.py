#!/usr/bin/python3
"""A fault-injecting proxy on 127.0.0.1 in front of the kube-apiserver.

Tests put it between a client (the provisioner, kubectl) and the apiserver
and switch faults on and off at run time to check that the client retries,
re-watches and re-lists as it must.

Two modes:

  "http" (default)  terminates TLS with its own certificate (a CA and a
                    serving certificate for 127.0.0.1 made with the openssl
                    CLI), parses HTTP/1.1 and re-originates each connection
                    to the apiserver over TLS.  Clients must trust the
                    proxy's CA: kubeconfig() writes a kubeconfig that does.
                    All faults are available.
  "tcp"             relays bytes, TLS passes through untouched; clients keep
                    trusting the apiserver's CA.  Only the connection-level
                    faults are available (refuse, delay, cut_after,
                    drop_all).

Faults (methods of FaultProxy, callable from the test's thread at any time):

  pass_through()            clear every fault; listen again if refusing
  refuse(how="close")       "close": stop listening (ECONNREFUSED);
                            "rst": accept and reset at once.
                            drop_existing=True also cuts open connections
  delay(seconds)            hold each request (tcp: each connection) that long
  cut_after(nbytes=None, seconds=None)
                            close each connection once it has relayed nbytes
                            of response, or seconds after it opened (or
                            after the call, for connections already open)
  drop_all()                close every open connection now
  fail_next(n, status=503)  answer the next n requests with that status and
                            a Status body (method=, path= restrict which
                            requests count; retry_after= adds the header)
  cut_watches()             close every open watch stream now
  expire_next_watch()       answer the next watch request with HTTP 200 and
                            one ERROR event (410 Expired), then close

Watch streams (chunked) are relayed chunk by chunk as they arrive.

requests() returns the log of requests seen: dicts with method, path (with
query), status, watch (bool), fault (None or the fault that answered or cut
it) and t (monotonic seconds).  wait_for_request(pred) waits for a match.

    from faultproxy import FaultProxy
    with FaultProxy(cp.url, upstream_ca=cp.ca_file) as proxy:
        kc = proxy.kubeconfig(os.path.join(tmp, "kubeconfig"), cp.token)
        proxy.fail_next(3, status=503)
        ...

As a command, for trying things by hand: faultproxy.py UPSTREAM_URL --ca FILE
[--port N] [--tcp] [--dir DIR] prints its URL and CA file, then reads
commands on stdin: pass, refuse [rst], delay S, cut BYTES|Ss, drop,
fail N [STATUS], cutwatches, expire, log, quit.

Standard library only (and the openssl CLI).
"""

import json
import os
import select
import shlex
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

EXPIRED_EVENT = {
    "type": "ERROR",
    "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
               "status": "Failure", "message": "too old resource version",
               "reason": "Expired", "code": 410},
}

REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    409: "Conflict", 410: "Gone", 429: "TooManyRequests", 500: "InternalError",
    502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout",
}
PHRASES = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 409: "Conflict", 410: "Gone", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}

MAX_HEADER_BYTES = 64 * 1024
IO_CHUNK = 64 * 1024


class ProxyError(RuntimeError):
    pass


class _Closed(Exception):
    """The connection is over (EOF, a fault, or stop())."""


def make_certificate(directory):
    """Create ca.crt/ca.key and a serving tls.crt/tls.key for 127.0.0.1.

    Returns (ca_file, cert_file, key_file).  EC P-256 keys, valid two days.
    """
    ca_crt = os.path.join(directory, "ca.crt")
    ca_key = os.path.join(directory, "ca.key")
    crt = os.path.join(directory, "tls.crt")
    key = os.path.join(directory, "tls.key")
    csr = os.path.join(directory, "tls.csr")
    ext = os.path.join(directory, "tls.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for argv in (
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "2",
         "-subj", "/CN=carvefs-faultproxy-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext],
    ):
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise ProxyError(f"{' '.join(argv[:3])}: {r.stderr.strip()}")
    return ca_crt, crt, key


def _raw_shutdown(sock):
    # Bypass SSLSocket.shutdown(), which tears down the TLS object under a
    # thread that may be blocked reading it; shutting the descriptor down
    # makes that read return instead.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _close(sock, rst=False):
    if sock is None:
        return
    try:
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class _Conn:
    """One client connection and the state faults act on."""

    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client          # socket (SSLSocket once wrapped)
        self.upstream = None
        self.opened = time.monotonic()
        self.sent = 0                 # response bytes relayed to the client
        self.watch = False            # the current request is a watch
        self.entry = None             # log entry of the current request
        self.closed = threading.Event()
        self.reason = None            # the fault that closed it

    def kill(self, reason):
        if not self.closed.is_set():
            self.reason = reason
            self.closed.set()
            _raw_shutdown(self.client)
            if self.upstream is not None:
                _raw_shutdown(self.upstream)


class FaultProxy:
    """A fault-injecting proxy for the apiserver at upstream (https URL).

    upstream_ca: the apiserver's CA file (None: do not verify upstream).
    port: the port to listen on (0: any free one).
    directory: where the proxy's certificate goes (default: a temporary
    directory removed by stop()).
    """

    def __init__(self, upstream, upstream_ca=None, port=0, mode="http", directory=None):
        u = urllib.parse.urlsplit(upstream)
        if u.scheme != "https" or not u.hostname:
            raise ProxyError(f"upstream must be an https:// URL, not {upstream!r}")
        if mode not in ("http", "tcp"):
            raise ProxyError(f"unknown mode {mode!r}")
        self.upstream_host = u.hostname
        self.upstream_port = u.port or 443
        self.upstream_ca = upstream_ca
        self.mode = mode
        self.port = port
        self._own_dir = directory is None
        self.dir = directory
        self.ca_file = self.ca_pem = None
        self._lock = threading.Lock()
        self._conns = set()
        self._log = []
        self._listener = None
        self._accept_thread = None
        self._stopping = False
        self._reaper = None
        self._reset_faults()

    # ------------------------------------------------------------- lifecycle

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def start(self):
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="carvefs-faultproxy-")
        if self.mode == "http":
            self.ca_file, cert, key = make_certificate(self.dir)
            with open(self.ca_file) as f:
                self.ca_pem = f.read()
            self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_ctx.load_cert_chain(cert, key)
            # HTTP/1.1 only: Go clients fall back from h2 when it is not offered.
            self._server_ctx.set_alpn_protocols(["http/1.1"])
            if self.upstream_ca:
                self._client_ctx = ssl.create_default_context(cafile=self.upstream_ca)
            else:
                self._client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._client_ctx.check_hostname = False
                self._client_ctx.verify_mode = ssl.CERT_NONE
            self._client_ctx.set_alpn_protocols(["http/1.1"])
        self._listen()
        self._reaper = threading.Thread(target=self._reap, name="faultproxy-reaper",
                                        daemon=True)
        self._reaper.start()
        return self

    def stop(self):
        self._stopping = True
        self._unlisten()
        self.drop_all()
        if self._reaper is not None:
            self._reaper.join(timeout=2)
        if self._own_dir and self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def kubeconfig(self, path, token, name="carvefs-faultproxy"):
        """Write a kubeconfig for clients going through the proxy.

        In http mode it carries the proxy's CA; in tcp mode the apiserver's.
        """
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from control_plane import write_kubeconfig
        if self.mode == "http":
            ca_pem = self.ca_pem
        else:
            if not self.upstream_ca:
                raise ProxyError("tcp mode: pass upstream_ca to write a kubeconfig")
            with open(self.upstream_ca) as f:
                ca_pem = f.read()
        return write_kubeconfig(path, self.url, ca_pem, token, name=name)

    # ---------------------------------------------------------------- faults

    def _reset_faults(self):
        self._refusing = None
        self._delay_s = 0.0
        self._cut_bytes = None
        self._cut_s = None
        self._cut_since = 0.0
        self._fail = None             # dict(n, status, method, path, retry_after)
        self._expire = None           # dict(path) or None

    def pass_through(self):
        with self._lock:
            self._reset_faults()
        if self._listener is None and not self._stopping:
            self._listen()

    def refuse(self, how="close", drop_existing=False):
        if how not in ("close", "rst"):
            raise ProxyError(f"refuse: how is 'close' or 'rst', not {how!r}")
        with self._lock:
            self._refusing = how
        if how == "close":
            self._unlisten()
        if drop_existing:
            self.drop_all()

    def delay(self, seconds):
        with self._lock:
            self._delay_s = float(seconds)

    def cut_after(self, nbytes=None, seconds=None):
        with self._lock:
            self._cut_bytes = nbytes
            self._cut_s = seconds
            self._cut_since = time.monotonic()
            # Connections already open count their bytes from now on.
            for c in self._conns:
                c.sent = 0

    def drop_all(self):
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.kill("drop")

    def fail_next(self, n, status=503, method=None, path=None, retry_after=None):
        self._need_http("fail_next")
        with self._lock:
            self._fail = {"n": int(n), "status": int(status), "method": method,
                          "path": path, "retry_after": retry_after}

    def cut_watches(self):
        self._need_http("cut_watches")
        with self._lock:
            conns = [c for c in self._conns if c.watch]
        for c in conns:
            c.kill("cut_watch")
        return len(conns)

    def expire_next_watch(self, path=None):
        self._need_http("expire_next_watch")
        with self._lock:
            self._expire = {"path": path}

    def _need_http(self, what):
        if self.mode != "http":
            raise ProxyError(f"{what} needs mode='http'")

    # ------------------------------------------------------------------- log

    def requests(self, method=None, path=None):
        """A copy of the request log, optionally filtered (path: substring)."""
        with self._lock:
            log = [dict(e) for e in self._log]
        return [e for e in log if (method is None or e["method"] == method)
                and (path is None or path in e["path"])]

    def clear_log(self):
        with self._lock:
            self._log.clear()

    def wait_for_request(self, predicate, timeout=30):
        """Wait until a logged request satisfies predicate(entry); return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.requests():
                if predicate(e):
                    return e
            time.sleep(0.05)
        raise TimeoutError(f"no matching request within {timeout} s")

    def open_watches(self):
        with self._lock:
            return sum(1 for c in self._conns if c.watch)

    # -------------------------------------------------------------- listener

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", self.port))
        except OSError as e:
            s.close()
            raise ProxyError(f"cannot listen on 127.0.0.1:{self.port}: {e.strerror}") from None
        s.listen(128)
        self.port = s.getsockname()[1]
        self._listener = s
        self._accept_thread = threading.Thread(target=self._accept, args=(s,),
                                               name="faultproxy-accept", daemon=True)
        self._accept_thread.start()

    def _unlisten(self):
        s, self._listener = self._listener, None
        if s is not None:
            _raw_shutdown(s)
            s.close()
            if self._accept_thread is not threading.current_thread():
                self._accept_thread.join(timeout=2)

    def _accept(self, listener):
        while True:
            try:
                r, _, _ = select.select([listener], [], [], 0.1)
                if listener.fileno() < 0 or self._listener is not listener:
                    return
                if not r:
                    continue
                sock, _ = listener.accept()
            except (OSError, ValueError):
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._refusing == "rst":
                _close(sock, rst=True)
                continue
            conn = _Conn(self, sock)
            with self._lock:
                self._conns.add(conn)
            target = self._serve_http if self.mode == "http" else self._serve_tcp
            threading.Thread(target=self._serve, args=(conn, target),
                             name="faultproxy-conn", daemon=True).start()

    def _reap(self):
        # Enforces cut_after(seconds=) on connections that are idle, such as
        # a watch with no events.
        while not self._stopping:
            time.sleep(0.05)
            with self._lock:
                limit, since = self._cut_s, self._cut_since
                conns = list(self._conns)
            if limit is None:
                continue
            now = time.monotonic()
            for c in conns:
                if now - max(c.opened, since) >= limit:
                    c.kill("cut_after")

    def _serve(self, conn, target):
        try:
            target(conn)
        except (_Closed, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            conn.closed.set()
            with self._lock:
                self._conns.discard(conn)
                if conn.entry is not None and conn.reason and not conn.entry["fault"]:
                    conn.entry["fault"] = conn.reason
            _close(conn.client)
            _close(conn.upstream)

    # ------------------------------------------------------------- tcp mode

    def _serve_tcp(self, conn):
        self._sleep_delay(conn)
        conn.upstream = socket.create_connection((self.upstream_host, self.upstream_port),
                                                 timeout=10)
        conn.upstream.settimeout(None)
        if conn.closed.is_set():
            raise _Closed()
        pair = {conn.client: conn.upstream, conn.upstream: conn.client}
        while not conn.closed.is_set():
            r, _, _ = select.select(list(pair), [], [], 0.1)
            for s in r:
                data = s.recv(IO_CHUNK)
                if not data:
                    raise _Closed()
                if s is conn.upstream:
                    self._send_counted(conn, data)
                else:
                    conn.upstream.sendall(data)

    # ------------------------------------------------------------ http mode

    def _serve_http(self, conn):
        conn.client.settimeout(10)
        conn.client = self._server_ctx.wrap_socket(conn.client, server_side=True)
        conn.client.settimeout(None)
        crd = conn.client.makefile("rb")
        urd = None
        while not conn.closed.is_set():
            head = _read_head(crd)
            if head is None:
                return
            method, target, version, headers = _parse_request(head)
            u = urllib.parse.urlsplit(target)
            q = urllib.parse.parse_qs(u.query)
            watch = q.get("watch", [""])[0] in ("true", "1") or "/watch/" in u.path
            entry = {"method": method, "path": target, "status": None, "watch": watch,
                     "fault": None, "t": time.monotonic()}
            with self._lock:
                self._log.append(entry)
            conn.entry = entry
            body = self._read_request_body(conn, crd, headers)
            self._sleep_delay(conn)

            fault = self._take_fault(method, u.path, watch)
            if fault is not None:
                entry["fault"] = fault[0]
                entry["status"] = fault[1]
                self._send_counted(conn, fault[2])
                if fault[0] == "expire":
                    return
                continue

            # Forward.  A kept-alive upstream connection may have been
            # closed by the apiserver meanwhile: retry once on a fresh one.
            fwd = _forward_head(method, target, version, headers)
            for attempt in (0, 1):
                if conn.upstream is None:
                    conn.upstream = self._connect_upstream()
                    urd = conn.upstream.makefile("rb")
                    if conn.closed.is_set():
                        raise _Closed()
                try:
                    conn.upstream.sendall(fwd + body)
                    rhead = _read_head(urd)
                except (OSError, ssl.SSLError):
                    rhead = None
                if rhead is not None:
                    break
                _close(conn.upstream)
                conn.upstream = None
                if attempt == 1 or conn.closed.is_set():
                    raise _Closed()
            status, rheaders = _parse_response(rhead)
            entry["status"] = status
            conn.watch = watch
            self._send_counted(conn, rhead)
            keep = self._relay_body(conn, urd, method, status, rheaders)
            conn.watch = False
            conn.entry = None
            if not keep or _has_token(headers, "connection", "close") \
                    or _has_token(rheaders, "connection", "close"):
                return

    def _connect_upstream(self):
        s = socket.create_connection((self.upstream_host, self.upstream_port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = self._client_ctx.wrap_socket(s, server_hostname=self.upstream_host)
        s.settimeout(None)
        return s

    def _read_request_body(self, conn, rd, headers):
        if _has_token(headers, "expect", "100-continue"):
            # Answer for the apiserver (the Expect header is not forwarded),
            # so that a client waiting for it sends its body at once.
            conn.client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if _has_token(headers, "transfer-encoding", "chunked"):
            out = bytearray()
            _copy_chunked(rd, out.extend)
            return bytes(out)
        n = int(_header(headers, "content-length") or 0)
        data = rd.read(n) if n else b""
        if len(data) != n:
            raise _Closed()
        return data

    def _take_fault(self, method, path, watch):
        """Decide under the lock whether this request is answered by a fault.

        Returns (name, status, raw response) or None.
        """
        with self._lock:
            e = self._expire
            if watch and e is not None and (e["path"] is None or e["path"] in path):
                self._expire = None
                line = json.dumps(EXPIRED_EVENT, separators=(",", ":")).encode() + b"\n"
                raw = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       + b"%x\r\n" % len(line) + line + b"\r\n0\r\n\r\n")
                return ("expire", 200, raw)
            f = self._fail
            if f is not None and (f["method"] is None or f["method"] == method) \
                    and (f["path"] is None or f["path"] in path):
                f["n"] -= 1
                if f["n"] <= 0:
                    self._fail = None
                st = f["status"]
                body = json.dumps({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": "fault injected by the test proxy",
                    "reason": REASONS.get(st, "InternalError"), "code": st,
                }).encode()
                extra = b""
                if f["retry_after"] is not None:
                    extra = b"Retry-After: %d\r\n" % int(f["retry_after"])
                raw = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                       % (st, PHRASES.get(st, "Error").encode())
                       + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                return ("fail_next", st, raw)
        return None

    def _relay_body(self, conn, rd, method, status, headers):
        """Relay a response body; return whether the connection may be reused."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return True
        if _has_token(headers, "transfer-encoding", "chunked"):
            _copy_chunked(rd, lambda b: self._send_counted(conn, b))
            return True
        n = _header(headers, "content-length")
        if n is not None:
            left = int(n)
            while left > 0:
                data = rd.read1(min(left, IO_CHUNK))
                if not data:
                    raise _Closed()
                left -= len(data)
                self._send_counted(conn, data)
            return True
        while True:                      # until the apiserver closes
            data = rd.read1(IO_CHUNK)
            if not data:
                return False
            self._send_counted(conn, data)

    # --------------------------------------------------------------- common

    def _sleep_delay(self, conn):
        with self._lock:
            d = self._delay_s
        if d > 0 and conn.closed.wait(d):
            raise _Closed()

    def _send_counted(self, conn, data):
        """Send response bytes to the client, enforcing cut_after(nbytes=)."""
        if conn.closed.is_set():
            raise _Closed()
        with self._lock:
            limit = self._cut_bytes
        if limit is not None and conn.sent + len(data) >= limit:
            part = data[:max(0, limit - conn.sent)]
            if part:
                conn.client.sendall(part)
            conn.sent += len(part)
            conn.kill("cut_after")
            raise _Closed()
        conn.client.sendall(data)
        conn.sent += len(data)


# ------------------------------------------------------------------ HTTP bits


def _read_head(rd):
    """Read up to the blank line; None on a clean EOF before any byte."""
    lines, total = [], 0
    while True:
        line = rd.readline(MAX_HEADER_BYTES)
        if not line:
            if not lines:
                return None
            raise _Closed()
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise _Closed()
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _split_headers(head):
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            break
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return lines[0], headers


def _parse_request(head):
    first, headers = _split_headers(head)
    parts = first.split(" ")
    if len(parts) != 3:
        raise _Closed()
    return parts[0], parts[1], parts[2], headers


def _parse_response(head):
    first, headers = _split_headers(head)
    parts = first.split(" ", 2)
    try:
        return int(parts[1]), headers
    except (IndexError, ValueError):
        raise _Closed() from None


def _header(headers, name):
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _has_token(headers, name, token):
    return any(k.lower() == name and token in [t.strip().lower() for t in v.split(",")]
               for k, v in headers)


def _forward_head(method, target, version, headers):
    out = [f"{method} {target} {version}\r\n"]
    for k, v in headers:
        if k.lower() == "expect":
            continue
        out.append(f"{k}: {v}\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1")


def _copy_chunked(rd, write):
    """Copy one chunked body, each chunk passed to write() as it arrives."""
    while True:
        size_line = rd.readline(1024)
        if not size_line.endswith(b"\n"):
            raise _Closed()
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _Closed() from None
        if size == 0:
            trailer = bytearray(size_line)
            while True:
                line = rd.readline(MAX_HEADER_BYTES)
                if not line:
                    raise _Closed()
                trailer += line
                if line in (b"\r\n", b"\n"):
                    break
            write(bytes(trailer))
            return
        data = rd.read(size + 2)
        if len(data) != size + 2:
            raise _Closed()
        write(size_line + data)


# ------------------------------------------------------------------- command


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Fault-injecting proxy for the apiserver.")
    p.add_argument("upstream", help="https://127.0.0.1:PORT of the apiserver")
    p.add_argument("--ca", help="the apiserver's CA file")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tcp", action="store_true", help="pass TLS through")
    p.add_argument("--dir", help="where to put the proxy's certificate")
    p.add_argument("--token", help="write DIR/kubeconfig for this token")
    a = p.parse_args(argv)
    proxy = FaultProxy(a.upstream, upstream_ca=a.ca, port=a.port,
                       mode="tcp" if a.tcp else "http", directory=a.dir).start()
    print(f"listening on {proxy.url}", flush=True)
    if proxy.ca_file:
        print(f"CA: {proxy.ca_file}", flush=True)
    if a.token:
        print("kubeconfig:", proxy.kubeconfig(os.path.join(proxy.dir, "kubeconfig"), a.token),
              flush=True)
    try:
        for line in sys.stdin:
            w = shlex.split(line)
            if not w:
                continue
            try:
                cmd, args = w[0], w[1:]
                if cmd == "pass":
                    proxy.pass_through()
                elif cmd == "refuse":
                    proxy.refuse(args[0] if args else "close", drop_existing=True)
                elif cmd == "delay":
                    proxy.delay(float(args[0]))
                elif cmd == "cut":
                    if args[0].endswith("s"):
                        proxy.cut_after(seconds=float(args[0][:-1]))
                    else:
                        proxy.cut_after(nbytes=int(args[0]))
                elif cmd == "drop":
                    proxy.drop_all()
                elif cmd == "fail":
                    proxy.fail_next(int(args[0]), int(args[1]) if len(args) > 1 else 503)
                elif cmd == "cutwatches":
                    print(f"cut {proxy.cut_watches()} watch(es)", flush=True)
                elif cmd == "expire":
                    proxy.expire_next_watch()
                elif cmd == "log":
                    for e in proxy.requests():
                        print(f'{e["method"]} {e["path"]} -> {e["status"]}'
                              f'{" watch" if e["watch"] else ""}'
                              f'{" [" + e["fault"] + "]" if e["fault"] else ""}', flush=True)
                elif cmd == "quit":
                    break
                else:
                    print(f"unknown command {cmd!r}", flush=True)
                    continue
                print("ok", flush=True)
            except (IndexError, ValueError, ProxyError) as e:
                print(f"error: {e}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
