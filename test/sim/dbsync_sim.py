#!/usr/bin/env python3
"""Local HTTP simulator of the remote APIs dbsync talks to (tests, benchmarks).

Python 3 standard library only; listens on 127.0.0.1 by default.

    python3 test/sim/dbsync_sim.py --port 0 --port-file /tmp/sim.port \
        [--host 127.0.0.1] [--user api] [--password secret] \
        [--fixture PATH] [--log PATH] [--precompute gen<N>]... \
        [--tls-cert PEM --tls-key PEM [--tls-port-file PATH]] \
        [--odoo-dir DIR] [--octoplant-user NAME] \
        [--octoplant-client-secret SECRET]

--precompute gen<N> (repeatable; live<N> works too) builds every changes.json
page a full pass with limit=1000 reads (default filter, from the first
version, following "next") before the port file is written, so a
benchmark's first pass is served from memory (gen1000000: a few seconds,
~160 MB). Other pages are cached in a bounded LRU as they are served.

With --tls-cert and --tls-key it also listens with TLS (HTTPS) on a free port
of the same host, serving the same routes, state and stats as the plain
listener; --tls-port-file gets that port. The TLS port file is written before
the plain one, so once --port-file exists both listeners are up.
(test/sim/make_certs.sh makes a throwaway CA and a certificate for 127.0.0.1.)

API modules register path prefixes: flexi.py (ABRA Flexi, under /c/),
odoo.py (the Odoo database upgrade API v1, under /database/; uploads are
kept in --odoo-dir, default a fresh temp dir removed at exit) and
octoplant.py (the octoplant Export API, under /v1/: OAuth2 password grant
for --octoplant-user with --password and --octoplant-client-secret, export
orders, generated ZIP downloads).  This file
owns the server, dispatch, fault injection, stats and gzip (of replies the
module marks compressible, if the client accepts gzip), and streams request
bodies to modules that ask for it and streamed replies (sendfile on plain
sockets) from them, so multi-GiB uploads and downloads use constant memory.

Control endpoints (no auth):
    GET  /_sim/health                  200 "ok"
    GET  /_sim/stats                   {"requests", "connections", "api_connections", "by_path",
                                        "user_agents", "accept_encodings"}
                                       (the last two: header value -> count of API
                                        requests, "" when the header is absent)
    POST /_sim/reset                   clear armed faults, module state, stats
    POST /_sim/fault?company=C&mode=M[&status=S][&seconds=N][&count=K]
         arm the next K (default 1) requests of company C to fail with mode M
         (status, slow, malformed, truncated, truncated-json, reset,
         lowversion). Several arm calls for one company queue up in order;
         a request takes the first one that applies to it (lowversion
         applies to changes.json only, other requests pass over it).
    POST /_sim/fault?path=P&mode=M[&status=S][&seconds=N][&count=K]
         the same, keyed by request path (for path-keyed modules: odoo.py,
         octoplant.py),
         e.g. path=/database/v1/status; P may end in "/*" to match every
         path under it (path=/database/eu1/* for all downloads); the most
         specific armed scope wins.  Modes as above except lowversion.
    plus the API modules' own: flexi.py adds /_sim/append, /_sim/grow,
    /_sim/log, /_sim/records and /_sim/cache; odoo.py adds /_sim/odoo/*;
    octoplant.py adds /_sim/octoplant/* (see their docstrings).
"""

import argparse
import gzip
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import traceback
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flexi  # noqa: E402
import octoplant  # noqa: E402
import odoo  # noqa: E402
from simcore import FAULT_MODES, BodyError, Fault, Request, Response  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURE = os.path.normpath(
    os.path.join(HERE, "..", "fixtures", "flexi-changes-real.json"))
JSON_CT = "application/json; charset=utf-8"
CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError,
                     ConnectionAbortedError, TimeoutError)
TLS_HANDSHAKE_SECONDS = 30  # a client that connects and says nothing is dropped
STREAM_CHUNK = 1 << 20  # bytes per read/write when streaming bodies


