"""Odoo database upgrade API v1 simulator (upgrade.odoo.com), under /database/.

Faithful to the v1 documentation (Odoo 8.0-13.0 "Upgrade API"): the methods
create, upload, process, status and request_sftp_access under /database/v1/,
and the download URLs the status reply names, under /database/eu1/.  No auth
besides the per-request key.

Parameters come from the query string or the body as form fields
(application/x-www-form-urlencoded, or multipart/form-data as curl -F sends
for request_sftp_access); the query string wins when both have a name (as
werkzeug's request.values).  GET and POST are accepted for every method but
upload (POST or PUT: the raw dump is the body).

Every reply of /database/v1/* is JSON {"failures": [...], "request": {...}};
"request" is present when a request is known and the key matched (the status
shape below; request_sftp_access: the SFTP parameters, on success only).  A
failure always has "reason" and "message", and may have "code", "value",
"expected", "param".  Content-Type application/json.  HTTP status:
  200  success, and every validation failure (the documented behaviour):
       PARAM:MISSING     {"param": name}       a required parameter is absent
                                               or empty (create: contract,
                                               email, target, aim, filename;
                                               others: key, request;
                                               request_sftp_access: ssh_keys)
       TARGET:INVALID    {"value", "expected"} not one of VALID_TARGETS
       AIM:INVALID       {"value", "expected"} not test or production
       EMAIL:INVALID     {"value"}             not like a@b.c
       CONTRACT:NOT_FOUND {"code"}             see known_contract()
       STATE:INVALID     {"value", "expected"} the request is in the wrong
                                               state for this method
       UPLOAD:MISSING                          process before any upload
       UPLOAD:EMPTY                            an upload of 0 bytes (ignored)
       UPLOAD:CONTENT_TYPE {"value", "expected"} upload body declared as a
                                               form (curl --data-binary without
                                               -H "Content-Type:
                                               application/octet-stream")
       SSH_KEYS:INVALID  {"value"}             a line that is not a public key
  400  BODY:INVALID        the upload body broke off or is badly chunked
  403  KEY:INVALID         wrong key for an existing request
  404  REQUEST:NOT_FOUND {"code"}  no such request id (or not an integer);
       PATH:NOT_FOUND; DUMP:NOT_READY (downloads before state done)
  405  METHOD:NOT_ALLOWED
  416  RANGE:INVALID       unsatisfiable Range on a download
  500  SERVER:ERROR        e.g. the upload could not be stored
  any  SIM:FAULT           an armed "status" fault (see below)

create: see the module constants for the valid targets.  The request gets a
rising integer id (first 10534, as in the documentation; back to it after
/_sim/reset), a random key (16 random bytes, url-safe base64 with "==" as in
the documentation), issue = id + 637864, state "draft".

upload?key=&request= (POST/PUT, body = the raw dump, Content-Length or
chunked): only in state draft; streamed to a file in the upload dir (1 MiB
reads, constant memory) while its sha256 is computed; a new upload replaces
the previous one.  Sets filesize ("912.99 Kb": 1024-based, two decimals,
units b, Kb, Mb, Gb, Tb), compressions and postgresql guessed from the first
bytes: pg_dump custom format ("PGDMP") -> ["pgdmp_custom", "sql"] and the
server version from its header; zip -> ["zip", "sql"]; gzip -> ["gzip",
"sql"]; else ["sql"], version from a plain dump's "-- Dumped from database
version" line; postgresql "9.4"-style for PostgreSQL < 10, the major ("16")
after; null when unknown.

State machine (state, with issue_stage "new" in draft, else = state):
  draft --process (after an upload)--> pending --status--> progress
        --status--> done | failed
  Each status reply shows the current state and counts as one poll of it;
  a state that has been shown polls[state] times (default 1 for pending and
  for progress; 0 skips it) is left at the next status call.  So with the
  defaults: process -> pending; status -> pending; status -> progress;
  status -> done.  process fills estimated_time; entering progress fills
  processed_at, database_version (the valid target below the requested one)
  and database_uuid (from the upload's sha256); every status reply in
  progress adds one simulated minute to elapsed ("HH:MM").  A request whose
  filename or contract contains "fail" (any case), or marked through
  /_sim/odoo/fail, ends in "failed" with a customer_message instead of
  "done".  "cancelled" (and any state) is reachable through /_sim/odoo/state.
  Only status advances the machine; /_sim/odoo/requests does not.

request_sftp_access?key=&request= with ssh_keys (a form field or a multipart
file, authorized_keys style): only in state draft (upload) or done
(download); replies request = {hostname, sftp_port (2200), sftp_user
("user_<id>"), shared_file (the filename; "upgraded_<filename>" when done),
request_id, sample_command}.  No SFTP server is simulated.

Downloads (GET, /database/eu1/{id}/{key}/...; the status reply's URLs use the
simulator's own scheme, address and port):
  upgraded/archive   when done: the "upgraded dump": one header line
                     upgraded_header() followed by the uploaded bytes
                     (sendfile from disk); for a sparse request instead
                     exactly sparse_bytes generated bytes (sparse_block(),
                     repeated), nothing stored.
  original/archive   when done: the uploaded bytes as they are.
  upgraded/sql, original/sql   when done: a one-line SQL comment (not simulated)
  upgraded/notes     when done: a small HTML page
  modules/archive    when done: an empty zip archive
  status             any state: a small HTML page
  Archives answer single "Range: bytes=a-b|a-|-n" requests (206, 416), with
  Accept-Ranges: bytes and Content-Disposition: attachment; other Range
  forms are ignored (200).  Before done (status page excepted): 404
  DUMP:NOT_READY with {"value": state, "expected": ["done"]}; wrong key 403,
  unknown id 404 as above.  HEAD is not supported (501, as everywhere in the
  simulator).
  A filename ending ".sparse-<N>G" (or M) makes the request sparse (N GiB /
  MiB); so does /_sim/odoo/sparse.  A sparse request still needs an upload.

Armed faults (dbsync_sim.py /_sim/fault?path=P&mode=M...) apply to every
request of this module whose decoded path is P (or lies under a P ending in
"/*"): status -> that HTTP status with {"failures": [{"reason": "SIM:FAULT",
...}]}; malformed -> 200 with a body that is not JSON; reset -> RST at once
(an upload is not read); slow -> sleep, then the normal answer; truncated,
truncated-json -> the normal answer damaged (downloads too).  status and
malformed replace the method: an upload's body is read and discarded, and
nothing changes.

Control endpoints of this module (no auth, no faults, never advance states):
  GET  /_sim/odoo/requests[?request=ID]
       {"requests": [{the status reply's request, plus "sim": {"upload_bytes",
        "upload_sha256", "sparse_bytes", "polls", "fail", "downloads"}}]}
  GET|POST /_sim/odoo/config[?polls=N][&polls_pending=N][&polls_progress=N]
       {"polls": {"pending": N, "progress": N}} (N >= 0; POST/GET both set)
  POST /_sim/odoo/state?request=ID&state=S[&message=M]
       force any state (draft, pending, progress, done, failed, cancelled);
       pending/progress/done need an upload (409 otherwise); fields are filled
       as if the machine had got there; message sets customer_message.
       -> {"request": {...}}
  POST /_sim/odoo/fail?request=ID[&message=M]   end in failed, not done
       (message: the customer_message, set at once)
  POST /_sim/odoo/sparse?request=ID&size=N[K|M|G]  (0 = off) -> {"request",
       "sparse_bytes"}
  /_sim/reset forgets every request and deletes their files.
"""

