"""octoplant Export API simulator (AUVESY-MDT octoplant, swagger "octoplant
API" v1), under /v1/.

The flow of the vendor's documentation: get a token (OAuth2 password grant),
order an export, poll the order (a google.longrunning Operation) until done,
download the result as a ZIP archive; or cancel the order.

Every JSON reply has Content-Type application/json.  Errors have the
grpc-gateway shape {"code": <gRPC code>, "message": "...", "details": []}
with the HTTP status grpc-gateway maps that code to (GRPC_HTTP: 3 and 9 ->
400, 16 -> 401, 7 -> 403, 5 -> 404, 11 -> 400 (416 for a bad Range), 12 ->
501, 13 -> 500, ...).  An unknown path is 404 code 5; a known path with the
wrong method 405 code 12 (with Allow).  int64 fields are JSON strings, as
protobuf JSON writes them.

POST /v1/oauth2/token  (no token needed; body application/x-www-form-urlencoded)
  grant_type=password&username=U&password=P&client_id=public-api&client_secret=S
  U is --octoplant-user (default "versiondog"), P the simulator's --password,
  S --octoplant-client-secret (default the documentation's
  ff99971a-f8c3-4d21-5345-f7cb021b4b54).
  200 {"access_token": T, "token_type": "Bearer", "expires_in": TTL,
       "refresh_token": R}  (T and R: 43 random url-safe characters; TTL from
       /_sim/octoplant/config, default 3600 s)
  400 code 3   grant_type is not "password" (missing included)
  401 code 16  "invalid client" (client_id or client_secret wrong), checked
               before "invalid username or password"

Every other /v1/ path needs "Authorization: Bearer T" with an issued token
that has not expired: else 401 code 16 with the message "missing bearer
token", "invalid token" or "expired token".  Paths are routed (404, 405)
before the token is checked.

POST /v1/order  body {"exportContents": {KIND: {options...}, ...}}
  KIND: one of KINDS (projectTree, jobList, jobResults, ...); the options are
  kept as given (not checked).  Other top-level fields are ignored.  An empty
  body counts as {}.  400 code 3 when the body is not JSON or not an object,
  exportContents is missing, not an object or empty, a kind is unknown or its
  value is not an object.  200: the Operation
    {"name": N, "metadata": {"@type": ".../octoplant.export.v1.ExportState",
       "name": N, "systemId": SYSTEM_ID, "licenseSerialNumber": "SIM-0001",
       "state": "STATE_PENDING", "currentSubProcess": "",
       "finishedSubProcesses": "0", "openSubProcesses": "<number of kinds>"},
     "done": false}
  N is uuid4-shaped but derived from the order's serial number since the
  last reset (order_name()), so that test output is the same on every run.

GET /v1/order/{name}  the Operation in its current state (key order as above;
  done ones add "response": {"@type": ".../google.protobuf.Empty"} when
  STATE_SUCCEEDED, or "error": {"code", "message", "details": []} when
  STATE_FAILED).  metadata: PENDING: currentSubProcess "", finished 0, open
  all kinds; RUNNING: currentSubProcess the kind being exported, finished the
  kinds before it, open the rest (the current one included); SUCCEEDED: "",
  all finished, 0 open; FAILED: the counts it had when it failed.
  An unknown name (any string) is not an error (the documented STATE_UNSPECIFIED
  of an invalid GetOperation): 200 {"name": <the name asked>, "metadata":
  {"@type", "name": "", "state": "STATE_UNSPECIFIED", "finishedSubProcesses":
  "0", "openSubProcesses": "0"}, "done": false}.
  The state machine has two modes (/_sim/octoplant/config):
    polls (seconds = 0, the default): each GET shows the current state and
      counts as one poll of it; a state shown polls[state] times (pending: 1,
      running: 1 by default; 0 skips it) is left at the next GET.  So: order
      -> PENDING; GET -> PENDING; GET -> RUNNING; GET -> SUCCEEDED.  With
      running = M, the k-th RUNNING reply (k = 0..M-1) has k * kinds // M
      kinds finished.  Only these GETs move an order.
    time (seconds = T > 0): PENDING for the first 0.2 T after the order,
      RUNNING until T (kinds finished in proportion), then done; "finished"
      is created + T exactly, whenever it is noticed.  GETs do not advance
      it; every look at the order (GET, cancel, download, the orders control)
      sees the state of the clock.  An order forced through /_sim/octoplant/
      state no longer follows the clock.
  An order marked to fail (/_sim/octoplant/fail) ends in STATE_FAILED with
  its error (default code 13, "export failed: simulated error while
  exporting <its last kind>") where it would have succeeded.

POST /v1/order/{name}/cancel  (body empty or {}; not read)
  200 {}: a PENDING or RUNNING order becomes STATE_FAILED, done, with error
  {"code": 1, "message": "export cancelled", "details": []}.  Unknown name
  404 code 5; an order already done 400 code 9 (FAILED_PRECONDITION).

GET /v1/order/{name}/download  only in STATE_SUCCEEDED: 200 application/zip,
  Content-Length, Content-Disposition: attachment; filename="export-N.zip",
  Accept-Ranges: bytes.  Not succeeded: 400 code 9 ("export N is not
  finished (STATE_RUNNING)", "export N failed: <its error message>"); unknown
  name 404 code 5.  Single "Range: bytes=a-b|a-|-n" requests are answered
  (206 with Content-Range; unsatisfiable: 416 code 11); other Range forms are
  ignored (200).
  The archive (made by zip_plan(), never held whole in memory): stored
  (uncompressed) members, no zip64, no data descriptors, dated by the order's
  creation (UTC): "contents.json" ({"name": N, "exportContents": {as
  ordered}}), then "<kind>.json" for each ordered kind (a small simulated
  document), then, when zip_size (config) asks for more than the natural
  size, "payload.bin": bytes of payload_block() repeated, sized so that the
  archive is exactly zip_size bytes (a gap too small for that member, under
  PAYLOAD_OVERHEAD bytes, is filled by the archive comment instead).  The
  payload's CRC-32 is computed arithmetically (crc32_repeat()), so a download
  of any size starts at once and streams in 1 MiB slices of one prebuilt
  block.  Every download of an order with the same zip_size gives the same
  bytes.  zip_size below the natural size gives the natural archive.

Armed faults (dbsync_sim.py /_sim/fault?path=P&mode=M...) apply to every
request of this module whose decoded path is P (or lies under a P ending in
"/*", e.g. /v1/order/*, /v1/*): status -> that HTTP status with {"code":
<the gRPC code grpc-gateway maps to that status, else 2>, "message":
"Simulated error <status>", "details": []}; malformed -> 200 with a body that
is not JSON; reset -> RST at once; slow -> sleep, then the normal answer;
truncated, truncated-json -> the normal answer damaged (downloads too:
truncated announces the full Content-Length, sends half and closes).  A
faulted request does nothing else (no token, no order, no poll, no stats).

Control endpoints of this module (no auth, no faults):
  GET|POST /_sim/octoplant/config[?token_ttl=S][&pending=N][&running=M]
           [&seconds=T][&zip_size=BYTES][&cut_tail=N]
       {"token_ttl": 3600, "pending": 1, "running": 1, "seconds": 0,
        "zip_size": 0, "cut_tail": 0} (after the changes; both methods set).
       cut_tail: whole (200) downloads leave out the archive's last N bytes,
       with a Content-Length to match (a ZIP without its end record).  token_ttl,
       pending, running: integers >= 0 (token_ttl applies to tokens issued
       afterwards); seconds: a number >= 0 (0 = poll mode); zip_size: bytes,
       with an optional K, M or G suffix (1024-based), at most 4294967295
       (no zip64); 0 = the natural archive.  400 {"error"} when bad.
  POST /_sim/octoplant/expire_tokens   every issued token expires now
       -> {"expired": <tokens>}
  POST /_sim/octoplant/fail[?count=N][&code=C][&message=M]
       the next N (default 1) orders created fail where they would succeed
       (several calls queue up) -> {"fail_next": [{"count", "code",
       "message"}, ...]}
  POST /_sim/octoplant/fail?name=X[&code=C][&message=M]   that order
       (404 unknown, 409 already done) -> {"order": {...}}
       (C: an integer 1..16, default 13; M: default as above)
  POST /_sim/octoplant/state?name=X&state=STATE_PENDING|STATE_RUNNING|
       STATE_SUCCEEDED|STATE_FAILED[&code=C][&message=M]   force a state
       (FAILED: error C/M, default its failure mark or code 13); the poll
       count of the new state starts at 0 -> {"order": {...}}
  GET  /_sim/octoplant/orders[?name=X]   a JSON list of the orders (oldest
       first), each {"name", "state", "done", "contents", "created" (epoch),
       "finished" (epoch when it became done, or null), "first_seen_done"
       (epoch of the first GET /v1/order/{name} reply showing done, or null),
       "polls" (GETs of it), "downloads", "error" (or null)}; never advances
       a poll-mode order
  GET  /_sim/octoplant/stats   {"grants", "grant_failures", "unauthenticated"
       (401s for missing, invalid or expired tokens), "status_gets" (every
       authenticated GET /v1/order/{name}, unknown names too), "orders",
       "cancels" (done ones), "downloads" (begun)}
  /_sim/reset forgets orders, tokens, failure marks and counters and restores
  the default config.
"""

