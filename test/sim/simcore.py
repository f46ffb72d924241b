"""Types shared by the simulator core (dbsync_sim.py) and the API modules.

Kept separate so that API modules never import dbsync_sim.py, which runs as
__main__ (importing it again would create a second copy of every class).

An API module is any object with:
    prefixes: list of path prefixes it owns (e.g. ["/c/"])
    handle(req: Request) -> Response
    reset() -> None            (forget per-run state; called by /_sim/reset)
and optionally
    controls: dict name -> (methods, func(req) -> Response): extra
              /_sim/<name> control endpoints (no auth, no stats); a name
              may contain "/" (e.g. "odoo/state" is /_sim/odoo/state)
    streams_body(method, path) -> bool: True if the module reads this
              request's body itself from req.stream (a BodyReader: read the
              socket in chunks, never the whole body in memory); req.body is
              then b"".  Whatever the module leaves unread is drained
              (discarded) by the server before it answers.
    close() -> None            (release files etc.; called at shutdown)
"""

from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import unquote

# Transport-level fault modes, applied by the server when sending a Response.
TRANSPORT_MODES = ("truncated", "truncated-json", "reset")
# All fault modes that can be armed through /_sim/fault. "lowversion" is for
# change-log pages only (other requests pass over it; see flexi.py).
FAULT_MODES = ("status", "slow", "malformed") + TRANSPORT_MODES + ("lowversion",)


@dataclass
class Fault:
    mode: str               # one of FAULT_MODES
    status: int = 503       # for mode "status"
    seconds: float = 60.0   # for mode "slow"


class BodyError(Exception):
    """A streamed request body that cannot be read to its end (bad chunked
    encoding, or the client went away in the middle of it)."""


def path_scopes(path):
    """Fault scopes of a (decoded) path, most specific first: the path
    itself, then "<every parent>/*", ending with "/*".  Path scopes start
    with "path:" so that they never collide with Flexi company names."""
    scopes = ["path:" + path]
    parts = path.rstrip("/").split("/")
    for n in range(len(parts) - 1, 0, -1):
        scopes.append("path:" + "/".join(parts[:n]) + "/*")
    return scopes


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: Optional[str] = None
    headers: list = field(default_factory=list)  # extra (name, value) pairs
    # None, or one of TRANSPORT_MODES: how the server should damage the reply.
    transport: Optional[str] = None
    # True: the server gzips the body if the request's Accept-Encoding
    # lists gzip (before any transport damage).
    compressible: bool = False
    # None, or a streamed body sent instead of `body`: an object with
    #   length               bytes it will produce (the Content-Length)
    #   segments(count)      an iterator over the first count bytes, as
    #                        bytes-like objects or (file, offset, n) tuples
    #                        (sent with sendfile on plain sockets); the
    #                        server closes the iterator when it stops early.
    stream: object = None


@dataclass
class Request:
    method: str
    path: str               # raw (still percent-encoded) path, no query
    query: str              # raw query string, "" if none
    params: dict            # name -> list of decoded values
    headers: object         # http.client.HTTPMessage
    body: bytes
    # take_fault(scope, skip=()) -> Fault or None: consume the first armed
    # on-demand fault of scope whose mode is not in skip.
    take_fault: Callable[..., Optional[Fault]]
    # sleep(seconds): interruptible sleep that ends early on server shutdown.
    sleep: Callable[[float], None]
    # The body reader when the module streams the body (see streams_body):
    # readinto(buffer) -> n (0 at the end; BodyError when broken), nread.
    stream: object = None
    # "http://host:port" or "https://host:port": the local address and scheme
    # of the listener this request came in on (for URLs in replies).
    base_url: str = ""

    def take_path_fault(self, skip=()):
        """The first armed fault of this path's scopes (see path_scopes)."""
        for scope in path_scopes(unquote(self.path)):
            fault = self.take_fault(scope, skip)
            if fault is not None:
                return fault
        return None

    def param(self, name, default=None):
        """Last value of a query parameter, or default."""
        values = self.params.get(name)
        return values[-1] if values else default

    @property
    def target(self):
        """Path plus query, as the client sent it."""
        return self.path + ("?" + self.query if self.query else "")


def text_response(status, text, content_type="text/plain; charset=utf-8",
                  headers=None):
    return Response(status, text.encode("utf-8"), content_type,
                    list(headers or []))
