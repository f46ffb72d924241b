"""ABRA Flexi (FlexiBee) simulator: the Changes API and read-only records.

Everything lives under /c/{company}/ and needs HTTP Basic auth.  The company
name selects the data and the behaviour:

  demo          the 43 real change payloads of the fixture, merged, ordered by
                @in-version (one copy per version), fields exactly as given.
  gen<N>        N generated changes (1 <= N <= 10,000,000), computed in closed
                form from the change index i, so any page costs O(limit) and
                nothing is built up front (see GeneratedLog).  Serialized
                changes.json pages are kept in a bounded LRU (PageCache);
                --precompute gen<N> builds all its 1000-change pages at start.
  live<N>       like gen<N> (0 <= N <= 10,000,000), but the log can grow:
                POST /_sim/append?company=live<N>&count=K appends K changes of
                the same generator (indices N, N+1, ...; records follow), and
                POST /_sim/grow?company=live<N>&per_listing=K makes every later
                record listing ({evidence}.json and filter listings; not
                details, get.json or evidence-list) append K changes before it
                answers (0 = off; a listing that an armed status, malformed
                or reset fault replaces does not grow).  /_sim/reset restores N.
                @globalVersion of a live log is the version its next change
                will get (version(N)), so a client that starts the changes at
                a listing's @globalVersion misses nothing appended later.
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
       records ordered by id; start = offset, limit default 20, 0 = all:
       {"winstrom":{"@version":"1.0"[,"@rowCount":".."][,"@globalVersion":".."],
                    "<evidence>":[{record}, ...]}}
  GET  {evidence}/{id}.json                       one record, 404 if absent
  GET  {evidence}/code:{kod}.json, ext:{..}.json  303 to the numeric URL
  GET  {evidence}/(id in (1,2)).json              filter: id|kod, = or in;
  GET  {evidence}/(id > 42).json?order=id@A     filter: id >, >=, <, <= (keyset paging);
       the existing records among them, ordered by id, paged like a listing
  POST {evidence}/get.json {"winstrom":{"id":[1,"2","code:X"]}}
  GET  evidence-list.json   the evidences the company's log uses, sorted:
       {"winstrom":{"@version":"1.0","evidences":[{"evidencePath":"adresar",
        "evidenceName":"Adresář"}, ...]}}
       Real Flexi has /c/{company}/evidence-list; this JSON shape (a plain
       array, only these two fields) is our assumption, not a documented one.

Records.  Every (evidence, id) in a company's log is a record; it exists
unless its last change is a delete.  Its content follows its last change
(so a stale copy differs from the current one after every change):
  id          the numeric id
  lastUpdate  timestamp of its last change as ISO 8601, ms, fixed +01:00
  kod         demo: the last "code:" external id seen (else "ID<id>");
              gen/live: "X<id>"
  nazev       "<evidence> <id>"
  popis       "Simulated record, last change in version <v>" (the version of
              its last change: differs after every change)
  faktura-vydana also: sumCelkem ("1234.50", derived from id),
              firma "code:FIRMA<k>", firma@ref "/c/<company>/adresar/<k>.json"
              with k = id % 50 + 1
  *-polozka also: a parent field (doklFak, doklBan, smlouva, doklObch, else
              dokl) = parent id, and <field>@ref "/c/<company>/<parent>/<id>.json".
              demo: parent = latest change of the parent evidence at or before
              the item's first change; gen: parent id = item id.

Control endpoints of this module (no auth; see FlexiModule.controls):
  POST /_sim/append?company=live<N>&count=K     (K >= 0)
       {"company":..,"appended":K,"changes":<length now>,"global_version":".."}
  POST /_sim/grow?company=live<N>&per_listing=K  (K >= 0)
       {"company":..,"per_listing":K}
  GET  /_sim/log?company=X[&start=V]
       {"global_version":"<str>","changes":[[version,evidence,operation,id],...]}
       every change from version V on (default all), version order, numbers
       as JSON numbers: the ground truth of the change log.
  GET  /_sim/records?company=X&evidence=E
       {"records":[{record exactly as the API serves it}, ...],
        "deleted":[ids whose last change is a delete]}, both ordered by id.
  GET  /_sim/cache   {"pinned": precomputed pages, "lru": cached pages,
                      "lru_bytes": their size}
These read the company's data without faults, growth or auth.

Armed faults (dbsync_sim.py /_sim/fault) apply to every /c/ endpoint of any
company (changes, listings, details, evidence-list, ...); mode "lowversion"
only to changes.json (other requests leave it armed): that page carries one change
(the middle one; a copy of the log's last change if the page is empty) whose
@in-version is the requested start - 1 (without start: its first change's
version - 1), a server bug a client must reject.
"""