import hashlib
import json
import math
import secrets
import sys
import threading
import time
import traceback
import uuid
import zlib
from struct import pack
from urllib.parse import parse_qs, unquote

from odoo import parse_range, parse_size
from simcore import Response

JSON_CT = "application/json"
KINDS = ("projectTree", "jobList", "jobResults", "unequalJobResults",
         "userManagement", "componentTypes", "componentLog", "eventLog",
         "adminLog", "standardLibraryManagement",
         "componentsWithStdLibAssignments", "assetState", "usageInformation")
PENDING, RUNNING = "STATE_PENDING", "STATE_RUNNING"
SUCCEEDED, FAILED = "STATE_SUCCEEDED", "STATE_FAILED"
UNSPECIFIED = "STATE_UNSPECIFIED"
FORCIBLE = (PENDING, RUNNING, SUCCEEDED, FAILED)
STATE_TYPE = "type.googleapis.com/octoplant.export.v1.ExportState"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
SYSTEM_ID = "3f6c2a9e-8d41-4b7a-9c35-0e2d5f1a7b64"
LICENSE = "SIM-0001"
CLIENT_ID = "public-api"
DEFAULT_CLIENT_SECRET = "ff99971a-f8c3-4d21-5345-f7cb021b4b54"
DEFAULT_USER = "versiondog"
DEFAULT_CONFIG = {"token_ttl": 3600, "pending": 1, "running": 1,
                  "seconds": 0, "zip_size": 0, "cut_tail": 0}
