"""Self-test of the simulator: python3 -m unittest discover -s test/sim -p 'test_*.py'

Starts dbsync_sim.py as a subprocess on a free port and checks its behaviour
over real HTTP (http.client, raw sockets for the transport faults), and over
HTTPS with a throwaway CA from make_certs.sh (needs the openssl command).
"""

import base64
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
from datetime import datetime, timedelta
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import flexi  # noqa: E402  (in-process tests of the fast paths)
from simproc import Reply  # noqa: E402
SCRIPT = os.path.join(HERE, "dbsync_sim.py")
MAKE_CERTS = os.path.join(HERE, "make_certs.sh")
FIXTURE = os.path.join(HERE, "..", "fixtures", "flexi-changes-real.json")
PASSWORD = "pa55-Word"
AUTH = "Basic " + base64.b64encode(f"api:{PASSWORD}".encode()).decode()


class SimProcess:
    """One simulator subprocess with its own temp dir."""

    def __init__(self, *extra):
        self.dir = tempfile.TemporaryDirectory(prefix="dbsync-sim-test-")
        self.port_file = os.path.join(self.dir.name, "port")
        self.log_path = os.path.join(self.dir.name, "requests.log")
        self.stdout_path = os.path.join(self.dir.name, "stdout")
        started = time.monotonic()
        with open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, SCRIPT, "--port", "0", "--port-file",
                 self.port_file, "--password", PASSWORD, "--log",
                 self.log_path, *extra], stdout=out)
        while not os.path.exists(self.port_file):
            if time.monotonic() - started > 5 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("simulator did not start")
            time.sleep(0.01)
        self.startup_seconds = time.monotonic() - started
        with open(self.port_file) as f:
            self.port_text = f.read()
        self.port = int(self.port_text)

    def connect(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self):
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - started

    def cleanup(self):
        self.dir.cleanup()


def fixture_changes():
    """The demo log as the test itself understands the fixture."""
    with open(FIXTURE, encoding="utf-8") as f:
        payloads = json.load(f)
    by_version = {}
    for p in payloads:
        for c in p["winstrom"]["changes"]:
            by_version.setdefault(int(c["@in-version"]), c)
    return [by_version[v] for v in sorted(by_version)]


def gen_version(i):
    return 1000 + i + i // 7


def reference_timestamp(i):
    """The generated timestamp, computed the slow and obvious way."""
    micros = i * 2_537_193 + (i * 7919) % 1000
    if i % 13 == 12:
        j = i - 1
        micros = j * 2_537_193 + (j * 7919) % 1000 - 250_000 - (i % 89) * 1000
    t = datetime(2024, 1, 1, 8) + timedelta(microseconds=micros)
    return t.isoformat(" ", "microseconds")[:21 + i % 6]


def reference_page(log, start, limit, evidences=()):
    """A changes.json body built from dicts by the original (slow) path."""
    changes, nxt = flexi.changes_page(log, start, limit, set(evidences))
    return flexi.dumps({"winstrom": {"@globalVersion": str(log.global_version),
                                     "changes": changes, "next": nxt}})


def last_update(timestamp):
    date_time, _, fraction = timestamp.partition(".")
    return date_time.replace(" ", "T") + "." + (fraction + "000")[:3] + "+01:00"


GEN_EVIDENCES = ["faktura-vydana", "faktura-vydana-polozka", "adresar", "cenik",
                 "objednavka-prijata"]


class SimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.sim = SimProcess()

    @classmethod
    def tearDownClass(cls):
        code, seconds = cls.sim.stop()
        cls.sim.cleanup()
        assert code == 0, f"simulator exit code {code}"
        assert seconds < 3, f"shutdown took {seconds:.1f} s"

    def setUp(self):
        self.call("POST", "/_sim/reset", auth=False)

    # -- helpers --

    def call(self, method, path, body=None, headers=None, auth=True, conn=None):
        own = conn is None
        conn = conn or self.sim.connect()
        hdrs = dict(headers or {})
        if auth:
            hdrs.setdefault("Authorization", AUTH)
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        if method in ("POST", "PUT") and body is None:
            body = b""
        try:
            conn.request(method, path, body, hdrs)
            resp = conn.getresponse()
            return Reply(resp, resp.read())
        finally:
            if own:
                conn.close()

    def call_bare(self, path):
        """GET without Accept-Encoding (http.client sends "identity" by default)."""
        conn = self.sim.connect()
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            conn.putheader("Authorization", AUTH)
            conn.endheaders()
            resp = conn.getresponse()
            return Reply(resp, resp.read())
        finally:
            conn.close()

    def changes(self, company, query="", conn=None):
        reply = self.call("GET", f"/c/{company}/changes.json{query}", conn=conn)
        self.assertEqual(reply.status, 200, reply.body[:200])
        return reply.json()["winstrom"]

    def all_changes(self, company, query="", limit=1000):
        out, start = [], None
        conn = self.sim.connect()
        try:
            while True:
                q = f"?limit={limit}" + (f"&start={start}" if start else "") + query
                page = self.changes(company, q, conn)
                out += page["changes"]
                if page["next"] == "none":
                    return out
                start = page["next"]
        finally:
            conn.close()

    def assert_flexi_error(self, reply, status):
        self.assertEqual(reply.status, status, reply.body[:200])
        self.assertTrue(reply.header("Content-Type").startswith("application/json"))
        body = reply.json()["winstrom"]
        self.assertEqual(body["success"], "false")
        self.assertTrue(body["message"])
        return body["message"]

    # -- process, control --

    def test_startup_and_port_file(self):
        self.assertRegex(self.sim.port_text, r"^[0-9]+\n$")
        self.assertLess(self.sim.startup_seconds, 1.0)

    def test_health(self):
        reply = self.call("GET", "/_sim/health", auth=False)
        self.assertEqual((reply.status, reply.body), (200, b"ok"))

    def test_unknown_paths(self):
        self.assertEqual(self.call("GET", "/nothing/here").status, 404)
        self.assert_flexi_error(self.call("GET", "/c/demo/nothing/x/y.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/demo/changes.xml"), 404)
        self.assert_flexi_error(self.call("GET", "/c/demo/no-such-evidence.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/no-such-company/changes.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/gen0/changes.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/gen10000001/changes.json"), 404)

    # -- auth --

    def test_auth(self):
        for headers in ({"Authorization": ""},
                        {"Authorization": "Basic " + base64.b64encode(b"api:wrong").decode()},
                        {"Authorization": "Basic !!!"}):
            reply = self.call("GET", "/c/demo/changes.json", headers=headers, auth=False)
            self.assert_flexi_error(reply, 401)
            self.assertEqual(reply.header("WWW-Authenticate"), 'Basic realm="ABRA Flexi"')
            self.assertNotIn(b"wrong", reply.body)
        reply = self.call("GET", "/c/demo/changes.json", auth=False)
        self.assertEqual(reply.status, 401)
        # Auth comes before anything else, even faults and unknown companies.
        self.assertEqual(self.call("GET", "/c/reset/changes.json", auth=False).status, 401)
        self.assertEqual(self.call("GET", "/c/nope/changes.json", auth=False).status, 401)

    # -- demo changes --

    def test_demo_log_is_the_fixture(self):
        expected = fixture_changes()
        self.assertEqual(len(expected), 332)  # no version occurs twice
        self.assertEqual(self.all_changes("demo", limit=50), expected)
        page = self.changes("demo", "?limit=1&add-global-version=true")
        self.assertEqual(page["@globalVersion"], "3656999")
        self.assertEqual(list(page), ["@globalVersion", "changes", "next"])
        self.assertEqual(page["next"], str(int(expected[0]["@in-version"]) + 1))

    def test_demo_body_shape(self):
        reply = self.call("GET", "/c/demo/changes.json?limit=1000")
        self.assertEqual(reply.header("Content-Type"), "application/json; charset=utf-8")
        self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
        self.assertIn(rb'"code:VF2-1419\/2021"', reply.body)  # Flexi escapes "/"
        for change in reply.json()["winstrom"]["changes"]:
            self.assertEqual(list(change), ["@evidence", "@in-version", "@operation",
                                            "@timestamp", "id", "external-ids"])
            self.assertTrue(all(isinstance(v, str) for k, v in change.items()
                                if k != "external-ids"))

    def test_limits_and_start(self):
        self.assertEqual(len(self.changes("demo")["changes"]), 100)
        self.assertEqual(len(self.changes("gen5000", "?limit=5000")["changes"]), 1000)
        for bad in ("limit=0", "limit=-1", "limit=abc", "limit=1.5", "limit=",
                    "start=abc", "start=1e3"):
            self.assert_flexi_error(self.call("GET", f"/c/demo/changes.json?{bad}"), 400)

    def test_next(self):
        self.assertEqual(self.changes("gen10", "?limit=10")["next"], "none")
        page = self.changes("gen10", "?limit=9")
        self.assertEqual(page["next"], str(gen_version(8) + 1))
        page = self.changes("gen10", f"?start={page['next']}")
        self.assertEqual([c["@in-version"] for c in page["changes"]], [str(gen_version(9))])
        self.assertEqual(page["next"], "none")
        # start inside a version gap (1007 does not exist) and past the end
        self.assertEqual(self.changes("gen10", "?start=1007")["changes"][0]["@in-version"], "1008")
        self.assertEqual(self.changes("gen10", "?start=999999"),
                         {"@globalVersion": str(gen_version(9) + 3), "changes": [], "next": "none"})

    def test_evidence_filter(self):
        expected = [c for c in fixture_changes() if c["@evidence"] in ("smlouva", "adresar")]
        page = self.changes("demo", "?evidence=smlouva&evidence=adresar")
        self.assertEqual((page["changes"], page["next"]), (expected, "none"))
        banka = [c for c in fixture_changes() if c["@evidence"] == "banka"]
        page = self.changes("demo", "?evidence=banka&limit=3")
        self.assertEqual(page["next"], str(int(banka[2]["@in-version"]) + 1))
        self.assertEqual(self.all_changes("demo", "&evidence=banka", limit=7), banka)
        self.assertEqual(self.changes("gen1000", "?evidence=banka")["changes"], [])
        page = self.changes("gen1000", "?evidence=cenik&limit=1000")
        self.assertEqual(len(page["changes"]), 200)
        self.assertEqual(page["next"], "none")

    # -- generated logs --

    def test_gen_small(self):
        page = self.changes("gen25", "?limit=100")
        changes = page["changes"]
        self.assertEqual(len(changes), 25)
        self.assertEqual([c["@in-version"] for c in changes],
                         [str(gen_version(i)) for i in range(25)])
        self.assertEqual(page["@globalVersion"], str(gen_version(24) + 3))
        self.assertEqual(page, self.changes("gen25", "?limit=100"))  # deterministic
        self.assertEqual(changes[0], {
            "@evidence": "faktura-vydana", "@in-version": "1000", "@operation": "create",
            "@timestamp": "2024-01-01 08:00:00.0", "id": "1", "external-ids": ["code:X1"]})

    def test_gen_rules(self):
        changes = self.all_changes("gen6000")
        self.assertEqual(len(changes), 6000)
        ops, alive = {}, {}
        for c in changes:
            key = (c["@evidence"], c["id"])
            op = c["@operation"]
            if key not in alive or not alive[key]:
                self.assertEqual(op, "create", c)
            else:
                self.assertIn(op, ("update", "delete"), c)
            alive[key] = op != "delete"
            ops[op] = ops.get(op, 0) + 1
        self.assertEqual(set(ops), {"create", "update", "delete"})
        self.assertEqual({c["@evidence"] for c in changes},
                         {"faktura-vydana", "faktura-vydana-polozka", "adresar",
                          "cenik", "objednavka-prijata"})
        digits = {len(c["@timestamp"].partition(".")[2]) for c in changes}
        self.assertEqual(digits, {1, 2, 3, 4, 5, 6})
        stamps = [c["@timestamp"] for c in changes]
        inversions = [i for i in range(1, len(stamps)) if stamps[i] < stamps[i - 1]]
        self.assertTrue(inversions)
        self.assertTrue(all(i % 13 == 12 for i in inversions))
        ext = [c["external-ids"] for c in changes]
        self.assertIn([], ext)
        self.assertTrue(any(len(e) == 2 and e[1].startswith("ext:sim:") for e in ext))

    def test_gen_paging_is_fast(self):
        started = time.monotonic()
        changes = self.all_changes("gen100000", limit=1000)
        elapsed = time.monotonic() - started
        self.assertEqual(len(changes), 100000)
        self.assertEqual(changes[-1]["@in-version"], str(gen_version(99999)))
        self.assertLess(elapsed, 10)
        page = self.changes("gen100000", "?start=1000&limit=1000")
        self.assertEqual(len(page["changes"]), 1000)
        self.assertEqual(page["next"], str(gen_version(999) + 1))
        page = self.changes("gen10000000", "?start=9000000&limit=1000")
        self.assertEqual(len(page["changes"]), 1000)

    # -- enable / disable --

    def test_enable_disable(self):
        status = self.call("GET", "/c/demo/changes/status.xml")
        self.assertEqual(status.header("Content-Type"), "application/xml")
        self.assertEqual(status.body.decode(), '<?xml version="1.0" encoding="utf-8"?>\n'
                         '<winstrom version="1.0">\n  <success>true</success>\n</winstrom>')
        self.assertIn(b"<success>true</success>", self.call("PUT", "/c/demo/changes/disable.xml").body)
        self.assertIn(b"<success>false</success>", self.call("GET", "/c/demo/changes/status.xml").body)
        self.assertIn("není", self.assert_flexi_error(self.call("GET", "/c/demo/changes.json"), 400))
        self.assertEqual(self.call("GET", "/c/gen5/changes.json").status, 200)  # per company
        self.assertEqual(self.call("POST", "/c/demo/changes/enable.xml").status, 200)
        self.assertEqual(self.call("GET", "/c/demo/changes.json").status, 200)
        self.assertEqual(self.call("GET", "/c/demo/changes/enable.xml").status, 405)

    def test_disabled_company(self):
        self.assertIn(b"<success>false</success>", self.call("GET", "/c/disabled/changes/status.xml").body)
        self.assert_flexi_error(self.call("GET", "/c/disabled/changes.json"), 400)
        self.assertEqual(self.call("GET", "/c/disabled/adresar.json").status, 200)
        self.call("PUT", "/c/disabled/changes/enable.xml")
        self.assertEqual(self.changes("disabled", "?limit=1000")["changes"], fixture_changes()[:332])
        self.call("POST", "/_sim/reset", auth=False)
        self.assert_flexi_error(self.call("GET", "/c/disabled/changes.json"), 400)

    def test_locked_company(self):
        reply = self.call("PUT", "/c/locked/changes/enable.xml", headers={"Content-Length": "0"})
        self.assertEqual(reply.status, 400)
        self.assertEqual(reply.header("Content-Type"), "application/xml")
        self.assertIn(b'could not obtain lock on relation "drady"', reply.body)
        self.assertIn(b"LOCK TABLE drady IN ACCESS EXCLUSIVE MODE NOWAIT", reply.body)
        self.assertEqual(self.call("POST", "/c/locked/changes/disable.xml").status, 200)
        self.assertEqual(self.call("POST", "/c/locked/changes/enable.xml").status, 400)

    # -- records --

    def test_record_detail(self):
        reply = self.call("GET", "/c/demo/adresar/4435.json")
        self.assertEqual(reply.status, 200)
        body = reply.json()["winstrom"]
        self.assertEqual(body["@version"], "1.0")
        [rec] = body["adresar"]
        self.assertEqual((rec["id"], rec["kod"], rec["nazev"]), ("4435", "TEST5", "adresar 4435"))
        self.assertRegex(rec["lastUpdate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+01:00$")
        [inv] = self.call("GET", "/c/gen100/faktura-vydana/2.json").json()["winstrom"]["faktura-vydana"]
        self.assertRegex(inv["sumCelkem"], r"^\d+\.\d\d$")
        self.assertEqual(inv["firma@ref"], f"/c/gen100/adresar/{int(inv['firma'][10:])}.json")
        [item] = self.call("GET", "/c/gen100/faktura-vydana-polozka/2.json").json()[
            "winstrom"]["faktura-vydana-polozka"]
        self.assertEqual((item["doklFak"], item["doklFak@ref"]), ("2", "/c/gen100/faktura-vydana/2.json"))
        self.assert_flexi_error(self.call("GET", "/c/demo/adresar/1.json"), 404)
        # gen: id 1 lives create, update, delete (rounds 0..2), so it is gone
        self.assert_flexi_error(self.call("GET", "/c/gen100/adresar/1.json"), 404)

    def test_deleted_records_match_the_log(self):
        alive = {}
        for c in self.all_changes("gen3000"):
            alive[(c["@evidence"], int(c["id"]))] = c["@operation"] != "delete"
        for evidence in ("adresar", "faktura-vydana-polozka"):
            listed = self.call("GET", f"/c/gen3000/{evidence}.json?limit=0").json()["winstrom"][evidence]
            self.assertEqual([int(r["id"]) for r in listed],
                             sorted(rid for (ev, rid), ok in alive.items() if ev == evidence and ok))

    def test_code_redirect(self):
        for path in ("/c/demo/faktura-vydana/code:VF2-1419%2F2021.json?detail=full",
                     "/c/demo/faktura-vydana/code%3AVF2-1419%2F2021.json?detail=full",
                     "/c/demo/faktura-vydana/code:VF2-1419/2021.json?detail=full"):
            reply = self.call("GET", path)
            self.assertEqual(reply.status, 303, path)
            location = reply.header("Location")
            self.assertRegex(location, r"^/c/demo/faktura-vydana/[0-9]+\.json\?detail=full$")
            [rec] = self.call("GET", location).json()["winstrom"]["faktura-vydana"]
            self.assertEqual(rec["kod"], "VF2-1419/2021")
        self.assertEqual(self.call("GET", "/c/gen100/cenik/code:X2.json").header("Location"),
                         "/c/gen100/cenik/2.json")
        self.assertEqual(self.call("GET", "/c/gen100/cenik/ext:sim:4.json").status, 303)
        self.assert_flexi_error(self.call("GET", "/c/demo/adresar/code:NOPE.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/gen100/adresar/code:X1.json"), 404)  # deleted

    def test_listing(self):
        ids = sorted({int(c["id"]) for c in fixture_changes() if c["@evidence"] == "faktura-vydana"})
        body = self.call("GET", "/c/demo/faktura-vydana.json").json()["winstrom"]
        self.assertEqual([int(r["id"]) for r in body["faktura-vydana"]], ids[:20])
        self.assertNotIn("@rowCount", body)
        body = self.call("GET", "/c/demo/faktura-vydana.json?start=5&limit=3&add-row-count=true"
                         "&add-global-version=true").json()["winstrom"]
        self.assertEqual([int(r["id"]) for r in body["faktura-vydana"]], ids[5:8])
        self.assertEqual((body["@rowCount"], body["@globalVersion"]), (str(len(ids)), "3656999"))
        body = self.call("GET", "/c/demo/faktura-vydana.json?limit=0").json()["winstrom"]
        self.assertEqual(len(body["faktura-vydana"]), len(ids))
        self.assertEqual(self.call("GET", "/c/gen10/banka.json").json()["winstrom"]["banka"], [])
        self.assert_flexi_error(self.call("GET", "/c/demo/adresar.json?limit=-1"), 400)

    def test_filter_segment(self):
        wanted = "(id in (4435, 1, 4436))"
        for segment in (quote(wanted), wanted.replace(" ", "%20")):
            body = self.call("GET", f"/c/demo/adresar/{segment}.json").json()["winstrom"]
            self.assertEqual([r["id"] for r in body["adresar"]], ["4435"])
        body = self.call("GET", "/c/gen100/cenik/" + quote("(id in (2,3,999))") + ".json").json()
        self.assertEqual([r["id"] for r in body["winstrom"]["cenik"]], ["2", "3"])
        body = self.call("GET", "/c/gen100/cenik/" + quote("(kod = 'X3')") + ".json").json()
        self.assertEqual([r["id"] for r in body["winstrom"]["cenik"]], ["3"])
        self.assert_flexi_error(self.call("GET", "/c/demo/adresar/" + quote("(nazev like 'x')") + ".json"), 400)

    def test_bulk_get(self):
        reply = self.call("POST", "/c/gen100/cenik/get.json",
                          {"winstrom": {"id": [3, "2", "code:X4", "code:NONE", 999, 1]}})
        self.assertEqual(reply.status, 200)
        self.assertEqual([r["id"] for r in reply.json()["winstrom"]["cenik"]], ["2", "3", "4"])
        self.assert_flexi_error(self.call("POST", "/c/gen100/cenik/get.json", b"{nope"), 400)
        self.assertEqual(self.call("GET", "/c/gen100/cenik/get.json").status, 405)

    # -- fault companies --

    def test_status_companies(self):
        for code in (500, 503, 404, 400):
            for path in ("changes.json", "changes/status.xml", "adresar.json"):
                message = self.assert_flexi_error(self.call("GET", f"/c/status-{code}/{path}"), code)
                self.assertEqual(message, f"Simulated error {code}")

    def test_slow(self):
        started = time.monotonic()
        page = self.changes("slow-0.3", "?limit=1000")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual(page["changes"], fixture_changes())

    def test_malformed(self):
        reply = self.call("GET", "/c/malformed/changes.json")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("Content-Type"), "application/json")
        self.assertRaises(ValueError, json.loads, reply.body)

    def test_truncated(self):
        conn = self.sim.connect()
        conn.request("GET", "/c/truncated/changes.json", headers={"Authorization": AUTH})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertRaises(http.client.IncompleteRead, resp.read)
        conn.close()

    def test_truncated_json(self):
        reply = self.call("GET", "/c/truncated-json/changes.json")
        self.assertEqual(reply.status, 200)
        self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
        full = self.call("GET", "/c/demo/changes.json").body
        self.assertEqual(reply.body, full[:len(full) // 2])
        self.assertRaises(ValueError, json.loads, reply.body)

    def test_reset(self):
        with self.assertRaises(ConnectionResetError):  # includes RemoteDisconnected
            self.call("GET", "/c/reset/changes.json")
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=5) as s:
            s.sendall(b"GET /c/reset/changes.json HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: " + AUTH.encode() + b"\r\n\r\n")
            with self.assertRaises(ConnectionResetError):  # RST, not a clean EOF
                s.recv(100)

    def test_wrongshape(self):
        reply = self.call("GET", "/c/wrongshape/changes.json")
        self.assertEqual((reply.status, reply.json()), (200, {"winstrom": {"@version": "1.0"}}))
        reply = self.call("GET", "/c/wrongshape/adresar.json")
        self.assertEqual((reply.status, reply.json()), (200, {"hello": "world"}))

    def test_badvalues(self):
        changes = self.changes("badvalues")["changes"]
        expected = fixture_changes()[:100]
        self.assertEqual(len(changes), 100)
        self.assertEqual(changes[0]["@in-version"], "12x")
        self.assertEqual(changes[1]["@operation"], "merge")
        self.assertEqual(changes[2]["@timestamp"], "yesterday")
        self.assertEqual(changes[3:], expected[3:])
        self.assertEqual(self.changes("demo")["changes"], expected)  # demo untouched

    def test_huge(self):
        reply = self.call("GET", "/c/huge/changes.json")
        self.assertEqual(reply.status, 200)
        self.assertGreater(len(reply.body), 18_000_000)
        self.assertLess(len(reply.body), 25_000_000)
        body = reply.json()["winstrom"]
        self.assertGreater(len(body["changes"]), 100_000)
        self.assertEqual(body["next"], "none")

    def test_client_disconnects_mid_response(self):
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=5) as s:
            s.sendall(b"GET /c/huge/changes.json HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: " + AUTH.encode() + b"\r\n\r\n")
            s.recv(1000)
        self.assertEqual(self.call("GET", "/_sim/health", auth=False).status, 200)
        with open(self.sim.stdout_path, "rb") as f:
            self.assertEqual(f.read(), b"")

    def test_redirect_loop(self):
        reply = self.call("GET", "/c/redirect-loop/changes.json?start=5&limit=2")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.header("Location"), "/c/redirect-loop/changes.json?start=5&limit=2")

    def test_nolicense(self):
        for method, path in (("GET", "changes.json"), ("PUT", "changes/enable.xml"),
                             ("GET", "changes/status.xml"), ("GET", "adresar/1.json")):
            message = self.assert_flexi_error(self.call(method, f"/c/nolicense/{path}"), 403)
            self.assertIn("licenci", message)

    def test_gzip(self):
        accept = {"Accept-Encoding": "deflate, gzip;q=0.8"}
        # Paths whose bodies do not name the company, so demo's are comparable.
        for path in ("changes.json?limit=1000", "changes.json?limit=3&start=3000000",
                     "changes/status.xml", "adresar.json?limit=0", "adresar/4435.json"):
            demo = self.call("GET", f"/c/demo/{path}")
            self.assertEqual(demo.status, 200, path)
            plain = self.call("GET", f"/c/gzip/{path}")
            bare = self.call_bare(f"/c/gzip/{path}")
            packed = self.call("GET", f"/c/gzip/{path}", headers=accept)
            for reply in (plain, bare, packed):
                self.assertEqual(reply.status, 200, path)
                self.assertEqual(reply.header("Content-Type"), demo.header("Content-Type"))
                self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
            for reply in (plain, bare):
                self.assertIsNone(reply.header("Content-Encoding"), path)
                self.assertEqual(reply.body, demo.body, path)
            self.assertEqual(packed.header("Content-Encoding"), "gzip", path)
            self.assertEqual(packed.body[:2], b"\x1f\x8b")
            self.assertEqual(gzip.decompress(packed.body), demo.body, path)
        full = self.call("GET", "/c/gzip/changes.json?limit=1000", headers=accept)
        self.assertLess(len(full.body), len(gzip.decompress(full.body)) // 5)
        # demo never compresses; gzip compresses only 200 replies, and q=0 means no
        self.assertIsNone(self.call("GET", "/c/demo/changes.json", headers=accept)
                          .header("Content-Encoding"))
        reply = self.call("GET", "/c/gzip/adresar/1.json", headers=accept)
        self.assertIsNone(reply.header("Content-Encoding"))
        self.assert_flexi_error(reply, 404)
        self.assertIsNone(self.call("GET", "/c/gzip/changes.json",
                                    headers={"Accept-Encoding": "gzip;q=0"})
                          .header("Content-Encoding"))

    # -- on-demand faults --

    def test_armed_status_fault(self):
        reply = self.call("POST", "/_sim/fault?company=demo&mode=status&status=503&count=2", auth=False)
        self.assertEqual(reply.status, 200)
        self.assertEqual(self.call("GET", "/c/gen5/changes.json").status, 200)  # other company
        self.assert_flexi_error(self.call("GET", "/c/demo/changes.json"), 503)
        self.assert_flexi_error(self.call("GET", "/c/demo/adresar.json"), 503)
        self.assertEqual(self.call("GET", "/c/demo/changes.json").status, 200)

    def test_armed_fault_modes(self):
        for mode in ("malformed", "truncated-json", "reset", "truncated"):
            self.call("POST", f"/_sim/fault?company=gen50&mode={mode}", auth=False)
        self.call("POST", "/_sim/fault?company=gen50&mode=slow&seconds=0.2", auth=False)
        self.assertRaises(ValueError, json.loads, self.call("GET", "/c/gen50/changes.json").body)
        self.assertRaises(ValueError, json.loads, self.call("GET", "/c/gen50/changes.json").body)
        self.assertRaises(ConnectionResetError, self.call, "GET", "/c/gen50/changes.json")
        self.assertRaises(http.client.IncompleteRead, self.call, "GET", "/c/gen50/changes.json")
        started = time.monotonic()
        self.assertEqual(len(self.changes("gen50")["changes"]), 50)
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual(len(self.changes("gen50")["changes"]), 50)

    def test_reset_clears_armed_faults(self):
        self.call("POST", "/_sim/fault?company=demo&mode=status&count=5", auth=False)
        self.call("POST", "/_sim/reset", auth=False)
        self.assertEqual(self.call("GET", "/c/demo/changes.json").status, 200)
        self.assertEqual(self.call("POST", "/_sim/fault?company=demo&mode=bogus", auth=False).status, 400)
        self.assertEqual(self.call("POST", "/_sim/fault?mode=status", auth=False).status, 400)

    # -- continuous sync support: listings, evidence list, live logs, ground truth --

    def sim_json(self, method, path):
        reply = self.call(method, path, auth=False)
        self.assertEqual(reply.status, 200, reply.body[:300])
        return reply.json()

    def listing(self, company, evidence, query="?limit=0"):
        reply = self.call("GET", f"/c/{company}/{evidence}.json{query}")
        self.assertEqual(reply.status, 200, reply.body[:300])
        return reply.json()["winstrom"]

    def filter_listing(self, company, evidence, ids, query="?limit=0"):
        segment = "(id%20in%20(" + ",".join(map(str, ids)) + "))"
        reply = self.call("GET", f"/c/{company}/{evidence}/{segment}.json{query}")
        self.assertEqual(reply.status, 200, reply.body[:300])
        return reply.json()["winstrom"]

    def test_sync_listing_shape(self):
        query = "?start=0&limit=0&add-row-count=true&add-global-version=true"
        gv = self.changes("gen1000000", "?limit=1")["@globalVersion"]
        for evidence in GEN_EVIDENCES:
            body = self.listing("gen1000000", evidence, query)
            self.assertEqual(list(body), ["@version", "@rowCount", "@globalVersion", evidence])
            self.assertEqual((body["@version"], body["@globalVersion"]), ("1.0", gv))
            records = body[evidence]
            self.assertEqual(body["@rowCount"], str(len(records)))
            ids = [int(r["id"]) for r in records]
            self.assertEqual(ids, sorted(set(ids)))
            self.assertTrue(300 < len(ids) <= 997, len(ids))
            for rec in records:
                self.assertTrue(all(isinstance(v, str) for v in rec.values()), rec)
                self.assertEqual(list(rec)[:5], ["id", "lastUpdate", "kod", "nazev", "popis"])
            # offset paging covers the same records, in order
            paged, start = [], 0
            while True:
                page = self.listing("gen1000000", evidence,
                                    f"?start={start}&limit=150&add-row-count=true")
                self.assertEqual(page["@rowCount"], str(len(records)))
                paged += page[evidence]
                if len(page[evidence]) < 150:
                    break
                start += 150
            self.assertEqual(paged, records)
            # the filter form: the ids that exist, ordered by id, same content
            wanted = [998, 5, 3, 1, 2, 700, 4, 3, 0, 996, 997]
            got = self.filter_listing("gen1000000", evidence, wanted)[evidence]
            self.assertEqual(got, [r for r in records if int(r["id"]) in wanted])
            body = self.filter_listing("gen1000000", evidence, wanted,
                                       "?limit=0&add-global-version=true")
            self.assertEqual(body["@globalVersion"], gv)

    def test_records_follow_their_last_change(self):
        changes = self.all_changes("gen3000")
        last = {}
        for c in changes:
            last[(c["@evidence"], c["id"])] = c
        for evidence in GEN_EVIDENCES:
            records = {r["id"]: r for r in self.listing("gen3000", evidence)[evidence]}
            expected = {rid: c for (ev, rid), c in last.items()
                        if ev == evidence and c["@operation"] != "delete"}
            self.assertEqual(set(records), set(expected))
            for rid, rec in records.items():
                c = expected[rid]
                self.assertEqual(rec["lastUpdate"], last_update(c["@timestamp"]))
                self.assertEqual(rec["popis"], "Simulated record, last change in version "
                                 + c["@in-version"])

    def test_evidence_list(self):
        body = self.call("GET", "/c/demo/evidence-list.json").json()["winstrom"]
        self.assertEqual(list(body), ["@version", "evidences"])
        paths = [e["evidencePath"] for e in body["evidences"]]
        self.assertEqual(paths, sorted({c["@evidence"] for c in fixture_changes()}))
        self.assertIn({"evidencePath": "adresar", "evidenceName": "Adresář"}, body["evidences"])
        self.assertTrue(all(list(e) == ["evidencePath", "evidenceName"] and e["evidenceName"]
                            for e in body["evidences"]))
        for company, expected in (("gen1000", sorted(GEN_EVIDENCES)),
                                  ("gen2", GEN_EVIDENCES[:2]), ("live0", []),
                                  ("live4", sorted(GEN_EVIDENCES[:4]))):
            reply = self.call("GET", f"/c/{company}/evidence-list.json")
            self.assertEqual(reply.header("Content-Type"), "application/json; charset=utf-8")
            self.assertEqual([e["evidencePath"] for e in reply.json()["winstrom"]["evidences"]],
                             expected, company)
        self.call("POST", "/_sim/append?company=live0&count=3", auth=False)
        self.assertEqual([e["evidencePath"] for e in self.call(
            "GET", "/c/live0/evidence-list.json").json()["winstrom"]["evidences"]],
            sorted(GEN_EVIDENCES[:3]))
        self.assertEqual(self.call("POST", "/c/demo/evidence-list.json").status, 405)
        self.assertEqual(self.call("GET", "/c/demo/evidence-list.json", auth=False).status, 401)

    def test_sim_log(self):
        log = self.sim_json("GET", "/_sim/log?company=gen2500")
        changes = self.all_changes("gen2500")
        self.assertEqual(list(log), ["global_version", "changes"])
        self.assertEqual(log["global_version"], str(gen_version(2499) + 3))
        self.assertEqual(log["changes"], [[int(c["@in-version"]), c["@evidence"], c["@operation"],
                                           int(c["id"])] for c in changes])
        start = gen_version(1234)
        self.assertEqual(self.sim_json("GET", f"/_sim/log?company=gen2500&start={start}")["changes"],
                         log["changes"][1234:])
        # start in a version gap (1007 does not exist)
        self.assertEqual(self.sim_json("GET", "/_sim/log?company=gen2500&start=1007")["changes"],
                         log["changes"][7:])
        demo = self.sim_json("GET", "/_sim/log?company=demo")
        self.assertEqual(demo["global_version"], "3656999")
        self.assertEqual(demo["changes"], [[int(c["@in-version"]), c["@evidence"], c["@operation"],
                                            int(c["id"])] for c in fixture_changes()])
        self.assertEqual(self.sim_json("GET", "/_sim/log?company=live0"),
                         {"global_version": "1000", "changes": []})
        self.assertEqual(self.call("GET", "/_sim/log?company=nope", auth=False).status, 404)
        self.assertEqual(self.call("GET", "/_sim/log", auth=False).status, 400)
        self.assertEqual(self.call("GET", "/_sim/log?company=demo&start=x", auth=False).status, 400)
        self.assertEqual(self.call("POST", "/_sim/log?company=demo", auth=False).status, 405)

    def test_sim_records(self):
        for company in ("gen3000", "gen1000000", "demo"):
            log = self.sim_json("GET", f"/_sim/log?company={company}")["changes"]
            last = {}
            for version, evidence, op, rid in log:
                last[(evidence, rid)] = op
            for evidence in ("adresar", "faktura-vydana", "faktura-vydana-polozka", "banka"):
                truth = self.sim_json("GET", f"/_sim/records?company={company}&evidence={evidence}")
                self.assertEqual(list(truth), ["records", "deleted"])
                listed = self.listing(company, evidence)[evidence]
                self.assertEqual(truth["records"], listed, (company, evidence))
                self.assertEqual([int(r["id"]) for r in truth["records"]],
                                 sorted(rid for (ev, rid), op in last.items()
                                        if ev == evidence and op != "delete"))
                self.assertEqual(truth["deleted"], sorted(rid for (ev, rid), op in last.items()
                                                          if ev == evidence and op == "delete"))
        self.assertTrue(self.sim_json("GET", "/_sim/records?company=gen3000&evidence=adresar")["deleted"])
        self.assertEqual(self.sim_json("GET", "/_sim/records?company=gen3000&evidence=nic"),
                         {"records": [], "deleted": []})
        self.assertEqual(self.call("GET", "/_sim/records?company=gen3000", auth=False).status, 400)
        self.assertEqual(self.call("GET", "/_sim/records?company=x&evidence=adresar",
                                   auth=False).status, 404)

    def test_live_log(self):
        # live<N> starts like gen<N>; its globalVersion is the next change's version
        page = self.changes("live25", "?limit=1000")
        self.assertEqual(page["changes"], self.changes("gen25", "?limit=1000")["changes"])
        self.assertEqual(page["@globalVersion"], str(gen_version(25)))
        before = self.listing("live25", "adresar", "?limit=0&add-global-version=true")
        self.assertEqual(before["@globalVersion"], str(gen_version(25)))
        reply = self.sim_json("POST", "/_sim/append?company=live25&count=10")
        self.assertEqual(reply, {"company": "live25", "appended": 10, "changes": 35,
                                 "global_version": str(gen_version(35))})
        # the changes from the old globalVersion on are exactly the new ones
        page = self.changes("live25", f"?start={before['@globalVersion']}&limit=1000")
        self.assertEqual(page["changes"], self.changes("gen35", "?limit=1000")["changes"][25:])
        self.assertEqual((page["@globalVersion"], page["next"]), (str(gen_version(35)), "none"))
        # a long growth: same generator as gen<N>, records follow
        self.sim_json("POST", "/_sim/append?company=live25&count=5965")
        self.assertEqual(self.all_changes("live25"), self.all_changes("gen6000"))
        for evidence in GEN_EVIDENCES:
            live = self.sim_json("GET", f"/_sim/records?company=live25&evidence={evidence}")
            gen = self.sim_json("GET", f"/_sim/records?company=gen6000&evidence={evidence}")
            self.assertEqual(json.dumps(live).replace("live25", "gen6000"), json.dumps(gen))
        self.assertEqual(self.sim_json("GET", "/_sim/log?company=live25")["changes"],
                         self.sim_json("GET", "/_sim/log?company=gen6000")["changes"])
        # reset restores N
        self.call("POST", "/_sim/reset", auth=False)
        self.assertEqual(len(self.changes("live25", "?limit=1000")["changes"]), 25)
        self.assertEqual(self.listing("live25", "adresar", "?limit=0&add-global-version=true"), before)
        for bad in ("company=gen25&count=1", "company=live25&count=-1", "company=live25&count=x",
                    "company=live25", "count=1", "company=live25&count=10000000"):
            self.assertEqual(self.call("POST", f"/_sim/append?{bad}", auth=False).status, 400, bad)
        self.assertEqual(self.call("GET", "/_sim/append?company=live25&count=1", auth=False).status, 405)
        self.assertEqual(self.call("POST", "/_sim/append?company=live25&count=0", auth=False).status, 200)
        self.assert_flexi_error(self.call("GET", "/c/live10000001/changes.json"), 404)
        self.assert_flexi_error(self.call("GET", "/c/live01/changes.json"), 404)

    def test_stale_copy_differs_after_append(self):
        old = {r["id"]: r for r in self.sim_json(
            "GET", "/_sim/records?company=live9000&evidence=adresar")["records"]}
        self.sim_json("POST", "/_sim/append?company=live9000&count=300")
        touched = {str(rid) for v, ev, op, rid in self.sim_json(
            "GET", f"/_sim/log?company=live9000&start={gen_version(9000)}")["changes"]
            if ev == "adresar"}
        self.assertTrue(touched)
        new = {r["id"]: r for r in self.listing("live9000", "adresar")["adresar"]}
        for rid in set(old) | set(new):
            if rid in touched:
                self.assertNotEqual(old.get(rid), new.get(rid), rid)
            else:
                self.assertEqual(old[rid], new[rid], rid)

    def test_grow_per_listing(self):
        self.assertEqual(self.sim_json("POST", "/_sim/grow?company=live50&per_listing=7"),
                         {"company": "live50", "per_listing": 7})
        gv = lambda n: str(gen_version(n))  # noqa: E731
        body = self.listing("live50", "adresar", "?limit=5&add-global-version=true")
        self.assertEqual(body["@globalVersion"], gv(57))  # grown before answering
        self.assertEqual(len(self.sim_json("GET", "/_sim/log?company=live50")["changes"]), 57)
        body = self.filter_listing("live50", "cenik", [1, 2, 3, 4], "?add-global-version=true")
        self.assertEqual(body["@globalVersion"], gv(64))
        truth = self.sim_json("GET", "/_sim/records?company=live50&evidence=cenik")["records"]
        self.assertEqual(body["cenik"], [r for r in truth if int(r["id"]) <= 4])
        # neither changes, details, get.json, evidence-list nor /_sim/* grow it
        self.changes("live50", "?limit=1000")
        self.call("GET", "/c/live50/cenik/1.json")
        self.call("POST", "/c/live50/cenik/get.json", {"winstrom": {"id": [1]}})
        self.call("GET", "/c/live50/evidence-list.json")
        self.assert_flexi_error(self.call("GET", "/c/live50/adresar.json?limit=x"), 400)
        self.sim_json("GET", "/_sim/records?company=live50&evidence=cenik")
        self.assertEqual(self.changes("live50", "?limit=1")["@globalVersion"], gv(64))
        # a listing replaced by a fault does not grow; a slow one does
        self.call("POST", "/_sim/fault?company=live50&mode=status&status=503", auth=False)
        self.assert_flexi_error(self.call("GET", "/c/live50/adresar.json"), 503)
        self.call("POST", "/_sim/fault?company=live50&mode=slow&seconds=0", auth=False)
        self.assertEqual(self.listing("live50", "adresar", "?add-global-version=true")
                         ["@globalVersion"], gv(71))
        # the listing is consistent with the grown log
        body = self.listing("live50", "faktura-vydana", "?limit=0&add-row-count=true")
        truth = self.sim_json("GET", "/_sim/records?company=live50&evidence=faktura-vydana")
        self.assertEqual(body["faktura-vydana"], truth["records"])
        self.assertEqual(self.sim_json("POST", "/_sim/grow?company=live50&per_listing=0")
                         ["per_listing"], 0)
        self.listing("live50", "adresar")
        self.assertEqual(self.changes("live50", "?limit=1")["@globalVersion"], gv(78))
        self.sim_json("POST", "/_sim/grow?company=live50&per_listing=3")
        self.call("POST", "/_sim/reset", auth=False)
        self.listing("live50", "adresar")
        self.assertEqual(self.changes("live50", "?limit=1")["@globalVersion"], gv(50))
        for bad in ("company=gen50&per_listing=1", "company=live50&per_listing=-1",
                    "company=live50"):
            self.assertEqual(self.call("POST", f"/_sim/grow?{bad}", auth=False).status, 400, bad)

    def test_armed_faults_on_listings(self):
        paths = ["/c/{}/adresar.json?limit=0&add-global-version=true",
                 "/c/{}/adresar/(id%20in%20(4,5,6)).json?limit=0",
                 "/c/{}/evidence-list.json", "/c/{}/adresar/4.json"]
        for company in ("gen1000000", "live30", "demo"):
            for template in paths:
                path = template.format(company)
                good = self.call("GET", path)
                self.assertIn(good.status, (200, 404), path)
                self.call("POST", f"/_sim/fault?company={company}&mode=status&status=502",
                          auth=False)
                self.assert_flexi_error(self.call("GET", path), 502)
                for mode in ("malformed", "truncated-json"):
                    self.call("POST", f"/_sim/fault?company={company}&mode={mode}", auth=False)
                    reply = self.call("GET", path)
                    self.assertEqual(reply.status, 200 if mode == "malformed" else good.status,
                                     (path, mode))
                    self.assertRaises(ValueError, json.loads, reply.body)
                self.call("POST", f"/_sim/fault?company={company}&mode=reset", auth=False)
                self.assertRaises(ConnectionResetError, self.call, "GET", path)
                self.call("POST", f"/_sim/fault?company={company}&mode=truncated", auth=False)
                self.assertRaises(http.client.IncompleteRead, self.call, "GET", path)
                self.call("POST", f"/_sim/fault?company={company}&mode=slow&seconds=0.05",
                          auth=False)
                started = time.monotonic()
                self.assertEqual(self.call("GET", path).body, good.body, path)
                self.assertGreaterEqual(time.monotonic() - started, 0.05)
                self.assertEqual(self.call("GET", path).body, good.body, path)

    def test_lowversion_fault(self):
        normal = self.changes("gen1000", "?start=1100&limit=10")
        self.call("POST", "/_sim/fault?company=gen1000&mode=lowversion", auth=False)
        # listings, details and the evidence list pass over it
        self.assertEqual(self.call("GET", "/c/gen1000/adresar.json").status, 200)
        self.assertEqual(self.call("GET", "/c/gen1000/evidence-list.json").status, 200)
        self.assertEqual(self.call("GET", "/c/gen1000/cenik/2.json").status, 200)
        bad = self.changes("gen1000", "?start=1100&limit=10")
        low = [c for c in bad["changes"] if int(c["@in-version"]) < 1100]
        self.assertEqual(len(low), 1)
        self.assertEqual(low[0]["@in-version"], "1099")
        self.assertEqual(bad["changes"].index(low[0]), 5)
        for got, want in zip(bad["changes"], normal["changes"]):
            if got is not low[0]:
                self.assertEqual(got, want)
        self.assertEqual((bad["next"], bad["@globalVersion"]),
                         (normal["next"], normal["@globalVersion"]))
        self.assertEqual(self.changes("gen1000", "?start=1100&limit=10"), normal)  # spent
        # without start: below the page's first version; demo too; empty page
        self.call("POST", "/_sim/fault?company=demo&mode=lowversion", auth=False)
        bad = self.changes("demo", "?limit=3")["changes"]
        first = int(fixture_changes()[0]["@in-version"])
        self.assertEqual([c["@in-version"] for c in bad][1], str(first - 1))
        self.call("POST", "/_sim/fault?company=live10&mode=lowversion", auth=False)
        page = self.changes("live10", "?start=999999")
        self.assertEqual([c["@in-version"] for c in page["changes"]], ["999998"])
        self.assertEqual(page["next"], "none")
        # queue order: a listing takes the first fault that applies to it
        self.call("POST", "/_sim/fault?company=gen1000&mode=lowversion", auth=False)
        self.call("POST", "/_sim/fault?company=gen1000&mode=status&status=500", auth=False)
        self.assert_flexi_error(self.call("GET", "/c/gen1000/adresar.json"), 500)
        self.assertEqual(self.changes("gen1000", "?start=1100&limit=10")["changes"][5]
                         ["@in-version"], "1099")
        self.assertEqual(self.changes("gen1000", "?start=1100&limit=10"), normal)

    def test_gen_pages_cached_equal_uncached(self):
        queries = ["?limit=1000", "?start=1000&limit=1000", "?start=5000&limit=7",
                   "?start=3000&limit=1000&evidence=adresar&evidence=cenik",
                   "?start=1&limit=100&evidence=banka", "?limit=1000&evidence=faktura-vydana"
                   "&evidence=faktura-vydana-polozka&evidence=adresar&evidence=cenik"
                   "&evidence=objednavka-prijata&evidence=nic"]
        for company, n in (("gen5000", 5000), ("gen1200", 1200), ("live4500", 4500)):
            log = flexi.GeneratedLog(n, live=company.startswith("live"))
            for query in queries:
                first = self.call("GET", f"/c/{company}/changes.json{query}").body
                second = self.call("GET", f"/c/{company}/changes.json{query}").body
                self.assertEqual(first, second, (company, query))
                params = dict(p.split("=") for p in query[1:].split("&") if "evidence" not in p)
                evidences = [p[9:] for p in query[1:].split("&") if p.startswith("evidence=")]
                start = int(params["start"]) if "start" in params else None
                expected = reference_page(log, start, min(int(params["limit"]), 1000), evidences)
                self.assertEqual(first, expected, (company, query))
        cache = self.sim_json("GET", "/_sim/cache")
        self.assertGreater(cache["lru"], 0)
        self.assertEqual(cache["pinned"], 0)

    # -- stats, keep-alive, log --

    def test_stats_and_keep_alive(self):
        conn = self.sim.connect()
        for _ in range(5):
            self.changes("gen100", "?limit=10", conn)
        self.call("GET", "/c/demo/changes/status.xml", conn=conn)
        stats = self.call("GET", "/_sim/stats", auth=False, conn=conn).json()
        conn.close()
        self.assertEqual(stats["connections"], 1)  # setUp's reset used its own
        self.assertEqual(stats["requests"], 6)
        self.assertEqual(stats["by_path"], {"/c/gen100/changes.json": 5,
                                            "/c/demo/changes/status.xml": 1})

    def test_stats_headers(self):
        self.call("GET", "/c/gen5/changes.json", headers={"User-Agent": "dbsync-test/1.0"})
        stats = self.call("GET", "/_sim/stats", auth=False).json()
        self.assertEqual(stats["user_agents"], {"dbsync-test/1.0": 1})
        self.assertEqual(stats["accept_encodings"], {"identity": 1})  # http.client default
        self.call_bare("/c/gen5/changes.json")
        self.call("GET", "/c/gzip/changes.json", headers={"Accept-Encoding": "gzip"})
        stats = self.call("GET", "/_sim/stats", auth=False).json()
        self.assertEqual(stats["user_agents"], {"dbsync-test/1.0": 1, "": 2})
        self.assertEqual(stats["accept_encodings"], {"identity": 1, "": 1, "gzip": 1})
        self.call("POST", "/_sim/reset", auth=False)
        stats = self.call("GET", "/_sim/stats", auth=False).json()
        self.assertEqual((stats["user_agents"], stats["accept_encodings"]), ({}, {}))

    def test_log_file(self):
        self.call("GET", "/c/gen7/changes.json?limit=3")
        self.call("GET", "/c/gen7/changes.json", headers={"Authorization": "Basic " +
                  base64.b64encode(b"api:leaked-secret").decode()}, auth=False)
        with open(self.sim.log_path, encoding="utf-8") as f:
            log = f.read()
        self.assertRegex(log, r"GET /c/gen7/changes.json\?limit=3 200 \d+\n")
        self.assertRegex(log, r"GET /c/gen7/changes.json 401 \d+\n")
        self.assertNotIn("leaked-secret", log)
        self.assertNotIn(PASSWORD, log)


class FastPathTest(unittest.TestCase):
    """In-process: the fast serializers and caches give the bytes of the
    original dict + json.dumps path."""

    SAMPLES = (list(range(0, 3000)) + list(range(999_000, 1_001_000, 7))
               + [9_999_999, 9_999_998, 5_000_000, 34_055, 34_056, 34_057]
               + [i * 104_729 % 10_000_000 for i in range(2000)])

    def test_timestamps(self):
        for i in self.SAMPLES:
            self.assertEqual(flexi.gen_timestamp(i), reference_timestamp(i), i)

    def test_change_text(self):
        log = flexi.GeneratedLog(10_000_000)
        for i in self.SAMPLES:
            self.assertEqual(flexi.gen_change_text(i).encode(), flexi.dumps(log.change(i)), i)

    def test_page_cache(self):
        cache = flexi.PageCache()
        cases = [(None, 1000, ()), (1000, 1000, ()), (1007, 1000, ()), (2143, 5, ()),
                 (1500, 1000, ("adresar",)), (1000, 300, ("cenik", "faktura-vydana", "nic")),
                 (1000, 1000, ("banka",)), (1000, 1000, tuple(GEN_EVIDENCES)),
                 (99_999_999, 10, ())]
        for n in (1, 7, 1000, 1001, 1200, 2000, 5000, 1_000_000):
            for live in (False, True):
                log = flexi.GeneratedLog(n, live)
                for start, limit, evidences in cases:
                    expected = reference_page(log, start, limit, evidences)
                    for _ in range(2):  # cold, then cached
                        self.assertEqual(cache.body(log, start, limit, set(evidences)), expected,
                                         (n, live, start, limit, evidences))
        self.assertGreater(cache.stats()["lru"], 10)

    def test_lru_bound(self):
        cache = flexi.PageCache(max_bytes=1_000_000)
        log = flexi.GeneratedLog(100_000)
        for k in range(30):
            cache.body(log, flexi.GeneratedLog.version(k * 1000), 1000, set())
        stats = cache.stats()
        self.assertLessEqual(stats["lru_bytes"], 1_000_000)
        self.assertTrue(0 < stats["lru"] < 30)
        self.assertEqual(cache.body(log, 1000, 1000, set()), reference_page(log, 1000, 1000))

    def test_precompute(self):
        cache = flexi.PageCache()
        log = flexi.GeneratedLog(3500)
        cache.precompute(log)
        self.assertEqual(cache.stats(), {"pinned": 4, "lru": 0, "lru_bytes": 0})
        start = None
        while True:
            body = cache.body(log, start, 1000, set())
            self.assertEqual(body, reference_page(log, start, 1000))
            nxt = json.loads(body)["winstrom"]["next"]
            if nxt == "none":
                break
            start = int(nxt)
        self.assertEqual(cache.stats()["lru"], 0)  # all served from the pinned pages
        # a pinned page cut by the limit serves longer logs; shorter ones get their own
        for n in (3200, 2500, 1000_000):
            other = flexi.GeneratedLog(n)
            self.assertEqual(cache.body(other, 2000, 1000, set()), reference_page(other, 2000, 1000))

    def test_listings_match_dumps(self):
        options = types.SimpleNamespace(user="api", password=PASSWORD, fixture=FIXTURE)
        module = flexi.FlexiModule(options)
        for name in ("gen3000", "live3000", "demo"):
            company = module.company(name)
            for evidence in GEN_EVIDENCES + ["banka", "nic"]:
                ids = company.log.record_ids(evidence)
                expected = flexi.dumps({"winstrom": {
                    "@version": "1.0", "@rowCount": str(len(ids)),
                    "@globalVersion": str(company.log.global_version),
                    evidence: [flexi.record_json(name, evidence, company.log.record(evidence, rid))
                               for rid in ids]}})
                query = {"limit": "0", "add-row-count": "true", "add-global-version": "true"}
                req = types.SimpleNamespace(param=lambda key, default=None: query.get(key, default))
                for _ in range(2):  # cold, then from the record text cache
                    body = module._listing(req, company, evidence,
                                           lambda log: log.records(evidence)).body
                    self.assertEqual(body, expected, (name, evidence))


class PrecomputeTest(unittest.TestCase):
    def test_precompute_serves_the_same_pages(self):
        sim = SimProcess("--precompute", "gen5000", "--precompute", "live2500")
        try:
            def get(path, method="GET"):
                conn = sim.connect()
                try:
                    conn.request(method, path, b"" if method == "POST" else None,
                                 {"Authorization": AUTH})
                    resp = conn.getresponse()
                    return resp.status, resp.read()
                finally:
                    conn.close()

            # gen5000: 4 pages cut by the limit + its last page; live2500 shares the
            # cut ones (a change's text depends on its index only) + its last page
            self.assertEqual(json.loads(get("/_sim/cache")[1]),
                             {"pinned": 6, "lru": 0, "lru_bytes": 0})

            def full_pass(company, log):
                start = None
                while True:
                    query = "?limit=1000" + (f"&start={start}" if start else "")
                    status, body = get(f"/c/{company}/changes.json{query}")
                    self.assertEqual(status, 200)
                    self.assertEqual(body, reference_page(log, start, 1000), (company, start))
                    nxt = json.loads(body)["winstrom"]["next"]
                    if nxt == "none":
                        return
                    start = int(nxt)

            full_pass("gen5000", flexi.GeneratedLog(5000))
            full_pass("live2500", flexi.GeneratedLog(2500, live=True))
            self.assertEqual(json.loads(get("/_sim/cache")[1])["lru"], 0)
            self.assertEqual(get("/_sim/append?company=live2500&count=100", "POST")[0], 200)
            full_pass("live2500", flexi.GeneratedLog(2600, live=True))
            self.assertEqual(json.loads(get("/_sim/cache")[1])["lru"], 1)  # the new last page
            with open(sim.stdout_path, "rb") as f:
                self.assertEqual(f.read(), b"")
        finally:
            sim.stop()
            sim.cleanup()

    def test_bad_precompute_names(self):
        for name in ("demo", "gen0", "gen10000001", "live01", "x"):
            done = subprocess.run([sys.executable, SCRIPT, "--port", "0", "--precompute", name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(done.returncode, 2, name)
            self.assertIn(b"--precompute", done.stderr)


def make_certs(directory):
    """ca.pem, server.pem, server.key in directory, as start_simulator makes them.
    Fails (never skips) without openssl: HTTPS must be tested."""
    if shutil.which("openssl") is None:
        raise AssertionError("the openssl command is missing: install it (test/lib.sh "
                             "DBSYNC_PACKAGES lists it); the HTTPS tests need it")
    done = subprocess.run(["sh", MAKE_CERTS, directory], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=60)
    if done.returncode != 0 or done.stdout:
        raise AssertionError(f"make_certs.sh: exit {done.returncode}: {done.stdout.decode()}")
    return {name: os.path.join(directory, name)
            for name in ("ca.pem", "server.pem", "server.key")}


class TLSTest(unittest.TestCase):
    """One simulator with both listeners; the CA from make_certs.sh."""

    @classmethod
    def setUpClass(cls):
        cls.certs_dir = tempfile.TemporaryDirectory(prefix="dbsync-sim-certs-")
        try:
            started = time.monotonic()
            cls.certs = make_certs(cls.certs_dir.name)
            cls.certs_seconds = time.monotonic() - started
            cls.tls_port_file = os.path.join(cls.certs_dir.name, "tls.port")
            cls.sim = SimProcess("--tls-cert", cls.certs["server.pem"],
                                 "--tls-key", cls.certs["server.key"],
                                 "--tls-port-file", cls.tls_port_file)
        except BaseException:
            cls.certs_dir.cleanup()
            raise
        with open(cls.tls_port_file) as f:  # written before the plain port file
            cls.tls_port_text = f.read()
        cls.tls_port = int(cls.tls_port_text)

    @classmethod
    def tearDownClass(cls):
        code, seconds = cls.sim.stop()
        cls.sim.cleanup()
        cls.certs_dir.cleanup()
        assert code == 0, f"simulator exit code {code}"
        assert seconds < 3, f"shutdown took {seconds:.1f} s"

    def setUp(self):
        self.get(self.sim.connect(), "/_sim/reset", "POST")

    def ca_context(self):
        return ssl.create_default_context(cafile=self.certs["ca.pem"])

    def tls_connect(self, context=None, host="127.0.0.1"):
        return http.client.HTTPSConnection(host, self.tls_port, timeout=10,
                                           context=context or self.ca_context())

    def get(self, conn, path, method="GET"):
        try:
            conn.request(method, path, b"" if method != "GET" else None,
                         {"Authorization": AUTH})
            resp = conn.getresponse()
            return Reply(resp, resp.read())
        finally:
            conn.close()

    def test_files(self):
        self.assertRegex(self.tls_port_text, r"^[0-9]+\n$")
        self.assertNotEqual(self.tls_port, self.sim.port)
        self.assertLess(self.certs_seconds, 5)
        for name in ("ca.pem", "server.pem", "server.key"):  # readable by us
            with open(self.certs[name], "rb") as f:
                self.assertIn(b"-----BEGIN ", f.read())
        self.assertEqual(sorted(os.listdir(self.certs_dir.name)),
                         ["ca.pem", "server.key", "server.pem", "tls.port"])

    def test_same_demo_page_over_https(self):
        for path in ("/c/demo/changes.json?limit=1", "/c/demo/changes.json?limit=1000",
                     "/c/demo/changes/status.xml", "/c/demo/adresar/4435.json"):
            plain = self.get(self.sim.connect(), path)
            secure = self.get(self.tls_connect(), path)
            self.assertEqual(plain.status, 200, path)
            self.assertEqual((secure.status, secure.body), (plain.status, plain.body), path)
            self.assertEqual(secure.header("Content-Type"), plain.header("Content-Type"))
        page = self.get(self.tls_connect(), "/c/demo/changes.json?limit=1000").json()
        self.assertEqual(page["winstrom"]["changes"], fixture_changes())

    def test_certificate_names(self):
        # IP:127.0.0.1 above; DNS:localhost here (localhost may resolve to ::1 first,
        # so connect to 127.0.0.1 and only name the server localhost).
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
            with self.ca_context().wrap_socket(raw, server_hostname="localhost") as tls:
                self.assertEqual(tls.selected_alpn_protocol(), None)  # client offered none
                tls.sendall(b"GET /_sim/health HTTP/1.1\r\nHost: localhost\r\n"
                            b"Connection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:100])
        self.assertTrue(data.endswith(b"\r\n\r\nok"), data[-100:])
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                self.ca_context().wrap_socket(raw, server_hostname="example.com")

    def test_system_cas_reject_the_certificate(self):
        with self.assertRaises(ssl.SSLCertVerificationError) as caught:
            self.get(self.tls_connect(ssl.create_default_context()),
                     "/c/demo/changes.json?limit=1")
        # The server sends only its own certificate, whose issuer no system CA is.
        self.assertEqual(caught.exception.reason, "CERTIFICATE_VERIFY_FAILED")
        self.assertEqual(caught.exception.verify_message,
                         "unable to get local issuer certificate")
        # The server shrugs it off: no output, still serving both ports.
        self.assertEqual(self.get(self.tls_connect(), "/_sim/health").body, b"ok")
        self.assertEqual(self.get(self.sim.connect(), "/_sim/health").body, b"ok")
        with open(self.sim.stdout_path, "rb") as f:
            self.assertEqual(f.read(), b"")

    def test_plain_http_on_the_tls_port_fails(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.tls_port, timeout=10)
        with self.assertRaises((OSError, http.client.HTTPException)):
            self.get(conn, "/_sim/health")

    def test_shared_state_and_stats(self):
        self.get(self.tls_connect(), "/c/demo/changes/disable.xml", "PUT")
        reply = self.get(self.sim.connect(), "/c/demo/changes.json")
        self.assertEqual(reply.status, 400)  # disabled through the other listener
        self.get(self.sim.connect(), "/c/demo/changes/enable.xml", "PUT")
        self.assertEqual(self.get(self.tls_connect(), "/c/demo/changes.json").status, 200)
        self.get(self.sim.connect(), "/_sim/fault?company=gen5&mode=status&status=502", "POST")
        self.assertEqual(self.get(self.tls_connect(), "/c/gen5/changes.json").status, 502)
        conn = self.tls_connect()  # keep-alive over TLS
        for _ in range(3):
            conn.request("GET", "/c/gen5/changes.json", headers={"Authorization": AUTH})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            resp.read()
        conn.close()
        stats = json.loads(self.get(self.tls_connect(), "/_sim/stats").body)
        self.assertEqual(stats["by_path"], {
            "/c/demo/changes/disable.xml": 1, "/c/demo/changes.json": 2,
            "/c/demo/changes/enable.xml": 1, "/c/gen5/changes.json": 4})
        self.assertEqual(stats["requests"], 8)
        self.assertEqual(stats["api_connections"], 6)  # the 3 kept-alive share one
        with open(self.sim.log_path, encoding="utf-8") as f:
            self.assertIn("PUT /c/demo/changes/disable.xml 200 ", f.read())

    def test_transport_faults_over_tls(self):
        self.get(self.sim.connect(), "/_sim/fault?company=gen5&mode=reset", "POST")
        with self.assertRaises(ConnectionResetError):
            self.get(self.tls_connect(), "/c/gen5/changes.json")
        self.get(self.sim.connect(), "/_sim/fault?company=gen5&mode=truncated", "POST")
        with self.assertRaises(http.client.IncompleteRead):
            self.get(self.tls_connect(), "/c/gen5/changes.json")
        self.assertEqual(self.get(self.tls_connect(), "/c/gen5/changes.json").status, 200)

    def test_silent_client_blocks_nobody(self):
        # A client that connects to the TLS port and never says hello must not
        # hold up other connections (the handshake runs in its own thread).
        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=10):
            started = time.monotonic()
            self.assertEqual(self.get(self.tls_connect(), "/_sim/health").body, b"ok")
            self.assertEqual(self.get(self.sim.connect(), "/_sim/health").body, b"ok")
            self.assertLess(time.monotonic() - started, 2)


class TLSArgumentsTest(unittest.TestCase):
    def test_incomplete_tls_options_are_refused(self):
        for args in (["--tls-cert", "x.pem"], ["--tls-key", "x.key"],
                     ["--tls-port-file", "p"]):
            done = subprocess.run([sys.executable, SCRIPT, "--port", "0", *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
            self.assertEqual(done.returncode, 2, args)
            self.assertIn(b"--tls-", done.stderr)


class LifecycleTest(unittest.TestCase):
    def test_sigterm_with_a_slow_request_in_flight(self):
        sim = SimProcess()
        try:
            errors = []

            def slow_call():
                conn = sim.connect(timeout=30)
                try:
                    conn.request("GET", "/c/slow/changes.json", headers={"Authorization": AUTH})
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(exc)
                finally:
                    conn.close()

            worker = threading.Thread(target=slow_call, daemon=True)
            worker.start()
            time.sleep(0.3)  # the request is now sleeping in the server
            code, seconds = sim.stop()
            self.assertEqual(code, 0)
            self.assertLess(seconds, 3)
            worker.join(5)
            with open(sim.stdout_path, "rb") as f:
                self.assertEqual(f.read(), b"")
        finally:
            sim.stop()
            sim.cleanup()

    def test_sigterm_stops_both_listeners(self):
        certs_dir = tempfile.TemporaryDirectory(prefix="dbsync-sim-certs-")
        sim = None
        try:
            certs = make_certs(certs_dir.name)
            port_file = os.path.join(certs_dir.name, "tls.port")
            sim = SimProcess("--tls-cert", certs["server.pem"], "--tls-key",
                             certs["server.key"], "--tls-port-file", port_file)
            with open(port_file) as f:
                tls_port = int(f.read())
            context = ssl.create_default_context(cafile=certs["ca.pem"])
            errors = []

            def slow_call():  # sleeping in the server over TLS when SIGTERM comes
                conn = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=30,
                                                   context=context)
                try:
                    conn.request("GET", "/c/slow/changes.json", headers={"Authorization": AUTH})
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(exc)
                finally:
                    conn.close()

            worker = threading.Thread(target=slow_call, daemon=True)
            worker.start()
            idle_plain = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
            idle_tls = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
            time.sleep(0.3)
            code, seconds = sim.stop()
            self.assertEqual(code, 0)
            self.assertLess(seconds, 3)
            idle_plain.close()
            idle_tls.close()
            worker.join(5)
            self.assertFalse(worker.is_alive())
            for port in (sim.port, tls_port):  # both listeners are gone
                with self.assertRaises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
            with open(sim.stdout_path, "rb") as f:
                self.assertEqual(f.read(), b"")
        finally:
            if sim is not None:
                sim.stop()
                sim.cleanup()
            certs_dir.cleanup()


if __name__ == "__main__":
    unittest.main()
