"""ABRA Flexi (FlexiBee) simulator: the Changes API and read-only records.

Everything lives under /c/{company}/ and needs HTTP Basic auth.  The company
name selects the data and the behaviour:

  demo          the 43 real change payloads of the fixture, merged, ordered by
                @in-version (one copy per version), fields exactly as given.
  gen<N>        N generated changes (1 <= N <= 10,000,000), computed in closed
                form from the change index i, so any page costs O(limit) and
                nothing is built up front (see GeneratedLog).
  status-<code> every endpoint answers <code> (400..599) with a JSON error.
  slow[-<s>]    sleep s seconds (default 60), then answer like demo.
  malformed     200 with a body that is not JSON.
  truncated     a demo answer whose Content-Length promises more than is sent.
  truncated-json  the first half of a demo answer, correct Content-Length.
  reset         the connection is closed with RST, no answer at all.
  wrongshape    valid JSON of the wrong shape.
  badvalues     the demo changes page with three bad values (other endpoints
                answer like demo).
  huge          changes.json answers one ~20 MB page (other endpoints: demo).
  redirect-loop 302 to the same URL, forever.
  nolicense     403 for every endpoint.
  locked        like demo, but enable.xml fails with the "drady" lock error.
  disabled      like demo, but the changes API starts disabled.
  gzip          like demo, but every 200 body is gzip-compressed
                (Content-Encoding: gzip) when Accept-Encoding lists gzip.

Endpoints (JSON only; every number is a JSON string, as in Flexi):
  GET  changes.json?start=&limit=&evidence=...   the change log
  GET  changes/status.xml;  PUT|POST changes/enable.xml, changes/disable.xml
  GET  {evidence}.json?start=&limit=&add-row-count=&add-global-version=
  GET  {evidence}/{id}.json                       one record, 404 if absent
  GET  {evidence}/code:{kod}.json, ext:{..}.json  303 to the numeric URL
  GET  {evidence}/(id in (1,2)).json              filter: id|kod, = or in
  POST {evidence}/get.json {"winstrom":{"id":[1,"2","code:X"]}}

Records.  Every (evidence, id) in a company's log is a record; it exists
unless its last change is a delete.  Fields:
  id          the numeric id
  lastUpdate  timestamp of its last change as ISO 8601, ms, fixed +01:00
  kod         demo: the last "code:" external id seen (else "ID<id>");
              gen: "X<id>"
  nazev       "<evidence> <id>"
  popis       "Simulated record, last change in version <v>"
  faktura-vydana also: sumCelkem ("1234.50", derived from id),
              firma "code:FIRMA<k>", firma@ref "/c/<company>/adresar/<k>.json"
              with k = id % 50 + 1
  *-polozka also: a parent field (doklFak, doklBan, smlouva, doklObch, else
              dokl) = parent id, and <field>@ref "/c/<company>/<parent>/<id>.json".
              demo: parent = latest change of the parent evidence at or before
              the item's first change; gen: parent id = item id.
"""

import base64
import binascii
import bisect
import hmac
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Optional
from urllib.parse import quote, unquote

from simcore import Fault, Response

JSON_CT = "application/json; charset=utf-8"
XML_CT = "application/xml"
XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<winstrom version="1.0">\n'
LOCKED_XML = (XML_HEAD + "  <success>false</success>\n"
              '  <message>ERROR: could not obtain lock on relation "drady"\n'
              '  Kde: SQL statement "LOCK TABLE drady IN ACCESS EXCLUSIVE MODE '
              'NOWAIT"</message>\n</winstrom>')
MALFORMED_BODY = b'{"winstrom": {"changes": [ {"@evidence": adresar,'

MAX_LIMIT = 1000
DEFAULT_CHANGES_LIMIT = 100
DEFAULT_LIST_LIMIT = 20
HUGE_CHANGES = 135_000  # about 20 MB of changes.json