PENDING_SHARE = 0.2         # time mode: pending for this part of `seconds`
FAIL_CODE = 13
CANCEL_ERROR = (1, "export cancelled")
ZIP_MAX = 0xFFFFFFFF        # no zip64: every size and offset fits 32 bits
MALFORMED_BODY = b'{"name": "0b1c", "metadata": {"@type": '
# gRPC code -> HTTP status, as grpc-gateway's HTTPStatusFromCode.
GRPC_HTTP = {0: 200, 1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403,
             8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503,
             15: 500, 16: 401}
# HTTP status of an armed fault -> the gRPC code of its body.
HTTP_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1,
             500: 13, 501: 12, 503: 14, 504: 4}


# --- CRC-32 arithmetic (the payload's CRC without reading it) ----------------

CRC_POLY = 0xEDB88320       # reflected CRC-32 polynomial (zlib's)


def _multmodp(a, b):
    """a * b modulo the CRC polynomial (bit-reflected: 1 << 31 is x^0)."""
    if a == 0:
        return 0
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ CRC_POLY if b & 1 else b >> 1


def _x2n_table():
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()          # _X2N[k] = x^(2^k)


def _x8nmodp(n):
    """x^(8n) modulo the polynomial: the shift of n zero bytes."""
    p, k = 1 << 31, 3
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1, crc2, len2):
    """CRC-32 of A + B from crc(A), crc(B) and len(B)."""
    return _multmodp(_x8nmodp(len2), crc1) ^ crc2


def crc32_repeat(block, total):
    """zlib.crc32 of `total` bytes of block repeated (block, block, ...,
    a prefix of block), in O(log total) steps."""
    whole, rest = divmod(total, len(block))
    crc, power, power_len = 0, zlib.crc32(block), len(block)
    while whole:  # binary powers of the block, joined as the bits say
        if whole & 1:
            crc = crc32_combine(crc, power, power_len)
        whole >>= 1
        if whole:
            power = crc32_combine(power, power, power_len)
            power_len *= 2
    if rest:
        crc = crc32_combine(crc, zlib.crc32(block[:rest]), rest)
    return crc


# --- the ZIP archive -----------------------------------------------------------