import base64
import email.parser
import email.policy
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
import uuid
from urllib.parse import parse_qs, unquote

from simcore import BodyError, Response

JSON_CT = "application/json"
VALID_TARGETS = ["6.0", "6.1", "7.0", "8.0", "9.0", "10.0", "11.0", "12.0",
                 "13.0", "14.0", "15.0", "16.0", "17.0", "18.0"]
VALID_AIMS = ["test", "production"]
STATES = ("draft", "pending", "progress", "done", "failed", "cancelled")
FIRST_ID = 10534            # the documentation's request id
ISSUE_OFFSET = 648398 - FIRST_ID  # so that 10534 has the documented issue
DEFAULT_POLLS = 1
CHUNK = 1 << 20
SPARSE_BLOCK_SIZE = 1 << 20
SFTP_PORT = 2200
MALFORMED_BODY = b'{"failures": [], "request": {"id": 1, "state": '
EMPTY_ZIP = b"PK\x05\x06" + bytes(18)
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
CONTRACT_RE = re.compile(r"M[0-9]+-[A-Za-z0-9]+")
SPARSE_RE = re.compile(r"\.sparse-([0-9]+)([GM])$")
SIZE_RE = re.compile(r"([0-9]+)([KMG]?)")
SSH_KEY_RE = re.compile(r"(?:[a-z0-9-]+@openssh\.com|ssh-[a-z0-9-]+|"
                        r"ecdsa-sha2-[a-z0-9-]+) [A-Za-z0-9+/]+={0,3}(?: .*)?")