GEN_EVIDENCES = ("faktura-vydana", "faktura-vydana-polozka", "adresar",
                 "cenik", "objednavka-prijata")
GEN_MAX = 10_000_000
GEN_FIRST_VERSION = 1000
GEN_BLOCK = 3          # consecutive rounds that touch the same record id
GEN_ID_SPACE = 997     # record ids per evidence: 1..997
GEN_T0 = datetime(2024, 1, 1, 8, 0, 0)
GEN_STEP_US = 2_537_193

PARENT_FIELDS = {"faktura-vydana-polozka": "doklFak", "banka-polozka": "doklBan",
                 "smlouva-polozka": "smlouva",
                 "objednavka-prijata-polozka": "doklObch"}

# Companies whose every request gets one of the generic faults.
FAULT_COMPANIES = ("malformed", "truncated", "truncated-json", "reset")
# Companies with their own behaviour on top of the demo data.
SPECIAL_COMPANIES = ("wrongshape", "badvalues", "huge", "redirect-loop",
                     "nolicense", "locked", "disabled", "gzip")


@dataclass(frozen=True)
class RecordInfo:
    id: int
    kod: str
    timestamp: str        # of the last change, Flexi changes format
    version: int          # of the last change
    parent: Optional[int]  # parent document id for *-polozka


# --- change logs ----------------------------------------------------------
# Both logs offer: evidences, global_version, version(i), change(i),
# first_index(start), indices(i, evidences), record(ev, id),
# record_ids(ev), resolve(ev, "code:..."|"ext:...").

class FixtureLog:
    """The real payloads, merged into one version-ordered log."""

    def __init__(self, payloads):
        by_version = {}
        global_version = 0
        for payload in payloads:
            body = payload["winstrom"]
            global_version = max(global_version, int(body["@globalVersion"]))
            for change in body["changes"]:
                # A version seen twice is the same change sent twice (webhook
                # retries); keep the first copy.
                by_version.setdefault(int(change["@in-version"]), change)
        self.versions = sorted(by_version)
        self.changes = [by_version[v] for v in self.versions]
        self.global_version = max([global_version] + self.versions)
        self.evidences = frozenset(c["@evidence"] for c in self.changes)
        self._index_records()

    def _index_records(self):
        self._records = {}   # (evidence, id) -> RecordInfo, None if deleted
        self._idents = {}    # (evidence, "code:.."/"ext:..") -> id
        last_seen = {}       # evidence -> id of its latest change so far
        for version, change in zip(self.versions, self.changes):
            ev, rid = change["@evidence"], int(change["id"])
            key = (ev, rid)
            old = self._records.get(key)
            codes = [x for x in change["external-ids"] if x.startswith("code:")]
            kod = codes[-1][5:] if codes else (old.kod if old else f"ID{rid}")
            parent = old.parent if old else parent_from(ev, last_seen)
            self._records[key] = (None if change["@operation"] == "delete" else
                                  RecordInfo(rid, kod, change["@timestamp"],
                                             version, parent))
            self._idents[(ev, "code:" + kod)] = rid
            for ident in change["external-ids"]:
                self._idents[(ev, ident)] = rid
            last_seen[ev] = rid

    def version(self, i):
        return self.versions[i]

    def change(self, i):
        return dict(self.changes[i])  # a copy: callers may damage it

    def first_index(self, start):
        return bisect.bisect_left(self.versions, start)

    def indices(self, i, evidences):
        for j in range(i, len(self.changes)):
            if not evidences or self.changes[j]["@evidence"] in evidences:
                yield j

    def record(self, evidence, rid):
        return self._records.get((evidence, rid))

    def record_ids(self, evidence):
        return sorted(rid for (ev, rid), info in self._records.items()
                      if ev == evidence and info is not None)

    def resolve(self, evidence, ident):
        return self._idents.get((evidence, ident))


def parent_from(evidence, last_seen):
    if not evidence.endswith("-polozka"):
        return None
    return last_seen.get(evidence[:-len("-polozka")])