PAYLOAD_NAME = "payload.bin"
PAYLOAD_BLOCK_SIZE = 1 << 20
LOCAL_SIZE, CENTRAL_SIZE, END_SIZE = 30, 46, 22
# What an empty payload member adds: its local and central headers.
PAYLOAD_OVERHEAD = LOCAL_SIZE + CENTRAL_SIZE + 2 * len(PAYLOAD_NAME)
COMMENT_FILL = b"dbsync-sim octoplant export padding. "

_payload_block = None


def payload_block():
    """The 1 MiB pattern payload.bin repeats: byte o of the member is
    payload_block()[o % PAYLOAD_BLOCK_SIZE] (sha256 in counter mode)."""
    global _payload_block
    if _payload_block is None:
        _payload_block = b"".join(
            hashlib.sha256(b"dbsync-sim octoplant %d" % i).digest()
            for i in range(PAYLOAD_BLOCK_SIZE // 32))
    return _payload_block


def dos_stamp(epoch):
    """(DOS time, DOS date) of an epoch, in UTC."""
    t = time.gmtime(epoch)
    year = min(max(t.tm_year, 1980), 2107)
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)



def order_name(serial):
    """The name of the serial-th order since the last reset: a uuid4-shaped
    string, the same on every run."""
    digest = hashlib.sha256(f"octoplant-order-{serial}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))

class ZipPlan:
    """An archive as head bytes, then `payload` generated bytes, then tail
    bytes (head and tail are small)."""

    def __init__(self, head, payload, tail):
        self.head, self.payload, self.tail = head, payload, tail
        self.length = len(head) + payload + len(tail)


def zip_plan(members, epoch, size=0):
    """The ZipPlan of stored members [(name, bytes)], padded to `size` bytes
    (see the module docstring) when that is more than their natural size."""
    dtime, ddate = dos_stamp(epoch)
    entries = []  # (name bytes, crc, length, offset of the local header)
    head = bytearray()

    def local(name, crc, length):
        return pack("<IHHHHHIIIHH", 0x04034B50, 10, 0, 0, dtime, ddate,
                    crc, length, length, len(name), 0) + name

    for name, data in members:
        name = name.encode()
        entries.append((name, zlib.crc32(data), len(data), len(head)))
        head += local(*entries[-1][:3]) + data
    natural = len(head) + sum(CENTRAL_SIZE + len(e[0]) for e in entries) \
        + END_SIZE
    gap = size - natural
    payload, comment = 0, b""
    if gap >= PAYLOAD_OVERHEAD:
        payload = gap - PAYLOAD_OVERHEAD
        name = PAYLOAD_NAME.encode()
        entries.append((name, crc32_repeat(payload_block(), payload),
                        payload, len(head)))
        head += local(*entries[-1][:3])
    elif gap > 0:
        comment = (COMMENT_FILL * (gap // len(COMMENT_FILL) + 1))[:gap]
    central = b"".join(
        pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 10, 0, 0, dtime, ddate,
             crc, length, length, len(name), 0, 0, 0, 0, 0o100644 << 16,
             offset) + name
        for name, crc, length, offset in entries)
    end = pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
               len(central), len(head) + payload, len(comment)) + comment
    return ZipPlan(bytes(head), payload, central + end)


class ZipBody:
    """Bytes [start, start + length) of a ZipPlan, as a streamed reply."""

    def __init__(self, plan, start=0, length=None):
        self.plan, self.start = plan, start
        self.length = plan.length - start if length is None else length

    def segments(self, count):
        plan = self.plan
        pos, end = self.start, self.start + min(count, self.length)
        head_end = len(plan.head)
        payload_end = head_end + plan.payload
        if pos < min(end, head_end):
            yield memoryview(plan.head)[pos:min(end, head_end)]
            pos = min(end, head_end)
        stop = min(end, payload_end)
        if pos < stop:
            block = memoryview(payload_block())
            while pos < stop:
                at = (pos - head_end) % PAYLOAD_BLOCK_SIZE
                n = min(PAYLOAD_BLOCK_SIZE - at, stop - pos)
                yield block[at:at + n]
                pos += n
        if pos < end:
            yield memoryview(plan.tail)[pos - payload_end:end - payload_end]


def kind_document(name, kind, options, created):
    """The simulated content of <kind>.json."""
    return {
        "export": kind,
        "order": name,
        "systemId": SYSTEM_ID,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "options": options,
        "simulated": True,
        "items": [{"id": i, "name": f"{kind} item {i}"} for i in range(1, 4)],
    }


def dumps(obj):
    return (json.dumps(obj, indent=2) + "\n").encode()


# --- replies ------------------------------------------------------------------

def status_reply(code, message, headers=None):
    """A grpc-gateway error reply for a gRPC code."""
    return Response(GRPC_HTTP.get(code, 500), json.dumps(
        {"code": code, "message": message, "details": []}).encode(),
        JSON_CT, list(headers or []))


def json_reply(status, obj):
    return Response(status, json.dumps(obj).encode(), JSON_CT)


def unknown_operation(name):
    return {"name": name,
            "metadata": {"@type": STATE_TYPE, "name": "", "state": UNSPECIFIED,
                         "finishedSubProcesses": "0", "openSubProcesses": "0"},
            "done": False}


# --- the orders ---------------------------------------------------------------

class Order:
    def __init__(self, name, contents, created, fail):
        self.name = name
        self.contents = contents
        self.kinds = list(contents)
        self.created = created
        self.fail = fail            # None or (code, message): fail, not succeed
        self.state = PENDING
        self.shown = 0              # GET replies shown in the current state
        self.finished_kinds = 0
        self.done = False
        self.error = None           # (code, message) once failed
        self.finished = None
        self.first_seen_done = None
        self.polls = 0
        self.downloads = 0
        self.pinned = False         # forced: does not follow the clock
        self.zips = {}              # zip_size -> ZipPlan

    def default_failure(self):
        return (FAIL_CODE, "export failed: simulated error while exporting "
                + self.kinds[-1])

    # -- state changes (caller holds the module lock) --

    def enter(self, state, now, error=None):
        self.state = state
        self.shown = 0
        self.done = state in (SUCCEEDED, FAILED)
        if state == PENDING:
            self.finished_kinds = 0
        elif state == RUNNING:
            self.finished_kinds = min(self.finished_kinds, len(self.kinds) - 1)
        elif state == SUCCEEDED:
            self.finished_kinds = len(self.kinds)
        self.error = (error or self.fail or self.default_failure()) \
            if state == FAILED else None
        self.finished = now if self.done else None
        self.first_seen_done = None

    def finish(self, now):
        if self.fail:
            self.enter(FAILED, now, self.fail)
        else:
            self.enter(SUCCEEDED, now)

    def poll(self, polls, now):
        """One status GET in poll mode: advance as far as the counts allow."""
        while self.state in (PENDING, RUNNING) and \
                self.shown >= polls[self.state]:
            if self.state == PENDING:
                self.enter(RUNNING, now)
            else:
                self.finish(now)
        if self.state == RUNNING:
            self.finished_kinds = min(len(self.kinds) - 1,
                                      self.shown * len(self.kinds)
                                      // polls[RUNNING])
        self.shown += 1

    def clock(self, seconds, now):
        """Time mode: catch up with the clock (forward only)."""
        if self.done or self.pinned:
            return
        elapsed = now - self.created
        if elapsed >= seconds:
            self.finish(self.created + seconds)
            return
        start = PENDING_SHARE * seconds
        if elapsed < start:
            return
        if self.state == PENDING:
            self.enter(RUNNING, now)
        share = (elapsed - start) / (seconds - start)
        self.finished_kinds = max(self.finished_kinds, min(
            len(self.kinds) - 1, int(share * len(self.kinds))))

    # -- views --

    def operation(self):
        n = len(self.kinds)
        finished = self.finished_kinds
        out = {"name": self.name, "metadata": {
            "@type": STATE_TYPE,
            "name": self.name,
            "systemId": SYSTEM_ID,
            "licenseSerialNumber": LICENSE,
            "state": self.state,
            "currentSubProcess": (self.kinds[finished]
                                  if self.state == RUNNING else ""),
            "finishedSubProcesses": str(finished),
            "openSubProcesses": str(n - finished),
        }, "done": self.done}
        if self.state == SUCCEEDED:
            out["response"] = {"@type": EMPTY_TYPE}
        elif self.state == FAILED:
            out["error"] = self.error_json()
        return out

    def error_json(self):
        if self.error is None:
            return None
        return {"code": self.error[0], "message": self.error[1], "details": []}

    def sim_json(self):
        return {"name": self.name, "state": self.state, "done": self.done,
                "contents": self.contents, "created": self.created,
                "finished": self.finished,
                "first_seen_done": self.first_seen_done, "polls": self.polls,
                "downloads": self.downloads, "error": self.error_json()}

    def members(self):
        out = [("contents.json", dumps({"name": self.name,
                                        "exportContents": self.contents}))]
        for kind in self.kinds:
            out.append((kind + ".json", dumps(kind_document(
                self.name, kind, self.contents[kind], self.created))))
        return out


def order_contents(body):
    """The exportContents of a POST /v1/order body, or raise ValueError."""
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    contents = data.get("exportContents")
    if contents is None:
        raise ValueError("exportContents is required")
    if not isinstance(contents, dict):
        raise ValueError("exportContents must be an object")
    if not contents:
        raise ValueError("exportContents is empty: order at least one of "
                         + ", ".join(KINDS))
    for kind, options in contents.items():
        if kind not in KINDS:
            raise ValueError(f'unknown export kind "{kind}" in exportContents'
                             f" (known: {', '.join(KINDS)})")
        if not isinstance(options, dict):
            raise ValueError(f"exportContents.{kind} must be an object")
    return contents


# --- the module ---------------------------------------------------------------

class OctoplantModule:
    prefixes = ["/v1/"]

    def __init__(self, options):
        self.user = getattr(options, "octoplant_user", None) or DEFAULT_USER
        self.password = getattr(options, "password", None) or "secret"
        self.client_secret = (getattr(options, "octoplant_client_secret", None)
                              or DEFAULT_CLIENT_SECRET)
        self._lock = threading.Lock()
        self._clear()
        self.controls = {
            "octoplant/config": (("GET", "POST", "PUT"), self.control_config),
            "octoplant/expire_tokens": (("POST", "PUT"), self.control_expire),
            "octoplant/fail": (("POST", "PUT"), self.control_fail),
            "octoplant/state": (("POST", "PUT"), self.control_state),
            "octoplant/orders": (("GET",), self.control_orders),
            "octoplant/stats": (("GET",), self.control_stats),
        }

    def _clear(self):
        self._orders = {}           # name -> Order, oldest first
        self._serial = 0            # orders created since the last reset
        self._tokens = {}           # access token -> expiry (time.monotonic)
        self._fail_next = []        # [[count, code, message]]
        self._config = dict(DEFAULT_CONFIG)
        self._stats = dict.fromkeys(("grants", "grant_failures",
                                     "unauthenticated", "status_gets",
                                     "orders", "cancels", "downloads"), 0)

    def reset(self):
        with self._lock:
            self._clear()

    # -- entry --

    def handle(self, req):
        fault = req.take_path_fault()
        if fault is not None:
            if fault.mode == "status":
                return Response(fault.status, json.dumps({
                    "code": HTTP_GRPC.get(fault.status, 2),
                    "message": f"Simulated error {fault.status}",
                    "details": []}).encode(), JSON_CT)
            if fault.mode == "malformed":
                return Response(200, MALFORMED_BODY, JSON_CT)
            if fault.mode == "reset":
                return Response(0, transport="reset")
            if fault.mode == "slow":
                req.sleep(fault.seconds)
        try:
            resp = self._route(req)
        except Exception as exc:  # noqa: BLE001 - report as the API would
            traceback.print_exc(file=sys.stderr)
            resp = status_reply(13, f"internal error: {exc}")
        if fault is not None and fault.mode in ("truncated", "truncated-json"):
            resp.transport = fault.mode
        return resp

    def _route(self, req):
        parts = [unquote(p) for p in req.path.split("/")[2:]]  # after /v1/
        name = None
        if parts == ["oauth2", "token"]:
            allowed, method = ("POST",), self.token
        elif parts == ["order"]:
            allowed, method = ("POST",), self.create
        elif len(parts) == 2 and parts[0] == "order" and parts[1]:
            allowed, method, name = ("GET",), self.status, parts[1]
        elif len(parts) == 3 and parts[0] == "order" and parts[1] and \
                parts[2] in ("cancel", "download"):
            name = parts[1]
            if parts[2] == "cancel":
                allowed, method = ("POST",), self.cancel
            else:
                allowed, method = ("GET",), self.download
        else:
            return status_reply(5, f"Not Found: {unquote(req.path)}")
        if req.method not in allowed:
            return Response(405, json.dumps({
                "code": 12, "message": "Method Not Allowed", "details": []
            }).encode(), JSON_CT, [("Allow", ", ".join(allowed))])
        if method == self.token:
            return method(req)
        error = self._authenticate(req)
        if error is not None:
            return error
        return method(req) if name is None else method(req, name)

    def _authenticate(self, req):
        """None if the request carries a live token, else the 401 reply."""
        header = req.headers.get("Authorization") or ""
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        with self._lock:
            if scheme.lower() != "bearer" or not token:
                message = "missing bearer token"
            else:
                expiry = self._tokens.get(token)
                if expiry is None:
                    message = "invalid token"
                elif time.monotonic() >= expiry:
                    message = "expired token"
                else:
                    return None
            self._stats["unauthenticated"] += 1
        return status_reply(16, message)

    def _observe(self, order, now):
        """Time mode: bring the order up to the clock (lock held)."""
        if self._config["seconds"] > 0:
            order.clock(self._config["seconds"], now)

    def _known(self, name):
        order = self._orders.get(name)
        if order is None:
            return None, status_reply(5, f"export {name} not found")
        return order, None

    # -- /v1/* --

    def token(self, req):
        form = parse_qs(req.body.decode("utf-8", "replace"),
                        keep_blank_values=True)

        def field(key):
            return (form.get(key) or [""])[-1]

        grant = field("grant_type")
        if grant != "password":
            error = status_reply(3, f'unsupported grant_type "{grant}": '
                                 'use "password"')
        elif field("client_id") != CLIENT_ID or not secrets.compare_digest(
                field("client_secret").encode(), self.client_secret.encode()):
            error = status_reply(16, "invalid client")
        elif field("username") != self.user or not secrets.compare_digest(
                field("password").encode(), self.password.encode()):
            error = status_reply(16, "invalid username or password")
        else:
            error = None
        with self._lock:
            if error is not None:
                self._stats["grant_failures"] += 1
                return error
            ttl = self._config["token_ttl"]
            token = secrets.token_urlsafe(32)
            self._tokens[token] = time.monotonic() + ttl
            self._stats["grants"] += 1
        return json_reply(200, {"access_token": token, "token_type": "Bearer",
                   "expires_in": ttl,
                   "refresh_token": secrets.token_urlsafe(32)})

    def create(self, req):
        try:
            contents = order_contents(req.body)
        except ValueError as exc:
            return status_reply(3, str(exc))
        with self._lock:
            fail = None
            if self._fail_next:
                mark = self._fail_next[0]
                fail = (mark[1], mark[2])
                mark[0] -= 1
                if mark[0] <= 0:
                    self._fail_next.pop(0)
            self._serial += 1
            order = Order(order_name(self._serial), contents, time.time(), fail)
            if fail is not None and fail[1] is None:
                order.fail = (fail[0], order.default_failure()[1])
            self._orders[order.name] = order
            self._stats["orders"] += 1
            return json_reply(200, order.operation())

    def status(self, req, name):
        with self._lock:
            self._stats["status_gets"] += 1
            order = self._orders.get(name)
            if order is None:
                return json_reply(200, unknown_operation(name))
            now = time.time()
            if self._config["seconds"] > 0:
                order.clock(self._config["seconds"], now)
            else:
                order.poll({PENDING: self._config["pending"],
                            RUNNING: self._config["running"]}, now)
            order.polls += 1
            if order.done and order.first_seen_done is None:
                order.first_seen_done = now
            return json_reply(200, order.operation())

    def cancel(self, req, name):
        with self._lock:
            order, error = self._known(name)
            if error:
                return error
            now = time.time()
            self._observe(order, now)
            if order.done:
                return status_reply(9, f"export {name} is already finished "
                                       f"({order.state})")
            order.enter(FAILED, now, CANCEL_ERROR)
            self._stats["cancels"] += 1
        return json_reply(200, {})

    def download(self, req, name):
        with self._lock:
            order, error = self._known(name)
            if error:
                return error
            self._observe(order, time.time())
            if order.state == FAILED:
                return status_reply(9, f"export {name} failed: "
                                       f"{order.error[1]}")
            if order.state != SUCCEEDED:
                return status_reply(9, f"export {name} is not finished "
                                       f"({order.state})")
            size = self._config["zip_size"]
            plan = order.zips.get(size)
            members = order.members() if plan is None else None
            created = order.created
        if plan is None:  # outside the lock: the payload CRC takes a moment
            plan = zip_plan(members, created, size)
        total = plan.length
        headers = [("Accept-Ranges", "bytes"),
                   ("Content-Disposition",
                    f'attachment; filename="export-{name}.zip"')]
        wanted = parse_range(req.headers.get("Range"), total)
        if wanted == "bad":
            resp = status_reply(11, "requested range not satisfiable",
                                [("Content-Range", f"bytes */{total}")])
            resp.status = 416  # HTTP's own answer, not grpc-gateway's 400
            return resp
        with self._lock:
            plan = order.zips.setdefault(size, plan)
            order.downloads += 1
            self._stats["downloads"] += 1
        if wanted is None:
            # cut_tail: a whole HTTP reply of a ZIP without its last bytes.
            cut = min(self._config["cut_tail"], total)
            return Response(200, b"", "application/zip", headers,
                            stream=ZipBody(plan, 0, total - cut))
        start, length = wanted
        headers.append(("Content-Range",
                        f"bytes {start}-{start + length - 1}/{total}"))
        return Response(206, b"", "application/zip", headers,
                        stream=ZipBody(plan, start, length))

    # -- /_sim/octoplant/* controls --

    def control_config(self, req):
        changes = {}
        for name in ("token_ttl", "pending", "running", "cut_tail"):
            text = req.param(name)
            if text is not None:
                if not text.isdigit():
                    return json_reply(400, {"error": f"{name} must be an "
                                                   "integer >= 0"})
                changes[name] = int(text)
        text = req.param("seconds")
        if text is not None:
            try:
                seconds = float(text)
            except ValueError:
                seconds = -1.0
            if not (math.isfinite(seconds) and seconds >= 0):
                return json_reply(400, {"error": "seconds must be a number >= 0"})
            changes["seconds"] = int(seconds) if seconds.is_integer() else seconds
        text = req.param("zip_size")
        if text is not None:
            try:
                size = parse_size(text)
            except ValueError as exc:
                return json_reply(400, {"error": f"zip_size: {exc}"})
            if size > ZIP_MAX:
                return json_reply(400, {"error": f"zip_size above {ZIP_MAX} "
                                               "needs zip64 (not simulated)"})
            changes["zip_size"] = size
        with self._lock:
            self._config.update(changes)
            return json_reply(200, dict(self._config))

    def control_expire(self, req):
        with self._lock:
            now = time.monotonic()
            for token in self._tokens:
                self._tokens[token] = min(self._tokens[token], now)
            return json_reply(200, {"expired": len(self._tokens)})

    @staticmethod
    def _failure_params(req):
        """(code, message or None) from the query; ValueError if bad."""
        text = req.param("code", str(FAIL_CODE))
        if not text.isdigit() or not 1 <= int(text) <= 16:
            raise ValueError("code must be a gRPC error code, 1..16")
        return int(text), req.param("message")

    def _control_order(self, req):
        name = req.param("name")
        order = self._orders.get(name) if name is not None else None
        if order is None:
            return None, json_reply(404, {"error": f"no order {name!r}"})
        return order, None

    def control_fail(self, req):
        try:
            code, message = self._failure_params(req)
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        with self._lock:
            if req.param("name") is not None:
                if req.param("count") is not None:
                    return json_reply(400, {"error": "give name or count, "
                                                   "not both"})
                order, error = self._control_order(req)
                if error:
                    return error
                self._observe(order, time.time())
                if order.done:
                    return json_reply(409, {"error": f"order {order.name} is "
                                                   "already done"})
                order.fail = (code, message or order.default_failure()[1])
                return json_reply(200, {"order": order.sim_json()})
            text = req.param("count", "1")
            if not text.isdigit() or int(text) < 1:
                return json_reply(400, {"error": "count must be an integer >= 1"})
            self._fail_next.append([int(text), code, message])
            return json_reply(200, {"fail_next": [
                {"count": c, "code": k, "message": m}
                for c, k, m in self._fail_next]})

    def control_state(self, req):
        state = req.param("state")
        if state not in FORCIBLE:
            return json_reply(400, {"error": "state must be one of "
                                           + ", ".join(FORCIBLE)})
        try:
            code, message = self._failure_params(req)
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})
        with self._lock:
            order, error = self._control_order(req)
            if error:
                return error
            failure = None
            if state == FAILED and (req.param("code") is not None
                                    or message is not None):
                failure = (code, message or order.default_failure()[1])
            order.enter(state, time.time(), failure)
            order.pinned = True
            return json_reply(200, {"order": order.sim_json()})

    def control_orders(self, req):
        name = req.param("name")
        with self._lock:
            now = time.time()
            rows = []
            for order in self._orders.values():
                if name is None or order.name == name:
                    self._observe(order, now)
                    rows.append(order.sim_json())
            return json_reply(200, rows)

    def control_stats(self, req):
        with self._lock:
            return json_reply(200, dict(self._stats))