class FaultBook:
    """Armed on-demand faults: scope -> queue of [Fault, remaining count]."""

    def __init__(self):
        self._lock = threading.Lock()
        self._armed = {}

    def arm(self, scope, fault, count):
        with self._lock:
            self._armed.setdefault(scope, deque()).append([fault, count])

    def take(self, scope, skip=()):
        """Consume the first armed fault of scope whose mode is not in skip."""
        with self._lock:
            queue = self._armed.get(scope)
            if not queue:
                return None
            for index, entry in enumerate(queue):
                if entry[0].mode in skip:
                    continue
                entry[1] -= 1
                if entry[1] <= 0:
                    del queue[index]
                return entry[0]
            return None

    def clear(self):
        with self._lock:
            self._armed.clear()


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self.requests = 0
            self.connections = 0
            self.api_clients = set()  # (host, port) of connections that carried API requests
            self.by_path = Counter()
            self.user_agents = Counter()       # User-Agent -> API requests
            self.accept_encodings = Counter()  # Accept-Encoding -> API requests

    def connection(self):
        with self._lock:
            self.connections += 1

    def request(self, path, client, user_agent="", accept_encoding=""):
        with self._lock:
            self.requests += 1
            self.api_clients.add(client)
            self.by_path[path] += 1
            self.user_agents[user_agent] += 1
            self.accept_encodings[accept_encoding] += 1

    def snapshot(self):
        with self._lock:
            return {"requests": self.requests,
                    "connections": self.connections,
                    "api_connections": len(self.api_clients),
                    "by_path": dict(self.by_path),
                    "user_agents": dict(self.user_agents),
                    "accept_encodings": dict(self.accept_encodings)}


class Sim:
    """Process-wide state shared by all request threads."""

    def __init__(self, options, log_file=None):
        self.options = options
        self.log_file = log_file
        self.log_lock = threading.Lock()
        self.stop = threading.Event()
        self.faults = FaultBook()
        self.stats = Stats()
        self.modules = [flexi.FlexiModule(options), odoo.OdooModule(options),
                        octoplant.OctoplantModule(options)]
        self.controls = dict(CONTROL)
        for module in self.modules:
            for name, (methods, func) in getattr(module, "controls", {}).items():
                self.controls[name] = (methods, module_control(func))

    def module_for(self, path):
        for module in self.modules:
            if any(path.startswith(p) for p in module.prefixes):
                return module
        return None

    def reset(self):
        self.faults.clear()
        self.stats.reset()
        for module in self.modules:
            module.reset()

    def close(self):
        for module in self.modules:
            close = getattr(module, "close", None)
            if close is not None:
                close()

    def sleep(self, seconds):
        # Wakes up early on shutdown, so slow requests never delay exit.
        self.stop.wait(max(0.0, seconds))

    def log(self, method, target, status, nbytes):
        self.log_line(f"{method} {target} {status} {nbytes}")

    def log_line(self, line):
        with self.log_lock:
            if self.log_file is not None:
                self.log_file.write(line + "\n")

    def close_log(self):
        with self.log_lock:
            if self.log_file is not None:
                self.log_file.close()
                self.log_file = None


def json_response(status, obj):
    return Response(status, json.dumps(obj).encode(), JSON_CT)


def accepts_gzip(headers):
    """True if Accept-Encoding lists gzip (and not with q=0)."""
    for item in headers.get("Accept-Encoding", "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() == "gzip":
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip("0. ") == "")
    return False


# --- /_sim/* control endpoints ------------------------------------------

def control(sim, req):
    name = req.path[len("/_sim/"):]
    handler = sim.controls.get(name)
    if handler is None:
        return json_response(404, {"error": f"unknown control endpoint {name}"})
    methods, func = handler
    if req.method not in methods:
        return json_response(405, {"error": f"use {' or '.join(methods)}"})
    return func(sim, req)


def control_health(sim, req):
    return Response(200, b"ok", "text/plain; charset=utf-8")


def control_stats(sim, req):
    return json_response(200, sim.stats.snapshot())


def control_reset(sim, req):
    sim.reset()
    return json_response(200, {"reset": True})


def control_fault(sim, req):
    try:
        fault, scope, count = parse_fault(req)
    except ValueError as exc:
        return json_response(400, {"error": str(exc)})
    sim.faults.arm(scope, fault, count)
    if scope.startswith("path:"):
        armed = {"path": scope[len("path:"):]}
    else:
        armed = {"company": scope}
    armed.update({"mode": fault.mode, "status": fault.status,
                  "seconds": fault.seconds, "count": count})
    return json_response(200, {"armed": armed})