import base64
import binascii
import bisect
import hmac
import json
import re
import threading
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import islice
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
PAGE_CACHE_BYTES = 64 << 20   # LRU of serialized changes pages (not precomputed)
RECORD_CACHE_SIZE = 200_000   # serialized records kept (cleared when full)

GEN_EVIDENCES = ("faktura-vydana", "faktura-vydana-polozka", "adresar",
                 "cenik", "objednavka-prijata")
GEN_EV_INDEX = {ev: e for e, ev in enumerate(GEN_EVIDENCES)}
GEN_MAX = 10_000_000
GEN_FIRST_VERSION = 1000
GEN_BLOCK = 3          # consecutive rounds that touch the same record id
GEN_ID_SPACE = 997     # record ids per evidence: 1..997
GEN_T0 = datetime(2024, 1, 1, 8, 0, 0)
GEN_STEP_US = 2_537_193

PARENT_FIELDS = {"faktura-vydana-polozka": "doklFak", "banka-polozka": "doklBan",
                 "smlouva-polozka": "smlouva",
                 "objednavka-prijata-polozka": "doklObch"}

# evidence-list.json names; an evidence not listed is named by its path.
EVIDENCE_NAMES = {
    "adresar": "Adresář", "atribut": "Atributy", "banka": "Banka",
    "banka-polozka": "Položky banky", "cenik": "Ceník",
    "dodavatel": "Dodavatelé", "faktura-vydana": "Faktury vydané",
    "faktura-vydana-polozka": "Položky faktury vydané",
    "objednavka-prijata": "Objednávky přijaté",
    "priloha": "Přílohy", "rocni-rada": "Roční řady",
    "skladova-karta": "Skladové karty", "smlouva": "Smlouvy",
    "smlouva-polozka": "Položky smlouvy", "strom-cenik": "Strom ceníku",
    "typ-atributu": "Typy atributů", "vazba": "Vazby"}

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
# first_index(start), indices(i, evidences), entries(i), record(ev, id),
# record_token(ev, id), records(ev), record_states(ev), record_ids(ev),
# resolve(ev, "code:..."|"ext:...").  A record token is a hashable value that
# (with the company name, evidence and id) fixes the record's content; None
# when the record does not exist.

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

    @property
    def n(self):
        return len(self.changes)

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

    def entries(self, i):
        """(version, evidence, operation, id) of changes i, i+1, ..."""
        for j in range(i, len(self.changes)):
            c = self.changes[j]
            yield self.versions[j], c["@evidence"], c["@operation"], int(c["id"])

    def record(self, evidence, rid):
        return self._records.get((evidence, rid))

    record_token = record  # the RecordInfo itself

    def records(self, evidence):
        """[(id, token)] of the existing records, ordered by id."""
        return sorted((rid, info) for (ev, rid), info in self._records.items()
                      if ev == evidence and info is not None)

    def record_states(self, evidence):
        """([(id, token)] existing, [id] deleted), both ordered by id."""
        deleted = sorted(rid for (ev, rid), info in self._records.items()
                         if ev == evidence and info is None)
        return self.records(evidence), deleted

    def record_ids(self, evidence):
        return [rid for rid, _ in self.records(evidence)]

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
    globalVersion = version(N - 1) + 3; live logs: version(N), the version
               the next change will get.

    Instances are immutable; a live log that grows is replaced by a longer
    one (LiveLog), so a request sees one consistent length.
    """

    def __init__(self, n, live=False):
        self.n = n
        self.live = live
        self.global_version = (self.version(n) if live
                               else self.version(n - 1) + 3)
        self.evidences = frozenset(GEN_EVIDENCES[:min(n, len(GEN_EVIDENCES))])
        self._records = {}  # evidence -> records(evidence)
        self._tokens = {}   # evidence -> _token_table(evidence)

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

    def entries(self, i):
        for j in range(i, self.n):
            e, rid, m = self.slot(j)
            yield self.version(j), GEN_EVIDENCES[e], self.operation(rid, m), rid

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

    def _last(self, evidence, rid):
        """(index of the record's last change or None, deleted by it?)"""
        e = GEN_EV_INDEX.get(evidence)
        if e is None or not 1 <= rid <= GEN_ID_SPACE:
            return None, False
        i = self.last_index(e, rid)
        if i is None:
            return None, False
        return i, self.operation(*self.slot(i)[1:]) == "delete"

    def record_token(self, evidence, rid):
        """The index of the record's last change; None if it does not exist."""
        table = self._tokens.get(evidence)
        if table is not None:
            return table[rid] if 0 <= rid <= GEN_ID_SPACE else None
        i, deleted = self._last(evidence, rid)
        return None if deleted else i

    def _token_table(self, evidence):
        """[token of id 0..997] (id 0: None), built once per log instance."""
        table = self._tokens.get(evidence)
        if table is None:  # benign race: same result either way
            table = [None] + [self.record_token(evidence, rid)
                              for rid in range(1, GEN_ID_SPACE + 1)]
            self._tokens[evidence] = table
        return table

    def record(self, evidence, rid):
        i = self.record_token(evidence, rid)
        if i is None:
            return None
        parent = rid if evidence.endswith("-polozka") else None
        return RecordInfo(rid, f"X{rid}", gen_timestamp(i), self.version(i), parent)

    def records(self, evidence):
        if evidence not in self._records:  # benign race: same result either way
            table = self._token_table(evidence)
            self._records[evidence] = [(rid, table[rid])
                                       for rid in range(1, GEN_ID_SPACE + 1)
                                       if table[rid] is not None]
        return self._records[evidence]

    def record_states(self, evidence):
        deleted = [rid for rid in range(1, GEN_ID_SPACE + 1)
                   if self._last(evidence, rid)[1]]
        return self.records(evidence), deleted

    def record_ids(self, evidence):
        return [rid for rid, _ in self.records(evidence)]

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


# Dates of the days a generated log covers (GEN_MAX changes: ~294 days), so
# timestamps need integer arithmetic only.
_GEN_DAYS = (GEN_MAX * GEN_STEP_US) // 86_400_000_000 + 2
_GEN_DATES = tuple((date(2024, 1, 1) + timedelta(days=d)).isoformat()
                   for d in range(_GEN_DAYS))
_GEN_T0_US = 8 * 3_600_000_000   # GEN_T0 is 08:00:00 of the first date


def gen_timestamp(i):
    """GEN_T0 + gen_micros(i) as "YYYY-MM-DD HH:MM:SS.f" (i % 6 + 1 digits)."""
    if i % 13 == 12:  # clock skew, as the real data has
        micros = gen_micros(i - 1) - 250_000 - (i % 89) * 1000
    else:
        micros = i * GEN_STEP_US + (i * 7919) % 1000
    day, micros = divmod(micros + _GEN_T0_US, 86_400_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{_GEN_DATES[day]} {hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}"
    return text[:21 + i % 6]


# Pieces of a generated change's JSON text, exactly as dumps() writes it.
_GEN_HEADS = tuple('{"@evidence":"%s","@in-version":"' % ev for ev in GEN_EVIDENCES)
_GEN_LIFE = (0,) + tuple(3 + (rid - 1) % 9 for rid in range(1, GEN_ID_SPACE + 1))
_GEN_TAILS = (None,) + tuple(
    '","id":"%d","external-ids":%s}' % (
        rid, json.dumps(gen_identifiers(rid), separators=(",", ":")))
    for rid in range(1, GEN_ID_SPACE + 1))
_GEN_TAILS_NO_EXT = (None,) + tuple('","id":"%d","external-ids":[]}' % rid
                                    for rid in range(1, GEN_ID_SPACE + 1))


def gen_change_text(i):
    """dumps(GeneratedLog.change(i)), as str, without building the dict."""
    k = i // 5
    rid = (k // GEN_BLOCK) % GEN_ID_SPACE + 1
    life = _GEN_LIFE[rid]
    pos = ((k // (GEN_BLOCK * GEN_ID_SPACE)) * GEN_BLOCK + k % GEN_BLOCK) % life
    op = "create" if pos == 0 else "delete" if pos == life - 1 else "update"
    tail = (_GEN_TAILS_NO_EXT if i % 10 == 3 else _GEN_TAILS)[rid]
    return (f'{_GEN_HEADS[i % 5]}{GEN_FIRST_VERSION + i + i // 7}'
            f'","@operation":"{op}","@timestamp":"{gen_timestamp(i)}{tail}')


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


# --- fast changes pages of generated logs -------------------------------------

# body: the changes' JSON texts joined by ","; next: the "next" value;
# needed_n: a log of at least this many changes gives the same page (cut
# pages); n: the log length it was built for (pages not cut by the limit).
GenPage = namedtuple("GenPage", "body next cut needed_n n")


def gen_wanted(evidences):
    """evidence filter -> sorted tuple of GEN_EVIDENCES indices; None = all."""
    if not evidences:
        return None
    wanted = tuple(e for e, ev in enumerate(GEN_EVIDENCES) if ev in evidences)
    return None if len(wanted) == len(GEN_EVIDENCES) else wanted


def build_gen_page(n, first, limit, wanted):
    """The page of a generated log of n changes from index first on."""
    if wanted is None:
        end = min(first + limit, n)
        idx = range(first, end)
        cut = end < n
        needed = end + 1
    else:
        residues = set(wanted)
        idx = list(islice((i for i in range(first, n) if i % 5 in residues),
                          limit + 1))
        cut = len(idx) > limit
        needed = idx[-1] + 1 if cut else 0
        idx = idx[:limit]
    body = ",".join([gen_change_text(i) for i in idx]).encode("ascii")
    nxt = str(GeneratedLog.version(idx[-1]) + 1) if cut else "none"
    return GenPage(body, nxt.encode("ascii"), cut, needed, n)


class PageCache:
    """Serialized changes pages of generated logs.

    A change's text depends on its index only, so the cache is shared by all
    gen/live companies: a page cut by the limit is keyed by (first index,
    limit, evidence filter) and valid for any log with at least needed_n
    changes; a page that reaches the end of the log is keyed with the log
    length too.  Precomputed pages are pinned; the others live in an LRU
    bounded by their size.
    """

    def __init__(self, max_bytes=PAGE_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._lru = OrderedDict()
        self._bytes = 0
        self._pinned = {}

    def _get(self, key):
        with self._lock:
            page = self._pinned.get(key)
            if page is None:
                page = self._lru.get(key)
                if page is not None:
                    self._lru.move_to_end(key)
            return page

    def _put(self, key, page, pin=False):
        with self._lock:
            if pin:
                self._pinned[key] = page
                return
            if key in self._lru or key in self._pinned:
                return
            self._lru[key] = page
            self._bytes += len(page.body)
            while self._bytes > self.max_bytes and self._lru:
                _, old = self._lru.popitem(last=False)
                self._bytes -= len(old.body)

    def page(self, n, first, limit, wanted, pin=False):
        key = (first, limit, wanted)
        page = self._get(key)
        if page is not None and page.needed_n <= n and not pin:
            return page
        page = self._get(key + (n,))
        if page is None or pin:
            page = build_gen_page(n, first, limit, wanted)
            self._put(key if page.cut else key + (n,), page, pin)
        return page

    def body(self, log, start, limit, evidences):
        """The whole changes.json body of a generated log."""
        wanted = gen_wanted(evidences)
        first = 0 if start is None else log.first_index(start)
        if wanted == ():  # no generated evidence asked for
            page = GenPage(b"", b"none", False, 0, log.n)
        else:
            page = self.page(log.n, first, limit, wanted)
        return b"".join((b'{"winstrom":{"@globalVersion":"',
                         str(log.global_version).encode("ascii"),
                         b'","changes":[', page.body, b'],"next":"',
                         page.next, b'"}}'))

    def precompute(self, log, limit=MAX_LIMIT):
        """Pin every page of the default filter, from the first change on,
        following "next" (the pages a full pass over the log reads)."""
        first = 0
        while True:
            page = self.page(log.n, first, limit, None, pin=True)
            if not page.cut:
                return
            first += limit

    def stats(self):
        with self._lock:
            return {"pinned": len(self._pinned), "lru": len(self._lru),
                    "lru_bytes": self._bytes}


# --- companies -------------------------------------------------------------

class LiveLog:
    """The growing log of one live<N> company."""

    def __init__(self, n):
        self.initial = n
        self._lock = threading.Lock()
        self.log = GeneratedLog(n, live=True)
        self.per_listing = 0

    def append(self, count, clip=False):
        """Append count changes; returns the new log."""
        with self._lock:
            n = self.log.n + count
            if n > GEN_MAX:
                if not clip:
                    raise ValueError(f"a live log holds at most {GEN_MAX} changes")
                n = GEN_MAX
            if n != self.log.n:
                self.log = GeneratedLog(n, live=True)
            return self.log

    def grow(self):
        """The log after a record listing's growth (per_listing changes)."""
        per_listing = self.per_listing
        return self.append(per_listing, clip=True) if per_listing else self.log


@dataclass
class Company:
    name: str
    log: object
    kind: Optional[str] = None     # one of SPECIAL_COMPANIES
    fault: Optional[Fault] = None  # applied to every request
    enabled_at_start: bool = True
    live: Optional[LiveLog] = None  # live<N>: its growing log


def live_size(name):
    """N of a live<N> company name, else None."""
    match = re.fullmatch(r"live(0|[1-9][0-9]*)", name)
    if match and int(match.group(1)) <= GEN_MAX:
        return int(match.group(1))
    return None


@lru_cache(maxsize=256)  # keeps gen logs' lazy record indexes warm
def make_company(name, demo_log):
    """The Company for a path segment, or None if there is no such company.
    (live<N> companies have state: FlexiModule.company makes them.)"""
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


def sim_json(status, obj):
    """A /_sim/* answer (plain json.dumps, like dbsync_sim.py's)."""
    return Response(status, json.dumps(obj).encode(), JSON_CT)


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


def spoil(changes):
    """badvalues: three wrong values in an otherwise valid page."""
    bad = (("@in-version", "12x"), ("@operation", "merge"),
           ("@timestamp", "yesterday"))
    for change, (field, value) in zip(changes, bad):
        change[field] = value


def lower_version(log, changes, start):
    """lowversion: one change of the page gets a version below start."""
    if not changes:
        if log.n == 0:
            changes.append({"@evidence": GEN_EVIDENCES[0], "@in-version": "0",
                            "@operation": "create",
                            "@timestamp": gen_timestamp(0), "id": "1",
                            "external-ids": []})
        else:
            changes.append(log.change(log.n - 1))
    base = start if start is not None else int(changes[0]["@in-version"])
    changes[len(changes) // 2]["@in-version"] = str(base - 1)


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
        self._live = {}             # live company name -> LiveLog
        self._huge_lock = threading.Lock()
        self._huge_body = None
        self.pages = PageCache()
        # (company, evidence, id, token) -> the record's JSON text (bytes)
        self._record_texts = {}
        self.controls = {
            "append": (("POST", "PUT"), self.control_append),
            "grow": (("POST", "PUT"), self.control_grow),
            "log": (("GET",), self.control_log),
            "records": (("GET",), self.control_records),
            "cache": (("GET",), self.control_cache),
        }
        for name in getattr(options, "precompute", None) or []:
            self.pages.precompute(self.company(name).log)

    def reset(self):
        with self._lock:
            self._enabled.clear()
            self._live.clear()  # live companies start again from N

    def company(self, name):
        """The Company of a name (live ones with their current log), or None."""
        n = live_size(name)
        if n is None:
            return make_company(name, self.demo_log)
        with self._lock:
            live = self._live.get(name)
            if live is None:
                live = self._live[name] = LiveLog(n)
        return Company(name, live.log, live=live)

    # -- entry --

    def handle(self, req):
        if not self._authorized(req.headers.get("Authorization")):
            return error(401, "Neplatné přihlašovací údaje.",
                         [("WWW-Authenticate", 'Basic realm="ABRA Flexi"')])
        parts = req.path.split("/")[2:]  # path is /c/<company>/<rest...>
        company = self.company(unquote(parts[0]))
        if company is None:
            return error(404, f"Firma '{unquote(parts[0])}' neexistuje.")
        # lowversion waits in the queue for a changes.json request.
        skip = () if parts[1:] == ["changes.json"] else ("lowversion",)
        fault = req.take_fault(company.name, skip) or company.fault
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
        if fault.mode == "lowversion":
            return self._special(req, company, rest, lowversion=True)
        resp = self._special(req, company, rest)  # truncated, truncated-json
        resp.transport = fault.mode
        return resp

    def _special(self, req, company, rest, lowversion=False):
        if company.kind == "nolicense":
            return error(403, "Nemáte licenci pro REST API.")
        if company.kind == "redirect-loop":
            return Response(302, headers=[("Location", req.target)])
        if company.kind == "wrongshape":
            if rest == ["changes.json"]:
                return json_response(200, {"winstrom": {"@version": "1.0"}})
            return json_response(200, {"hello": "world"})
        return self._route(req, company, rest, lowversion)

    # -- routing --

    def _route(self, req, company, rest, lowversion=False):
        if rest == ["changes.json"]:
            if req.method != "GET":
                return method_not_allowed(["GET"])
            return self._changes(req, company, lowversion)
        if len(rest) == 2 and rest[0] == "changes":
            return self._changes_control(req, company, rest[1])
        if rest == ["evidence-list.json"]:
            if req.method != "GET":
                return method_not_allowed(["GET"])
            return self._evidence_list(company)
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

    def _changes(self, req, company, lowversion=False):
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
        limit = min(limit, MAX_LIMIT)
        evidences = set(req.params.get("evidence", []))
        log = company.log
        if (isinstance(log, GeneratedLog) and company.kind is None
                and not lowversion):
            return Response(200, self.pages.body(log, start, limit, evidences),
                            JSON_CT)
        changes, nxt = changes_page(log, start, limit, evidences)
        if company.kind == "badvalues":
            spoil(changes)
        if lowversion:
            lower_version(log, changes, start)
        return json_response(200, {"winstrom": {
            "@globalVersion": str(log.global_version),
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

    def _evidence_list(self, company):
        used = sorted(company.log.evidences)
        return json_response(200, {"winstrom": {"@version": "1.0", "evidences": [
            {"evidencePath": ev, "evidenceName": EVIDENCE_NAMES.get(ev, ev)}
            for ev in used]}})

    def _evidence_listing(self, req, company, evidence):
        if req.method != "GET":
            return method_not_allowed(["GET"])
        if evidence not in self.known_evidences:
            return error(404, f"Evidence '{evidence}' neexistuje.")
        return self._listing(req, company, evidence,
                             lambda log: log.records(evidence), grow=True)

    def _record_text(self, company_name, log, evidence, rid, token):
        """A record's JSON text; cached, as its token fixes its content."""
        key = (company_name, evidence, rid, token)
        text = self._record_texts.get(key)
        if text is None:
            text = dumps(record_json(company_name, evidence,
                                     log.record(evidence, rid)))
            if len(self._record_texts) >= RECORD_CACHE_SIZE:
                self._record_texts.clear()
            self._record_texts[key] = text
        return text

    def _listing(self, req, company, evidence, select, paged=True, grow=False):
        """A listing of the records select(log) gives as [(id, token)].
        grow: a live company's log grows first (see /_sim/grow)."""
        if paged:
            try:
                start = strict_int(req.param("start", "0"))
                limit = strict_int(req.param("limit", str(DEFAULT_LIST_LIMIT)))
                if start < 0 or limit < 0:
                    raise ValueError
            except ValueError:
                return error(400, "Parametry start a limit musí být "
                                  "celá čísla >= 0.")
        if grow and company.live is not None:
            company = replace(company, log=company.live.grow())
        log = company.log
        pairs = select(log)
        total = len(pairs)
        if paged:
            pairs = pairs[start:] if limit == 0 else pairs[start:start + limit]
        parts = [b'{"winstrom":{"@version":"1.0"']
        if is_true(req, "add-row-count"):
            parts.append(b',"@rowCount":"%d"' % total)
        if is_true(req, "add-global-version"):
            parts.append(b',"@globalVersion":"%d"' % log.global_version)
        parts += [b",", dumps(evidence), b":[",
                  b",".join([self._record_text(company.name, log, evidence,
                                               rid, token)
                             for rid, token in pairs]),
                  b"]}}"]
        return Response(200, b"".join(parts), JSON_CT)

    def _existing(self, log, evidence, ids):
        """[(id, token)] of the existing records among ids, ordered by id."""
        if isinstance(log, GeneratedLog) and evidence in GEN_EV_INDEX:
            table = log._token_table(evidence)
            pairs = ((rid, table[rid] if 0 <= rid <= GEN_ID_SPACE else None)
                     for rid in sorted({rid for rid in ids if rid is not None}))
        else:
            pairs = ((rid, log.record_token(evidence, rid))
                     for rid in sorted({rid for rid in ids if rid is not None}))
        return [(rid, token) for rid, token in pairs if token is not None]

    def _detail(self, req, company, evidence, rid):
        token = company.log.record_token(evidence, rid)
        if token is None:
            return not_found(rid, evidence)
        return self._listing(req, company, evidence, lambda log: [(rid, token)],
                             paged=False)

    def _redirect(self, req, company, evidence, ident):
        rid = company.log.resolve(evidence, ident)
        if rid is None or company.log.record(evidence, rid) is None:
            return not_found(ident, evidence)
        location = f"/c/{quote(company.name)}/{quote(evidence)}/{rid}.json"
        if req.query:
            location += "?" + req.query
        return Response(303, headers=[("Location", location)])

    def _filter_listing(self, req, company, evidence, text):
        compare = re.fullmatch(r"\(\s*id\s*(>|>=|<|<=)\s*(-?\d+)\s*\)", text)
        if compare:
            # Keyset paging, as the initial load uses: records ordered by id
            # (order=id@A is the only order served; others are refused).
            if req.param("order", "id@A") != "id@A":
                return error(400, "Podporováno je jen order=id@A.")
            op, bound = compare.group(1), int(compare.group(2))
            test = {">": lambda r: r > bound, ">=": lambda r: r >= bound,
                    "<": lambda r: r < bound, "<=": lambda r: r <= bound}[op]
            return self._listing(req, company, evidence,
                                 lambda log: [(rid, token) for rid, token in log.records(evidence)
                                              if test(rid)],
                                 grow=True)
        try:
            ids = self._filter_ids(company, evidence, text)
        except ValueError:
            return error(400, f"Nepodporovaný filtr: {text}")
        return self._listing(req, company, evidence,
                             lambda log: self._existing(log, evidence, ids),
                             grow=True)

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
            return [int(v) if v.isascii() and v.isdigit() else strict_int(v)
                    for v in values]
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
                             lambda log: self._existing(log, evidence, ids),
                             paged=False)

    @staticmethod
    def _bulk_id(company, evidence, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            if re.fullmatch(r"[0-9]+", value):
                return int(value)
            return company.log.resolve(evidence, value)
        return None

    # -- /_sim/* controls (dbsync_sim.py dispatches them; no auth) --

    def _control_company(self, req, live=False):
        """(Company, None) or (None, error Response)."""
        name = req.param("company")
        if not name:
            return None, sim_json(400, {"error": "company is required"})
        if live and live_size(name) is None:
            return None, sim_json(400, {"error": f"{name} is not a live<N> company"})
        company = self.company(name)
        if company is None:
            return None, sim_json(404, {"error": f"no company {name}"})
        return company, None

    def _count_param(self, req, name):
        try:
            value = strict_int(req.param(name))
        except ValueError:
            raise ValueError(f"{name} must be an integer >= 0") from None
        if value < 0:
            raise ValueError(f"{name} must be an integer >= 0")
        return value

    def control_append(self, req):
        company, failure = self._control_company(req, live=True)
        if failure:
            return failure
        try:
            count = self._count_param(req, "count")
            log = company.live.append(count)
        except ValueError as exc:
            return sim_json(400, {"error": str(exc)})
        return sim_json(200, {"company": company.name, "appended": count,
                              "changes": log.n,
                              "global_version": str(log.global_version)})

    def control_grow(self, req):
        company, failure = self._control_company(req, live=True)
        if failure:
            return failure
        try:
            company.live.per_listing = self._count_param(req, "per_listing")
        except ValueError as exc:
            return sim_json(400, {"error": str(exc)})
        return sim_json(200, {"company": company.name,
                              "per_listing": company.live.per_listing})

    def control_log(self, req):
        company, failure = self._control_company(req)
        if failure:
            return failure
        log = company.log
        try:
            start = req.param("start")
            first = 0 if start is None else log.first_index(strict_int(start))
        except ValueError:
            return sim_json(400, {"error": "start must be an integer"})
        names = {ev: json.dumps(ev) for ev in log.evidences}
        changes = ",".join([f'[{v},{names[ev]},"{op}",{rid}]'
                            for v, ev, op, rid in log.entries(first)])
        body = '{"global_version":"%d","changes":[%s]}' % (log.global_version,
                                                           changes)
        return Response(200, body.encode("utf-8"), JSON_CT)

    def control_records(self, req):
        company, failure = self._control_company(req)
        if failure:
            return failure
        evidence = req.param("evidence")
        if not evidence:
            return sim_json(400, {"error": "evidence is required"})
        log = company.log
        existing, deleted = log.record_states(evidence)
        texts = b",".join([self._record_text(company.name, log, evidence, rid, token)
                           for rid, token in existing])
        body = b'{"records":[%s],"deleted":%s}' % (
            texts, json.dumps(deleted).encode("ascii"))
        return Response(200, body, JSON_CT)

    def control_cache(self, req):
        return sim_json(200, self.pages.stats())