UNKNOWN_CONTRACTS = {"M123456-abcxyz"}  # the documentation's not-found example
UNITS = ("b", "Kb", "Mb", "Gb", "Tb")


# --- helpers shared with the self-test ---------------------------------------

def known_contract(code):
    """Contracts like M123456-abcdef exist, except M999... and the
    documentation's M123456-abcxyz."""
    return (CONTRACT_RE.fullmatch(code) is not None
            and not code.startswith("M999") and code not in UNKNOWN_CONTRACTS)


def human_size(n):
    value, unit = float(n), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value /= 1024
        unit += 1
    return f"{value:.2f} {UNITS[unit]}"


def parse_size(text):
    """"123", "4K", "5M", "2G" -> bytes (1024-based); ValueError if bad."""
    match = SIZE_RE.fullmatch(text or "")
    if not match:
        raise ValueError(f"bad size {text!r}")
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2)]


def sparse_size(filename):
    match = SPARSE_RE.search(filename)
    if not match:
        return 0
    return int(match.group(1)) << (30 if match.group(2) == "G" else 20)


_sparse_block = None


def sparse_block():
    """The 1 MiB pattern a sparse download repeats: byte o of the body is
    sparse_block()[o % len(sparse_block())] (sha256 in counter mode)."""
    global _sparse_block
    if _sparse_block is None:
        _sparse_block = b"".join(
            hashlib.sha256(b"dbsync-sim sparse %d" % i).digest()
            for i in range(SPARSE_BLOCK_SIZE // 32))
    return _sparse_block


def upgraded_header(request_id, target, size, sha256):
    return (f"-- dbsync-sim upgraded dump: request {request_id}, target "
            f"{target}, {size} bytes, sha256 {sha256}\n").encode()


def hhmm(minutes):
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def utc_now():
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def guess_dump(head):
    """(compressions, postgresql) guessed from a dump's first bytes."""
    if head.startswith(b"PGDMP"):
        return ["pgdmp_custom", "sql"], pg_version(custom_dump_version(head))
    if head.startswith(b"PK\x03\x04"):
        return ["zip", "sql"], None
    if head.startswith(b"\x1f\x8b"):
        return ["gzip", "sql"], None
    match = re.search(rb"-- Dumped from database version ([0-9][0-9.]*)", head)
    return ["sql"], pg_version(match.group(1).decode() if match else None)


def pg_version(version):
    """"9.4.26" -> "9.4"; "16.2" -> "16"; None -> None."""
    if not version:
        return None
    parts = version.split(".")
    try:
        major = int(parts[0])
    except ValueError:
        return None
    if major >= 10 or len(parts) < 2:
        return str(major)
    return f"{major}.{parts[1]}"


def custom_dump_version(head):
    """The server version in a pg_dump custom-format header (ReadHead in
    pg_backup_archiver.c), or None."""
    try:
        vmaj, vmin = head[5], head[6]
        pos = 7
        if vmaj > 1 or (vmaj == 1 and vmin > 0):
            vrev = head[pos]
            pos += 1
        else:
            vrev = 0
        version = (vmaj, vmin, vrev)
        int_size = head[pos]
        pos += 1
        if version >= (1, 7, 0):
            pos += 1  # offSize
        pos += 1      # format

        def read_int():
            nonlocal pos
            sign = head[pos]
            value = int.from_bytes(head[pos + 1:pos + 1 + int_size], "little")
            if pos + 1 + int_size > len(head):
                raise IndexError
            pos += 1 + int_size
            return -value if sign else value

        def read_str():
            nonlocal pos
            n = read_int()
            if n < 0:
                return None
            text = head[pos:pos + n]
            if len(text) != n:
                raise IndexError
            pos += n
            return text.decode("utf-8", "replace")

        if version >= (1, 15, 0):
            pos += 1
        elif version >= (1, 4, 0):
            read_int()
        elif version >= (1, 2, 0):
            pos += 1
        if version < (1, 10, 0):
            return None
        for _ in range(7):  # creation time
            read_int()
        read_str()          # database name
        return read_str()   # server version
    except (IndexError, ValueError):
        return None


def remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def failure(reason, message, **extra):
    out = {"reason": reason, "message": message}
    out.update(extra)
    return out


def reply(status, failures, request=None, headers=None):
    body = {"failures": failures}
    if request is not None:
        body["request"] = request
    return Response(status, json.dumps(body).encode(), JSON_CT,
                    list(headers or []))


def sim_json(status, obj):
    return Response(status, json.dumps(obj).encode(), JSON_CT)


# --- streamed bodies --------------------------------------------------------

class FileBody:
    """head bytes, then bytes [0, size) of a file (opened when sent)."""

    def __init__(self, path, size, head=b"", start=0, length=None):
        self.path, self.size, self.head = path, size, head
        self.start = start
        total = len(head) + size
        self.length = total - start if length is None else length

    def segments(self, count):
        pos, end = self.start, self.start + min(count, self.length)
        if pos < len(self.head):
            part = self.head[pos:min(end, len(self.head))]
            pos += len(part)
            yield part
        if pos >= end:
            return
        with open(self.path, "rb") as f:
            offset = pos - len(self.head)
            left = end - pos
            while left > 0:
                n = min(left, 1 << 30)
                yield (f, offset, n)
                offset += n
                left -= n


class SparseBody:
    """Generated bytes [start, start + length) of the sparse pattern."""

    def __init__(self, start, length):
        self.start, self.length = start, length

    def segments(self, count):
        block = memoryview(sparse_block())
        pos, end = self.start, self.start + min(count, self.length)
        while pos < end:
            at = pos % SPARSE_BLOCK_SIZE
            n = min(SPARSE_BLOCK_SIZE - at, end - pos)
            yield block[at:at + n]
            pos += n


def parse_range(header, total):
    """(start, length) of a single "bytes=" range; None to ignore the header;
    "bad" if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    try:
        if not sep:
            return None
        if first == "":
            n = int(last)
            if n <= 0:
                return "bad"
            start = max(0, total - n)
            return start, total - start
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end < start):
        return None  # syntactically invalid: ignored
    if start >= total:
        return "bad"
    if end is None:
        end = total - 1
    end = min(end, total - 1)
    return start, end - start + 1


# --- the requests -----------------------------------------------------------

class UpgradeRequest:
    def __init__(self, rid, key, params):
        self.id = rid
        self.key = key
        self.contract = params["contract"]
        self.email = params["email"]
        self.target = params["target"]
        self.aim = params["aim"]
        self.filename = params["filename"]
        self.timezone = params.get("timezone") or None
        self.state = "draft"
        self.created_at = utc_now()
        self.upload_path = None
        self.upload_size = 0
        self.upload_sha256 = None
        self.compressions = []
        self.postgresql = None
        self.estimated_time = None
        self.processed_at = None
        self.elapsed = 0          # simulated minutes
        self.database_uuid = None
        self.database_version = None
        self.customer_message = None
        self.polls = 0            # status replies shown in the current state
        self.sparse = sparse_size(self.filename)
        self.fail = "fail" in (self.filename + self.contract).lower()
        self.downloads = 0

    def url(self, base, tail):
        return f"{base}/database/eu1/{self.id}/{self.key}/{tail}"

    def to_json(self, base):
        return {
            "id": self.id,
            "key": self.key,
            "email": self.email,
            "target": self.target,
            "aim": self.aim,
            "filename": self.filename,
            "timezone": self.timezone,
            "state": self.state,
            "issue_stage": "new" if self.state == "draft" else self.state,
            "issue": self.id + ISSUE_OFFSET,
            "status_url": self.url(base, "status"),
            "notes_url": self.url(base, "upgraded/notes"),
            "original_sql_url": self.url(base, "original/sql"),
            "original_dump_url": self.url(base, "original/archive"),
            "upgraded_sql_url": self.url(base, "upgraded/sql"),
            "upgraded_dump_url": self.url(base, "upgraded/archive"),
            "modules_url": self.url(base, "modules/archive"),
            "filesize": (human_size(self.upload_size)
                         if self.upload_path else None),
            "database_uuid": self.database_uuid,
            "created_at": self.created_at,
            "estimated_time": self.estimated_time,
            "processed_at": self.processed_at,
            "elapsed": hhmm(self.elapsed),
            "filestore": False,
            "customer_message": self.customer_message,
            "database_version": self.database_version,
            "postgresql": self.postgresql,
            "compressions": list(self.compressions),
        }

    def sim_json(self, base):
        out = self.to_json(base)
        out["sim"] = {"upload_bytes": self.upload_size if self.upload_path else None,
                      "upload_sha256": self.upload_sha256,
                      "sparse_bytes": self.sparse, "polls": self.polls,
                      "fail": self.fail, "downloads": self.downloads}
        return out

    # -- state changes (caller holds the module lock) --

    def enter(self, state):
        self.state = state
        self.polls = 0
        if state in ("pending", "progress", "done", "failed"):
            if self.estimated_time is None:
                size_gib = (self.sparse or self.upload_size) / (1 << 30)
                self.estimated_time = hhmm(1 + int(size_gib * 10))
        if state in ("progress", "done", "failed"):
            if self.processed_at is None:
                self.processed_at = utc_now()
            if self.database_version is None:
                self.database_version = source_version(self.target)
            if self.database_uuid is None:
                seed = bytes.fromhex(self.upload_sha256) if self.upload_sha256 \
                    else hashlib.sha256(self.key.encode()).digest()
                self.database_uuid = str(uuid.UUID(bytes=seed[:16], version=4))
        if state == "failed" and self.customer_message is None:
            self.customer_message = (
                f"The upgrade of your database to {self.target} failed "
                "(simulated). Our team has been notified.")

    def finish(self):
        self.enter("failed" if self.fail else "done")

    def poll(self, polls):
        """One status call: advance as far as the poll counts allow."""
        while self.state in ("pending", "progress") and \
                self.polls >= polls[self.state]:
            if self.state == "pending":
                self.enter("progress")
            else:
                self.finish()
        if self.state == "progress":
            self.elapsed += 1
        self.polls += 1


def source_version(target):
    i = VALID_TARGETS.index(target) if target in VALID_TARGETS else 0
    return VALID_TARGETS[i - 1] if i > 0 else "5.0"


def new_key():
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()


# --- the module -------------------------------------------------------------

class OdooModule:
    prefixes = ["/database/"]

    def __init__(self, options):
        wanted = getattr(options, "odoo_dir", None)
        if wanted:
            os.makedirs(wanted, exist_ok=True)
            self.dir = tempfile.mkdtemp(prefix="dbsync-sim-odoo-", dir=wanted)
        else:
            self.dir = tempfile.mkdtemp(prefix="dbsync-sim-odoo-")
        self._lock = threading.Lock()
        self._requests = {}
        self._next_id = FIRST_ID
        self._polls = {"pending": DEFAULT_POLLS, "progress": DEFAULT_POLLS}
        self.controls = {
            "odoo/requests": (("GET",), self.control_requests),
            "odoo/config": (("GET", "POST", "PUT"), self.control_config),
            "odoo/state": (("POST", "PUT"), self.control_state),
            "odoo/fail": (("POST", "PUT"), self.control_fail),
            "odoo/sparse": (("POST", "PUT"), self.control_sparse),
        }

    def reset(self):
        with self._lock:
            self._requests.clear()
            self._next_id = FIRST_ID
            self._polls = {"pending": DEFAULT_POLLS, "progress": DEFAULT_POLLS}
            for name in os.listdir(self.dir):
                remove(os.path.join(self.dir, name))

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def streams_body(self, method, path):
        return path == "/database/v1/upload"

    # -- entry --

    def handle(self, req):
        fault = req.take_path_fault()
        if fault is not None:
            if fault.mode == "status":
                return reply(fault.status, [failure(
                    "SIM:FAULT", f"Simulated error {fault.status}")])
            if fault.mode == "malformed":
                return Response(200, MALFORMED_BODY, JSON_CT)
            if fault.mode == "reset":
                return Response(0, transport="reset")
            if fault.mode == "slow":
                req.sleep(fault.seconds)
        try:
            resp = self._route(req)
        except BodyError as exc:
            resp = reply(400, [failure("BODY:INVALID", str(exc))])
        except Exception as exc:  # noqa: BLE001 - report as the API would
            traceback.print_exc(file=sys.stderr)
            resp = reply(500, [failure("SERVER:ERROR", f"Internal error: {exc}")])
        if fault is not None and fault.mode in ("truncated", "truncated-json"):
            resp.transport = fault.mode
        return resp

    def _route(self, req):
        parts = req.path.split("/")  # "", "database", ...
        if len(parts) == 4 and parts[2] == "v1":
            method = METHODS.get(parts[3])
            if method is not None:
                allowed = ("POST", "PUT") if parts[3] == "upload" else ("GET", "POST")
                if req.method not in allowed:
                    return reply(405, [failure(
                        "METHOD:NOT_ALLOWED", f"Use {' or '.join(allowed)}",
                        value=req.method, expected=list(allowed))],
                        headers=[("Allow", ", ".join(allowed))])
                return method(self, req, self._params(req))
        if len(parts) >= 6 and parts[2] == "eu1":
            return self._download(req, parts[3], unquote(parts[4]),
                                  "/".join(parts[5:]))
        return reply(404, [failure("PATH:NOT_FOUND",
                                   f"Unknown path {unquote(req.path)}")])

    @staticmethod
    def _params(req):
        """Query string first, then form fields of the body."""
        form = {}
        ctype = req.headers.get("Content-Type", "")
        kind = ctype.split(";")[0].strip().lower()
        if req.body and kind == "application/x-www-form-urlencoded":
            form = {k: v[0] for k, v in parse_qs(
                req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        elif req.body and kind == "multipart/form-data":
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + req.body)
            if message.is_multipart():
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name and name not in form:
                        data = part.get_payload(decode=True) or b""
                        form[name] = data.decode("utf-8", "replace")
        params = dict(form)
        for name, values in req.params.items():
            params[name] = values[0]
        return params

    def _find(self, params):
        """(UpgradeRequest, None) or (None, error reply)."""
        missing = [name for name in ("key", "request") if not params.get(name)]
        if missing:
            return None, reply(200, [failure(
                "PARAM:MISSING", f'Missing required parameter "{name}"',
                param=name) for name in missing])
        text = params["request"]
        with self._lock:
            found = self._requests.get(int(text)) if text.isdigit() else None
        if found is None:
            return None, reply(404, [failure(
                "REQUEST:NOT_FOUND", f"Can not find request {text}", code=text)])
        if not secrets.compare_digest(found.key.encode(), params["key"].encode()):
            return None, reply(403, [failure(
                "KEY:INVALID", f"Invalid key for request {text}")])
        return found, None

    @staticmethod
    def _state_failure(r, expected, what):
        return failure("STATE:INVALID",
                       f'Request {r.id} is in state "{r.state}"; {what} needs '
                       + " or ".join(f'"{s}"' for s in expected),
                       value=r.state, expected=list(expected))

    # -- /database/v1/* --

    def create(self, req, params):
        failures = []
        for name in ("contract", "email", "target", "aim", "filename"):
            if not params.get(name):
                failures.append(failure(
                    "PARAM:MISSING", f'Missing required parameter "{name}"',
                    param=name))
        target, aim = params.get("target"), params.get("aim")
        address, contract = params.get("email"), params.get("contract")
        if target and target not in VALID_TARGETS:
            failures.append(failure("TARGET:INVALID", f'Invalid value "{target}"',
                                    value=target, expected=list(VALID_TARGETS)))
        if aim and aim not in VALID_AIMS:
            failures.append(failure("AIM:INVALID", f'Invalid value "{aim}"',
                                    value=aim, expected=list(VALID_AIMS)))
        if address and not EMAIL_RE.fullmatch(address):
            failures.append(failure("EMAIL:INVALID",
                                    f'Invalid email address "{address}"',
                                    value=address))
        if contract and not known_contract(contract):
            failures.append(failure("CONTRACT:NOT_FOUND",
                                    f"Can not find contract {contract}",
                                    code=contract))
        if failures:
            return reply(200, failures)
        with self._lock:
            r = UpgradeRequest(self._next_id, new_key(), params)
            self._next_id += 1
            self._requests[r.id] = r
            return reply(200, [], r.to_json(req.base_url))

    def upload(self, req, params):
        r, error = self._find(params)
        if error:
            return error
        kind = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
            return reply(200, [failure(
                "UPLOAD:CONTENT_TYPE",
                "The dump must be the raw request body, sent as "
                "application/octet-stream", value=kind,
                expected=["application/octet-stream"])],
                r.to_json(req.base_url))
        with self._lock:
            if r.state != "draft":
                return reply(200, [self._state_failure(r, ["draft"], "upload")],
                             r.to_json(req.base_url))
        path = os.path.join(self.dir, f"{r.id}-{secrets.token_hex(8)}.dump")
        try:
            size, sha256, head = self._receive(req.stream, path)
        except BaseException:
            remove(path)
            raise
        with self._lock:
            failures = []
            if self._requests.get(r.id) is not r:  # reset meanwhile
                failures.append(failure("REQUEST:NOT_FOUND",
                                        f"Can not find request {r.id}",
                                        code=str(r.id)))
            elif r.state != "draft":
                failures.append(self._state_failure(r, ["draft"], "upload"))
            elif size == 0:
                failures.append(failure("UPLOAD:EMPTY",
                                        "The uploaded database dump is empty"))
            if failures:
                remove(path)  # (a reset may have removed it already)
                status = 404 if failures[0]["reason"] == "REQUEST:NOT_FOUND" else 200
                return reply(status, failures,
                             None if status == 404 else r.to_json(req.base_url))
            old, r.upload_path = r.upload_path, path
            r.upload_size, r.upload_sha256 = size, sha256
            r.compressions, r.postgresql = guess_dump(head)
            body = r.to_json(req.base_url)
        if old:
            remove(old)
        return reply(200, [], body)

    @staticmethod
    def _receive(stream, path):
        """Copy the body to path in CHUNK pieces: (size, sha256 hex, head)."""
        digest = hashlib.sha256()
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        head = b""
        size = 0
        try:
            f = open(path, "wb")
        except OSError as exc:
            raise RuntimeError(f"could not store the upload: {exc}") from None
        with f:
            while True:
                n = stream.readinto(buffer)
                if not n:
                    break
                digest.update(view[:n])
                f.write(view[:n])
                if len(head) < 65536:
                    head += bytes(view[:min(n, 65536 - len(head))])
                size += n
        return size, digest.hexdigest(), head

    def process(self, req, params):
        r, error = self._find(params)
        if error:
            return error
        with self._lock:
            if r.state != "draft":
                return reply(200, [self._state_failure(r, ["draft"], "process")],
                             r.to_json(req.base_url))
            if not r.upload_path:
                return reply(200, [failure(
                    "UPLOAD:MISSING",
                    f"No database dump uploaded for request {r.id}; "
                    "upload one before asking to process it")],
                    r.to_json(req.base_url))
            r.enter("pending")
            return reply(200, [], r.to_json(req.base_url))

    def status(self, req, params):
        r, error = self._find(params)
        if error:
            return error
        with self._lock:
            r.poll(self._polls)
            return reply(200, [], r.to_json(req.base_url))

    def request_sftp_access(self, req, params):
        r, error = self._find(params)
        if error:
            return error
        keys = params.get("ssh_keys", "")
        with self._lock:
            if r.state not in ("draft", "done"):
                return reply(200, [self._state_failure(
                    r, ["draft", "done"], "request_sftp_access")])
        if not keys.strip():
            return reply(200, [failure("PARAM:MISSING",
                                       'Missing required parameter "ssh_keys"',
                                       param="ssh_keys")])
        lines = [line.strip() for line in keys.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        bad = [line for line in lines if not SSH_KEY_RE.fullmatch(line)]
        if bad or not lines:
            value = bad[0][:80] if bad else ""
            return reply(200, [failure("SSH_KEYS:INVALID",
                                       "Not a list of ssh public keys",
                                       value=value)])
        host = req.base_url.split("://", 1)[-1].rsplit(":", 1)[0]
        user = f"user_{r.id}"
        shared = ("upgraded_" if r.state == "done" else "") + r.filename
        return reply(200, [], {
            "hostname": host, "sftp_port": SFTP_PORT, "sftp_user": user,
            "shared_file": shared, "request_id": r.id,
            "sample_command": f"sftp -P {SFTP_PORT} {user}@{host}"})

    # -- /database/eu1/{id}/{key}/... --

    def _download(self, req, rid_text, key, tail):
        if req.method != "GET":
            return reply(405, [failure("METHOD:NOT_ALLOWED", "Use GET",
                                       value=req.method, expected=["GET"])],
                         headers=[("Allow", "GET")])
        if tail not in DOWNLOADS:
            return reply(404, [failure("PATH:NOT_FOUND",
                                       f"Unknown path {unquote(req.path)}")])
        r, error = self._find({"request": rid_text, "key": key})
        if error:
            return error
        with self._lock:
            state = r.state
            if tail != "status":
                if state != "done":
                    return reply(404, [failure(
                        "DUMP:NOT_READY",
                        f'Request {r.id} is in state "{state}"; downloads '
                        'need "done"', value=state, expected=["done"])])
                r.downloads += 1
            path, size, sha = r.upload_path, r.upload_size, r.upload_sha256
            sparse = r.sparse
        name = os.path.basename(r.filename) or "dump"
        if tail == "status":
            return Response(200, (
                f"<html><body><h1>Upgrade request {r.id}</h1>"
                f"<p>State: {state}</p><p>Target: {r.target}</p>"
                "</body></html>").encode(), "text/html; charset=utf-8")
        if tail == "upgraded/notes":
            return Response(200, (
                f"<html><body><h1>Upgrade notes for request {r.id}</h1>"
                "<p>Simulated upgrade: nothing to report.</p></body></html>"
                ).encode(), "text/html; charset=utf-8")
        if tail.endswith("/sql"):
            which = tail.split("/")[0]
            return Response(200, (
                f"-- dbsync-sim: the {which} SQL stream of request {r.id} is "
                "not simulated\n").encode(), "text/plain; charset=utf-8")
        if tail == "modules/archive":
            return Response(200, EMPTY_ZIP, "application/zip", [(
                "Content-Disposition", 'attachment; filename="modules.zip"')])
        if tail == "upgraded/archive":
            if sparse:
                make, total = (lambda s, n: SparseBody(s, n)), sparse
            else:
                head = upgraded_header(r.id, r.target, size, sha)
                make, total = (lambda s, n: FileBody(path, size, head, s, n)), \
                    len(head) + size
            name = "upgraded_" + name
        else:  # original/archive
            make, total = (lambda s, n: FileBody(path, size, b"", s, n)), size
        if not (sparse and tail == "upgraded/archive") and \
                (path is None or not os.path.exists(path)):
            return reply(404, [failure("DUMP:NOT_READY", "The dump is gone")])
        headers = [("Accept-Ranges", "bytes"),
                   ("Content-Disposition", f'attachment; filename="{name}"')]
        wanted = parse_range(req.headers.get("Range"), total)
        if wanted == "bad":
            return reply(416, [failure("RANGE:INVALID", "Range not satisfiable",
                                       value=req.headers.get("Range"))],
                         headers=[("Content-Range", f"bytes */{total}")])
        if wanted is None:
            return Response(200, b"", "application/octet-stream", headers,
                            stream=make(0, total))
        start, length = wanted
        headers.append(("Content-Range",
                        f"bytes {start}-{start + length - 1}/{total}"))
        return Response(206, b"", "application/octet-stream", headers,
                        stream=make(start, length))

    # -- /_sim/odoo/* controls --

    def _control_request(self, req):
        text = req.param("request", "")
        with self._lock:
            r = self._requests.get(int(text)) if text.isdigit() else None
        if r is None:
            return None, sim_json(404, {"error": f"no request {text!r}"})
        return r, None

    def control_requests(self, req):
        with self._lock:
            rows = sorted(self._requests.values(), key=lambda r: r.id)
            if req.param("request") is not None:
                rows = [r for r in rows if str(r.id) == req.param("request")]
            return sim_json(200, {"requests": [r.sim_json(req.base_url)
                                               for r in rows]})

    def control_config(self, req):
        changes = {}
        for name, states in (("polls", ("pending", "progress")),
                             ("polls_pending", ("pending",)),
                             ("polls_progress", ("progress",))):
            text = req.param(name)
            if text is None:
                continue
            if not text.isdigit():
                return sim_json(400, {"error": f"{name} must be an integer >= 0"})
            for state in states:
                changes[state] = int(text)
        with self._lock:
            self._polls.update(changes)
            return sim_json(200, {"polls": dict(self._polls)})

    def control_state(self, req):
        r, error = self._control_request(req)
        if error:
            return error
        state = req.param("state")
        if state not in STATES:
            return sim_json(400, {"error": f"state must be one of {', '.join(STATES)}"})
        with self._lock:
            if state in ("pending", "progress", "done") and not r.upload_path:
                return sim_json(409, {"error": f"request {r.id} has no upload"})
            if req.param("message") is not None:
                r.customer_message = req.param("message")
            r.enter(state)
            return sim_json(200, {"request": r.sim_json(req.base_url)})

    def control_fail(self, req):
        r, error = self._control_request(req)
        if error:
            return error
        with self._lock:
            r.fail = True
            if req.param("message") is not None:
                r.customer_message = req.param("message")
            return sim_json(200, {"request": r.sim_json(req.base_url)})

    def control_sparse(self, req):
        r, error = self._control_request(req)
        if error:
            return error
        try:
            size = parse_size(req.param("size"))
        except ValueError as exc:
            return sim_json(400, {"error": str(exc)})
        with self._lock:
            r.sparse = size
            return sim_json(200, {"request": r.sim_json(req.base_url),
                                  "sparse_bytes": size})


METHODS = {
    "create": OdooModule.create,
    "upload": OdooModule.upload,
    "process": OdooModule.process,
    "status": OdooModule.status,
    "request_sftp_access": OdooModule.request_sftp_access,
}
DOWNLOADS = ("status", "upgraded/notes", "original/sql", "upgraded/sql",
             "original/archive", "upgraded/archive", "modules/archive")