def parse_fault(req):
    path = req.param("path")
    scope = req.param("company") or req.param("scope")
    if path is not None and scope:
        raise ValueError("give company or path, not both")
    if path is not None:
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        scope = "path:" + path
    if not scope:
        raise ValueError("company (or path) is required")
    mode = req.param("mode", "status")
    if mode not in FAULT_MODES:
        raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
    if path is not None and mode == "lowversion":
        raise ValueError("mode lowversion is for Flexi companies only")
    try:
        count = int(req.param("count", "1"))
        status = int(req.param("status", "503"))
        seconds = float(req.param("seconds", "60"))
    except ValueError:
        raise ValueError("count, status and seconds must be numbers") from None
    if count < 1 or not 100 <= status <= 599 or seconds < 0:
        raise ValueError("need count >= 1, 100 <= status <= 599, seconds >= 0")
    return Fault(mode, status, seconds), scope, count


def module_control(func):
    return lambda sim, req: func(req)


CONTROL = {
    "health": (("GET",), control_health),
    "stats": (("GET",), control_stats),
    "reset": (("POST", "PUT"), control_reset),
    "fault": (("POST", "PUT"), control_fault),
}


# --- HTTP plumbing ------------------------------------------------------

class BodyReader:
    """A request body read from the connection on demand, in the caller's
    buffer: Content-Length or chunked transfer encoding (trailers skipped).
    readinto() returns 0 at the end of the body; BodyError when the body is
    malformed or the client goes away before its end."""

    def __init__(self, rfile, length=0, chunked=False):
        self._rfile = rfile
        self._chunked = chunked
        self._left = 0 if chunked else length  # of the body, or of the chunk
        self.done = not chunked and length == 0
        self.broken = False
        self.nread = 0

    def readinto(self, buffer):
        """Fill buffer as far as the body goes (across chunks); 0 at the end."""
        if self.broken:  # never read on after an error: the framing is lost
            raise BodyError("the body is broken")
        view = memoryview(buffer)
        filled = 0
        try:
            while filled < len(view):
                n = self._readinto(view[filled:])
                if not n:
                    break
                filled += n
            return filled
        except OSError as exc:  # reset, timeout: the body broke off
            self.broken = True
            raise BodyError(f"reading the body failed: {exc}") from None
        except BodyError:
            self.broken = True
            raise

    def _readinto(self, buffer):
        if self.done:
            return 0
        if self._chunked and self._left == 0:
            self._left = self._chunk_size()
            if self._left == 0:
                self._skip_trailers()
                self.done = True
                return 0
        view = memoryview(buffer)
        want = min(len(view), self._left)
        n = self._rfile.readinto(view[:want])
        if not n:
            raise BodyError("the connection closed in the middle of the body")
        self._left -= n
        self.nread += n
        if self._left == 0:
            if self._chunked:
                if self._rfile.readline(3).strip():  # CRLF after each chunk
                    raise BodyError("no CRLF after a chunk")
            else:
                self.done = True
        return n

    def drain(self):
        buffer = bytearray(STREAM_CHUNK)
        while self.readinto(buffer):
            pass

    def _chunk_size(self):
        line = self._rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise BodyError("chunk size line missing or too long")
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BodyError("bad chunk size") from None
        if size < 0:
            raise BodyError("bad chunk size")
        return size

    def _skip_trailers(self):
        while True:
            line = self._rfile.readline(8192)
            if not line:
                raise BodyError("the connection closed in the trailers")
            if not line.strip():
                return


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dbsync-sim"
    timeout = 300  # reap idle keep-alive connections eventually
    # TCP_NODELAY: headers and body are two writes; with Nagle on, a small
    # body waits for the client's delayed ACK (~40 ms on keep-alive).
    disable_nagle_algorithm = True
    # Bigger reads per recv() for streamed (chunked) uploads; 8 KiB by default.
    rbufsize = 1 << 16

    def version_string(self):
        return self.server_version

    def handle(self):
        try:
            super().handle()
        except CONNECTION_ERRORS:
            self.close_connection = True  # client went away; nothing to say

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_request(self, code="-", size="-"):
        pass  # we log ourselves, once the outcome is known

    def log_message(self, format, *args):
        self.server.sim.log_line("# " + (format % args))

    def dispatch(self):
        sim = self.server.sim
        path, _, query = self.path.partition("?")
        reader = None
        if self.streams_body(sim, path):
            reader = self.body_reader()
            if reader is None:
                return
            body = b""
        else:
            body = self.read_body()
            if body is None:
                return
        req = Request(self.command, path, query,
                      parse_qs(query, keep_blank_values=True),
                      self.headers, body, sim.faults.take, sim.sleep,
                      stream=reader, base_url=self.base_url())
        try:
            resp = self.route(sim, req)
        except CONNECTION_ERRORS:
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            resp = json_response(500, {"error": "internal simulator error"})
        if reader is not None and not reader.done and resp.transport != "reset":
            # Keep the connection usable: discard what the module left unread.
            try:
                reader.drain()
            except BodyError:
                self.close_connection = True
        self.send(resp, req)

    def streams_body(self, sim, path):
        if path.startswith("/_sim/"):
            return False
        module = sim.module_for(path)
        streams = getattr(module, "streams_body", None)
        return bool(streams and streams(self.command, path))

    def base_url(self):
        host, port = self.connection.getsockname()[:2]
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}"

    def route(self, sim, req):
        if req.path.startswith("/_sim/"):
            return control(sim, req)
        sim.stats.request(req.path, self.client_address,
                          req.headers.get("User-Agent", ""),
                          req.headers.get("Accept-Encoding", ""))
        module = sim.module_for(req.path)
        if module is None:
            return json_response(404, {"error": "unknown path"})
        return module.handle(req)

    def read_body(self):
        """The request body (b"" if none); None after answering 400."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.send(json_response(400, {"error": "bad Content-Length"}))
            return None
        return self.rfile.read(length) if length else b""

    def body_reader(self):
        """A BodyReader for the request body; None after answering 400."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return BodyReader(self.rfile, chunked=True)
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.send(json_response(400, {"error": "bad Content-Length"}))
            return None
        return BodyReader(self.rfile, length)

    def read_chunked(self):
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():  # skip trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after each chunk

    def send(self, resp, req=None):
        target = req.target if req else self.path
        if resp.transport == "reset":
            self.send_reset()
            self.server.sim.log(self.command, target, "RST", 0)
            return
        if resp.stream is not None:
            self.send_stream(resp, target)
            return
        body = resp.body
        headers = list(resp.headers)
        if resp.compressible and req is not None and accepts_gzip(req.headers):
            body = gzip.compress(body, mtime=0)  # mtime=0: same bytes every time
            headers.append(("Content-Encoding", "gzip"))
        announced = len(body)
        if resp.transport == "truncated-json":
            body = body[:len(body) // 2]
            announced = len(body)
        elif resp.transport == "truncated":
            body = body[:len(body) // 2]  # announce the full length, send half
            self.close_connection = True
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.server.sim.log(self.command, target, resp.status, len(body))

    def send_stream(self, resp, target):
        """Send resp.stream; transport damage as for bodies (truncated:
        announce the full length, send half and close; truncated-json: half
        with its own length)."""
        count = announced = resp.stream.length
        if resp.transport == "truncated-json":
            count = announced = announced // 2
        elif resp.transport == "truncated":
            count = announced // 2
            self.close_connection = True
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        sent = 0
        segments = resp.stream.segments(count)
        tls = isinstance(self.connection, ssl.SSLSocket)
        try:
            for segment in segments:
                if isinstance(segment, tuple):
                    sent += self.send_file_part(*segment, tls=tls)
                else:
                    self.wfile.write(segment)
                    sent += len(segment)
        except OSError:  # the client went away (or a file read failed)
            self.close_connection = True
            self.server.sim.log(self.command, target, resp.status, sent)
            raise ConnectionAbortedError("client went away mid-stream") from None
        finally:
            segments.close()
        if sent != count:  # a file shrank under us: the framing is broken
            self.close_connection = True
        self.server.sim.log(self.command, target, resp.status, sent)

    def send_file_part(self, file, offset, n, tls=False):
        if not tls:  # zero-copy
            return self.connection.sendfile(file, offset, n)
        # SSLSocket.sendfile would send 8 KiB at a time: use big chunks.
        file.seek(offset)
        sent = 0
        while sent < n:
            data = file.read(min(STREAM_CHUNK, n - sent))
            if not data:
                break
            self.connection.sendall(data)
            sent += len(data)
        return sent

    def send_reset(self):
        # SO_LINGER on with timeout 0 makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()  # the fd really closes once rfile is closed


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for (possibly sleeping) handlers
    allow_reuse_address = True

    def __init__(self, address, sim):
        self.sim = sim
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        self.sim.stats.connection()
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # includes client disconnects
            return
        traceback.print_exc(file=sys.stderr)


class TLSSimServer(SimServer):
    """The same server behind TLS. The handshake runs in the connection's own
    thread (not in the accept loop), so a slow or silent client blocks no one;
    failed handshakes (e.g. a client that rejects the certificate) are dropped
    quietly, like other client disconnects."""

    def __init__(self, address, sim, context):
        self.context = context
        super().__init__(address, sim)

    def get_request(self):
        sock, addr = super().get_request()
        try:
            # No I/O yet: the handshake happens in finish_request.
            return self.context.wrap_socket(sock, server_side=True,
                                            do_handshake_on_connect=False), addr
        except Exception:
            sock.close()
            raise

    def finish_request(self, request, client_address):
        request.settimeout(TLS_HANDSHAKE_SECONDS)
        request.do_handshake()
        super().finish_request(request, client_address)


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    return context


# --- entry point --------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="dbsync remote API simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--port-file", help="write the chosen port here")
    p.add_argument("--user", default="api")
    p.add_argument("--password", default="secret")
    p.add_argument("--fixture", default=DEFAULT_FIXTURE,
                   help="Flexi changes fixture (JSON list of payloads)")
    p.add_argument("--log", help="request log file (default: no log)")
    p.add_argument("--precompute", action="append", default=[],
                   metavar="COMPANY",
                   help="build all 1000-change pages of gen<N> at start "
                        "(repeatable)")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="also serve HTTPS with this certificate (chain), PEM")
    p.add_argument("--tls-key", metavar="PEM",
                   help="private key of --tls-cert, PEM")
    p.add_argument("--tls-port-file", metavar="PATH",
                   help="write the HTTPS listener's port here")
    p.add_argument("--odoo-dir", metavar="DIR",
                   help="where Odoo upgrade uploads are stored (default: a "
                        "new temp dir, removed at exit)")
    p.add_argument("--octoplant-user", default=octoplant.DEFAULT_USER,
                   metavar="NAME",
                   help="octoplant Export API user name (its password is "
                        "--password)")
    p.add_argument("--octoplant-client-secret",
                   default=octoplant.DEFAULT_CLIENT_SECRET, metavar="SECRET",
                   help="octoplant OAuth2 client secret (client id "
                        "public-api)")
    options = p.parse_args(argv)
    if bool(options.tls_cert) != bool(options.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if options.tls_port_file and not options.tls_cert:
        p.error("--tls-port-file needs --tls-cert and --tls-key")
    for name in options.precompute:
        gen = re.fullmatch(r"gen([1-9][0-9]*)", name)
        if not (gen and int(gen.group(1)) <= flexi.GEN_MAX
                or flexi.live_size(name) is not None):
            p.error(f"--precompute {name}: not a gen<N> or live<N> company")
    return options


def write_port_file(path, port):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)  # readers never see a partial file


def main(argv=None):
    options = parse_args(argv)
    log_file = (open(options.log, "a", buffering=1, encoding="utf-8")
                if options.log else None)
    sim = Sim(options, log_file)

    def on_signal(signum, frame):
        sim.stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    servers = [SimServer((options.host, options.port), sim)]
    if options.tls_cert:
        context = tls_context(options.tls_cert, options.tls_key)
        servers.append(TLSSimServer((options.host, 0), sim, context))
        if options.tls_port_file:  # first: the plain port file means "all up"
            write_port_file(options.tls_port_file, servers[1].server_address[1])
    if options.port_file:
        write_port_file(options.port_file, servers[0].server_address[1])

    for server in servers:
        threading.Thread(target=server.serve_forever,
                         kwargs={"poll_interval": 0.1}, daemon=True).start()
    while not sim.stop.wait(0.5):
        pass
    stoppers = [threading.Thread(target=server.shutdown) for server in servers]
    for thread in stoppers:  # in parallel: each waits up to one poll_interval
        thread.start()
    for thread in stoppers:
        thread.join()
    for server in servers:
        server.server_close()
    sim.close()
    sim.close_log()
    return 0


if __name__ == "__main__":
    sys.exit(main())