class GeneratedLog:
    """N synthetic changes, each computed from its index i alone.

    version(i)  = 1000 + i + i // 7          (a gap after every 7 versions)
    evidence    = GEN_EVIDENCES[i % 5];  round k = i // 5
    id          = (k // 3) % 997 + 1         (each id is touched in 3
                                              consecutive rounds, then again
                                              997 blocks later)
    occurrence m of that record = (k // (3 * 997)) * 3 + k % 3
    operation: a record lives for L = 3 + (id - 1) % 9 occurrences:
               m % L == 0 create, m % L == L - 1 delete, else update; so the
               first appearance is a create, and a delete is followed by a
               create.
    timestamp: 2024-01-01 08:00:00 + i * 2.537193 s (+ a few us), printed
               with i % 6 + 1 fraction digits; every 13th change (i % 13 ==
               12) is 0.25-0.34 s earlier than the previous one.
    external-ids: [] when i % 10 == 3, else ["code:X<id>"], plus
               "ext:sim:<id>" when id % 4 == 0.
    globalVersion = version(N - 1) + 3.
    """

    def __init__(self, n):
        self.n = n
        self.global_version = self.version(n - 1) + 3
        self.evidences = frozenset(GEN_EVIDENCES)
        self._ids = {}

    @staticmethod
    def version(i):
        return GEN_FIRST_VERSION + i + i // 7

    def first_index(self, start):
        return bisect.bisect_left(range(self.n), start, key=self.version)

    def indices(self, i, evidences):
        if not evidences:
            yield from range(i, self.n)
            return
        wanted = {e for e, ev in enumerate(GEN_EVIDENCES) if ev in evidences}
        if wanted:  # evidences cycle, so a match is at most 5 steps away
            yield from (j for j in range(i, self.n) if j % 5 in wanted)

    @staticmethod
    def slot(i):
        """(evidence index, record id, occurrence number) of change i."""
        k = i // 5
        rid = (k // GEN_BLOCK) % GEN_ID_SPACE + 1
        m = (k // (GEN_BLOCK * GEN_ID_SPACE)) * GEN_BLOCK + k % GEN_BLOCK
        return i % 5, rid, m

    @staticmethod
    def operation(rid, m):
        life = 3 + (rid - 1) % 9
        pos = m % life
        return "create" if pos == 0 else "delete" if pos == life - 1 else "update"

    def change(self, i):
        e, rid, m = self.slot(i)
        ext = [] if i % 10 == 3 else gen_identifiers(rid)
        return {"@evidence": GEN_EVIDENCES[e],
                "@in-version": str(self.version(i)),
                "@operation": self.operation(rid, m),
                "@timestamp": gen_timestamp(i),
                "id": str(rid),
                "external-ids": ext}

    def last_index(self, e, rid):
        """Index of the last change of record rid in evidence e, or None."""
        rounds = (self.n - e + 4) // 5  # number of k with 5k + e < n
        last_block = (rounds - 1) // GEN_BLOCK
        first_block = rid - 1
        if rounds <= 0 or first_block > last_block:
            return None
        # the last block that belongs to rid (blocks repeat every 997)
        skip = (last_block - first_block) // GEN_ID_SPACE
        block = first_block + skip * GEN_ID_SPACE
        k = min(block * GEN_BLOCK + GEN_BLOCK - 1, rounds - 1)
        return 5 * k + e

    def record(self, evidence, rid):
        if evidence not in self.evidences or not 1 <= rid <= GEN_ID_SPACE:
            return None
        i = self.last_index(GEN_EVIDENCES.index(evidence), rid)
        if i is None or self.operation(*self.slot(i)[1:]) == "delete":
            return None
        parent = rid if evidence.endswith("-polozka") else None
        return RecordInfo(rid, f"X{rid}", gen_timestamp(i), self.version(i), parent)

    def record_ids(self, evidence):
        if evidence not in self._ids:  # benign race: same result either way
            self._ids[evidence] = [rid for rid in range(1, GEN_ID_SPACE + 1)
                                   if self.record(evidence, rid)]
        return self._ids[evidence]

    def resolve(self, evidence, ident):
        match = re.fullmatch(r"code:X([1-9][0-9]*)", ident)
        if match is None:
            match = re.fullmatch(r"ext:sim:([1-9][0-9]*)", ident)
            if match is None or int(match.group(1)) % 4:
                return None
        return int(match.group(1))


def gen_identifiers(rid):
    return [f"code:X{rid}"] + ([f"ext:sim:{rid}"] if rid % 4 == 0 else [])


def gen_micros(i):
    return i * GEN_STEP_US + (i * 7919) % 1000


def gen_timestamp(i):
    if i % 13 == 12:  # clock skew, as the real data has
        micros = gen_micros(i - 1) - 250_000 - (i % 89) * 1000
    else:
        micros = gen_micros(i)
    t = GEN_T0 + timedelta(microseconds=micros)
    text = t.isoformat(" ", "microseconds")  # YYYY-MM-DD HH:MM:SS.ffffff
    return text[:20 + i % 6 + 1]


def changes_page(log, start, limit, evidences):
    """(changes, next) for one changes.json page."""
    first = 0 if start is None else log.first_index(start)
    out = []
    last = None
    for i in log.indices(first, evidences):
        if len(out) == limit:  # cut by the limit and more changes match
            return out, str(log.version(last) + 1)
        out.append(log.change(i))
        last = i
    return out, "none"


# --- companies -------------------------------------------------------------

@dataclass
class Company:
    name: str
    log: object
    kind: Optional[str] = None     # one of SPECIAL_COMPANIES
    fault: Optional[Fault] = None  # applied to every request
    enabled_at_start: bool = True


@lru_cache(maxsize=256)  # keeps gen logs' lazy record indexes warm
def make_company(name, demo_log):
    """The Company for a path segment, or None if there is no such company."""
    if name == "demo":
        return Company(name, demo_log)
    match = re.fullmatch(r"gen([1-9][0-9]*)", name)
    if match and int(match.group(1)) <= GEN_MAX:
        return Company(name, GeneratedLog(int(match.group(1))))
    match = re.fullmatch(r"status-([0-9]{3})", name)
    if match and 400 <= int(match.group(1)) <= 599:
        return Company(name, demo_log, fault=Fault("status", int(match.group(1))))
    match = re.fullmatch(r"slow(?:-([0-9]+(?:\.[0-9]+)?))?", name)
    if match:
        seconds = float(match.group(1) or 60)
        return Company(name, demo_log, fault=Fault("slow", seconds=seconds))
    if name in FAULT_COMPANIES:
        return Company(name, demo_log, fault=Fault(name))
    if name in SPECIAL_COMPANIES:
        return Company(name, demo_log, kind=name,
                       enabled_at_start=name != "disabled")
    return None




# --- response helpers ------------------------------------------------------

def dumps(obj):
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # Flexi escapes "/" as "\/" (see the changes API doc); "/" only ever
    # occurs inside JSON strings, so a plain replace is safe.
    return text.replace("/", "\\/").encode("utf-8")


def json_response(status, obj, headers=None):
    return Response(status, dumps(obj), JSON_CT, list(headers or []))


def error(status, message, headers=None):
    return json_response(status, {"winstrom": {
        "@version": "1.0", "success": "false", "message": message}}, headers)


def xml_success(ok):
    flag = "true" if ok else "false"
    text = XML_HEAD + f"  <success>{flag}</success>\n</winstrom>"
    return Response(200, text.encode("utf-8"), XML_CT)


def not_found(ident, evidence):
    return error(404, f"Záznam '{ident}' v evidenci '{evidence}' nebyl nalezen.")


def method_not_allowed(allowed):
    return error(405, f"Metoda není povolena, použijte {' nebo '.join(allowed)}.",
                 [("Allow", ", ".join(allowed))])


def strict_int(text):
    """int(text) for plain decimal integers only (no "+", "_" or spaces)."""
    if text is None or not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(text)
    return int(text)


def is_true(req, name):
    return (req.param(name) or "").lower() == "true"


def last_update(timestamp):
    """'2021-03-12 23:59:55.586215' -> '2021-03-12T23:59:55.586+01:00'."""
    date_time, _, fraction = timestamp.partition(".")
    return date_time.replace(" ", "T") + "." + (fraction + "000")[:3] + "+01:00"


def record_json(company, evidence, info):
    rec = {"id": str(info.id), "lastUpdate": last_update(info.timestamp),
           "kod": info.kod, "nazev": f"{evidence} {info.id}",
           "popis": f"Simulated record, last change in version {info.version}"}
    if evidence == "faktura-vydana":
        cents = 10_000 + (info.id * 7919) % 999_991
        firm = info.id % 50 + 1
        rec["sumCelkem"] = f"{cents // 100}.{cents % 100:02d}"
        rec["firma"] = f"code:FIRMA{firm}"
        rec["firma@ref"] = f"/c/{company}/adresar/{firm}.json"
    if evidence.endswith("-polozka") and info.parent is not None:
        field = PARENT_FIELDS.get(evidence, "dokl")
        rec[field] = str(info.parent)
        rec[field + "@ref"] = (f"/c/{company}/{evidence[:-len('-polozka')]}/"
                               f"{info.parent}.json")
    return rec


# --- the module ----------------------------------------------------------------

class FlexiModule:
    prefixes = ["/c/"]

    def __init__(self, options):
        self._user = options.user.encode("utf-8")
        self._password = options.password.encode("utf-8")
        with open(options.fixture, encoding="utf-8") as f:
            self.demo_log = FixtureLog(json.load(f))
        self.known_evidences = self.demo_log.evidences | set(GEN_EVIDENCES)
        self._lock = threading.Lock()
        self._enabled = {}          # company name -> changes API on/off
        self._huge_lock = threading.Lock()
        self._huge_body = None

    def reset(self):
        with self._lock:
            self._enabled.clear()

    # -- entry --

    def handle(self, req):
        if not self._authorized(req.headers.get("Authorization")):
            return error(401, "Neplatné přihlašovací údaje.",
                         [("WWW-Authenticate", 'Basic realm="ABRA Flexi"')])
        parts = req.path.split("/")[2:]  # path is /c/<company>/<rest...>
        company = make_company(unquote(parts[0]), self.demo_log)
        if company is None:
            return error(404, f"Firma '{unquote(parts[0])}' neexistuje.")
        fault = req.take_fault(company.name) or company.fault
        resp = self._with_fault(fault, req, company, parts[1:])
        if company.kind == "gzip" and resp.status == 200:
            resp.compressible = True
        return resp

    def _authorized(self, header):
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = raw.partition(b":")
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(sep) and user_ok and password_ok

    def _with_fault(self, fault, req, company, rest):
        if fault is None:
            return self._special(req, company, rest)
        if fault.mode == "status":
            return error(fault.status, f"Simulated error {fault.status}")
        if fault.mode == "malformed":
            return Response(200, MALFORMED_BODY, "application/json")
        if fault.mode == "reset":
            return Response(0, transport="reset")
        if fault.mode == "slow":
            req.sleep(fault.seconds)
            return self._special(req, company, rest)
        resp = self._special(req, company, rest)  # truncated, truncated-json
        resp.transport = fault.mode
        return resp

    def _special(self, req, company, rest):
        if company.kind == "nolicense":
            return error(403, "Nemáte licenci pro REST API.")
        if company.kind == "redirect-loop":
            return Response(302, headers=[("Location", req.target)])
        if company.kind == "wrongshape":
            if rest == ["changes.json"]:
                return json_response(200, {"winstrom": {"@version": "1.0"}})
            return json_response(200, {"hello": "world"})
        return self._route(req, company, rest)

    # -- routing --

    def _route(self, req, company, rest):
        if rest == ["changes.json"]:
            if req.method != "GET":
                return method_not_allowed(["GET"])
            return self._changes(req, company)
        if len(rest) == 2 and rest[0] == "changes":
            return self._changes_control(req, company, rest[1])
        if len(rest) == 1 and rest[0].endswith(".json"):
            evidence = unquote(rest[0][:-len(".json")])
            return self._evidence_listing(req, company, evidence)
        if len(rest) >= 2:
            # Unquote after joining: a code may contain an (encoded) "/".
            ident = unquote("/".join(rest[1:]))
            if ident.endswith(".json"):
                return self._record_path(req, company, unquote(rest[0]),
                                         ident[:-len(".json")])
        return error(404, "Neznámá adresa (simulátor umí jen JSON).")

    def _record_path(self, req, company, evidence, ident):
        if evidence not in self.known_evidences:
            return error(404, f"Evidence '{evidence}' neexistuje.")
        if ident == "get":
            if req.method != "POST":
                return method_not_allowed(["POST"])
            return self._bulk_get(req, company, evidence)
        if req.method != "GET":
            return method_not_allowed(["GET"])
        if ident.startswith("("):
            return self._filter_listing(req, company, evidence, ident)
        if re.fullmatch(r"[0-9]+", ident):
            return self._detail(req, company, evidence, int(ident))
        if ident.startswith(("code:", "ext:")):
            return self._redirect(req, company, evidence, ident)
        return error(404, f"Záznam '{ident}' nebyl nalezen.")

    # -- changes API --

    def _changes_enabled(self, company):
        with self._lock:
            return self._enabled.get(company.name, company.enabled_at_start)

    def _set_changes_enabled(self, company, on):
        with self._lock:
            self._enabled[company.name] = on

    def _changes_control(self, req, company, action):
        if action == "status.xml":
            if req.method != "GET":
                return method_not_allowed(["GET"])
            return xml_success(self._changes_enabled(company))
        if action not in ("enable.xml", "disable.xml"):
            return error(404, "Neznámá adresa.")
        if req.method not in ("PUT", "POST"):
            return method_not_allowed(["PUT", "POST"])
        if action == "enable.xml" and company.kind == "locked":
            return Response(400, LOCKED_XML.encode("utf-8"), XML_CT)
        self._set_changes_enabled(company, action == "enable.xml")
        return xml_success(True)

    def _changes(self, req, company):
        if not self._changes_enabled(company):
            return error(400, "Sledování změn (changes API) není zapnuté.")
        try:
            start = req.param("start")
            start = None if start is None else strict_int(start)
            limit = strict_int(req.param("limit", str(DEFAULT_CHANGES_LIMIT)))
            if limit <= 0:
                raise ValueError(limit)
        except ValueError:
            return error(400, "Parametry start a limit musí být celá čísla, "
                              "limit > 0.")
        if company.kind == "huge":
            return Response(200, self._huge(), JSON_CT)
        evidences = set(req.params.get("evidence", []))
        changes, nxt = changes_page(company.log, start, min(limit, MAX_LIMIT),
                                    evidences)
        if company.kind == "badvalues":
            spoil(changes)
        return json_response(200, {"winstrom": {
            "@globalVersion": str(company.log.global_version),
            "changes": changes, "next": nxt}})

    def _huge(self):
        with self._huge_lock:  # built once, on first use (~0.5 s)
            if self._huge_body is None:
                log = GeneratedLog(HUGE_CHANGES)
                self._huge_body = dumps({"winstrom": {
                    "@globalVersion": str(log.global_version),
                    "changes": [log.change(i) for i in range(HUGE_CHANGES)],
                    "next": "none"}})
            return self._huge_body

    # -- records --

    def _evidence_listing(self, req, company, evidence):
        if req.method != "GET":
            return method_not_allowed(["GET"])
        if evidence not in self.known_evidences:
            return error(404, f"Evidence '{evidence}' neexistuje.")
        return self._listing(req, company, evidence,
                             company.log.record_ids(evidence))

    def _listing(self, req, company, evidence, ids, paged=True):
        total = len(ids)
        if paged:
            try:
                start = strict_int(req.param("start", "0"))
                limit = strict_int(req.param("limit", str(DEFAULT_LIST_LIMIT)))
                if start < 0 or limit < 0:
                    raise ValueError
            except ValueError:
                return error(400, "Parametry start a limit musí být "
                                  "celá čísla >= 0.")
            ids = ids[start:] if limit == 0 else ids[start:start + limit]
        body = {"@version": "1.0"}
        if is_true(req, "add-row-count"):
            body["@rowCount"] = str(total)
        if is_true(req, "add-global-version"):
            body["@globalVersion"] = str(company.log.global_version)
        body[evidence] = [record_json(company.name, evidence,
                                      company.log.record(evidence, rid))
                          for rid in ids]
        return json_response(200, {"winstrom": body})

    def _existing(self, company, evidence, ids):
        return sorted({rid for rid in ids
                       if rid is not None and company.log.record(evidence, rid)})

    def _detail(self, req, company, evidence, rid):
        if company.log.record(evidence, rid) is None:
            return not_found(rid, evidence)
        return self._listing(req, company, evidence, [rid], paged=False)

    def _redirect(self, req, company, evidence, ident):
        rid = company.log.resolve(evidence, ident)
        if rid is None or company.log.record(evidence, rid) is None:
            return not_found(ident, evidence)
        location = f"/c/{quote(company.name)}/{quote(evidence)}/{rid}.json"
        if req.query:
            location += "?" + req.query
        return Response(303, headers=[("Location", location)])

    def _filter_listing(self, req, company, evidence, text):
        try:
            ids = self._filter_ids(company, evidence, text)
        except ValueError:
            return error(400, f"Nepodporovaný filtr: {text}")
        return self._listing(req, company, evidence,
                             self._existing(company, evidence, ids))

    def _filter_ids(self, company, evidence, text):
        """Ids named by "(id in (1,2))", "(id = 1)", "(kod in ('A'))", ..."""
        match = re.fullmatch(r"\(\s*(id|kod)\s*(=|in)\s*(.+?)\s*\)", text, re.I)
        if not match:
            raise ValueError(text)
        column, op, values = match.groups()
        column, op = column.lower(), op.lower()
        if op == "in":
            if not (values.startswith("(") and values.endswith(")")):
                raise ValueError(text)
            values = values[1:-1].split(",")
        else:
            values = [values]
        values = [v.strip().strip("'\"") for v in values if v.strip()]
        if column == "id":
            return [strict_int(v) for v in values]
        return [company.log.resolve(evidence, "code:" + v) for v in values]

    def _bulk_get(self, req, company, evidence):
        try:
            wanted = json.loads(req.body or b"null")["winstrom"]["id"]
        except (ValueError, TypeError, KeyError):
            return error(400, 'Očekávám {"winstrom":{"id":[...]}}.')
        if not isinstance(wanted, list):
            wanted = [wanted]
        ids = [self._bulk_id(company, evidence, w) for w in wanted]
        return self._listing(req, company, evidence,
                             self._existing(company, evidence, ids), paged=False)

    @staticmethod
    def _bulk_id(company, evidence, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            if re.fullmatch(r"[0-9]+", value):
                return int(value)
            return company.log.resolve(evidence, value)
        return None


def spoil(changes):
    """badvalues: three wrong values in an otherwise valid page."""
    bad = (("@in-version", "12x"), ("@operation", "merge"),
           ("@timestamp", "yesterday"))
    for change, (field, value) in zip(changes, bad):
        change[field] = value
