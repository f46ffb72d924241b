"""Self-test of the Odoo upgrade API v1 part of the simulator (odoo.py):
python3 -m unittest discover -s test/sim -p 'test_*.py'

Starts dbsync_sim.py as a subprocess and talks to it over real HTTP (and
HTTPS for one class), with http.client and raw sockets.
"""

import gzip
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import time
import unittest
from urllib.parse import urlencode, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import odoo  # noqa: E402  (helpers: the sparse pattern, sizes, header)
from simproc import HttpCalls, Reply, SimProcess  # noqa: E402
from test_sim import make_certs  # noqa: E402

MiB = 1 << 20
# The keys of the documented status reply, in the documented order.
SEED_KEYS = ["id", "key", "email", "target", "aim", "filename", "timezone",
             "state", "issue_stage", "issue", "status_url", "notes_url",
             "original_sql_url", "original_dump_url", "upgraded_sql_url",
             "upgraded_dump_url", "modules_url", "filesize", "database_uuid",
             "created_at", "estimated_time", "processed_at", "elapsed",
             "filestore", "customer_message", "database_version", "postgresql",
             "compressions"]
GOOD = {"contract": "M123456-abcdef", "email": "john.doe@example.com",
        "target": "17.0", "aim": "test", "filename": "db_name.dump"}
URL_FIELDS = {"status_url": "status", "notes_url": "upgraded/notes",
              "original_sql_url": "original/sql",
              "original_dump_url": "original/archive",
              "upgraded_sql_url": "upgraded/sql",
              "upgraded_dump_url": "upgraded/archive",
              "modules_url": "modules/archive"}
# The first 112 bytes of a real "pg_dump -Fc" file (pg_dump 15.20, database
# postgres, archive format 1.14): its header up to the server version.
REAL_CUSTOM_HEAD = bytes.fromhex(
    "5047444d50010e000408010101000000001a000000000c00000000170000000015000000"
    "000a000000007e00000000000000000008000000706f737467726573001e00000031352e"
    "3230202844656269616e2031352e32302d302b6465623132753129001e00000031352e32"
    "30202844")
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGd5cXJ0c2ltdWxhdG9ya2V5"
           "Zm9ydGVzdHM john@example.com")


def custom_dump_head(server_version="15.20 (Debian 15.20-0+deb12u1)"):
    """The start of a pg_dump -Fc file (archive 1.14, as pg_dump 15 writes)."""
    def pg_int(n):
        return bytes([0]) + n.to_bytes(4, "little")

    def pg_str(s):
        return pg_int(len(s)) + s.encode()
    # magic, archive version 1.14.0, intSize 4, offSize 8, format custom,
    # compression -1 (sign byte, then 4 bytes little-endian)
    head = b"PGDMP" + bytes([1, 14, 0, 4, 8, 1]) + bytes([1, 1, 0, 0, 0])
    for n in (26, 12, 23, 21, 10, 126, 0):  # creation time: s, min, h, day, month, year
        head += pg_int(n)
    return head + pg_str("postgres") + pg_str(server_version) + pg_str(server_version) + bytes(64)


def pattern(n, seed=0):
    """n deterministic bytes, made in 1 MiB blocks."""
    out, i = bytearray(), 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest() * 32768
        i += 1
    return bytes(out[:n])


def generated(total, chunk=MiB, seed=1):
    """An on-the-fly body (total bytes, never all in memory) and its sha256
    (computed up front by the same generator)."""
    def blocks():
        block = hashlib.sha256(b"block %d" % seed).digest() * (chunk // 32)
        left = total
        i = 0
        while left > 0:
            n = min(left, chunk)
            yield (block[:n - 8] + i.to_bytes(8, "big"))[:n]
            left -= n
            i += 1
    digest = hashlib.sha256()
    for b in blocks():
        digest.update(b)
    return blocks, digest.hexdigest()


class OdooSim(SimProcess):
    """A simulator subprocess (stdout and stderr kept) with its upload dir."""

    prefix = "dbsync-odoo-test-"

    @property
    def odoo_dir(self):
        return os.path.join(self.dir.name, "uploads")

    def arguments(self):
        return ["--odoo-dir", self.odoo_dir]

    def upload_dir(self):
        (name,) = os.listdir(self.odoo_dir)  # the module's own mkdtemp
        return os.path.join(self.odoo_dir, name)


class OdooTestBase(HttpCalls, unittest.TestCase):
    scheme = "http"

    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=timeout)

    def api(self, name, params=None, via="form", status=200, conn=None):
        """One /database/v1/<name> call; its JSON reply (checked: status, shape)."""
        params = params or {}
        path = f"/database/v1/{name}"
        if via == "query":
            reply = self.call("GET", path + "?" + urlencode(params), conn=conn)
        else:
            reply = self.call("POST", path, urlencode(params).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"},
                              conn=conn)
        self.assertEqual(reply.status, status, reply.body[:300])
        self.assertEqual(reply.header("Content-Type"), "application/json")
        body = reply.json()
        self.assertIsInstance(body["failures"], list)
        for f in body["failures"]:
            self.assertIsInstance(f["reason"], str)
            self.assertIsInstance(f["message"], str)
        return body

    def create(self, **changes):
        params = dict(GOOD, **changes)
        body = self.api("create", params)
        self.assertEqual(body["failures"], [])
        return body["request"]

    def ids(self, r):
        return {"key": r["key"], "request": str(r["id"])}

    def upload(self, r, data, headers=None, status=200, conn=None, chunked=False,
               length=None):
        path = "/database/v1/upload?" + urlencode(self.ids(r))
        hdrs = {"Content-Type": "application/octet-stream"}
        if length is not None:
            hdrs["Content-Length"] = str(length)
        hdrs.update(headers or {})
        own = conn is None
        conn = conn or self.connect(timeout=120)
        try:
            conn.request("POST", path, data, hdrs, encode_chunked=chunked)
            resp = conn.getresponse()
            reply = Reply(resp, resp.read())
        finally:
            if own:
                conn.close()
        self.assertEqual(reply.status, status, reply.body[:300])
        return reply.json()

    def status(self, r, status=200):
        return self.api("status", self.ids(r), via="query", status=status)

    def sim_json(self, method, path, status=200):
        reply = self.call(method, path)
        self.assertEqual(reply.status, status, reply.body[:300])
        return reply.json()

    def sim_request(self, r):
        return self.sim_json("GET", f"/_sim/odoo/requests?request={r['id']}")["requests"][0]

    def local(self, url):
        """The path of one of the reply's URLs (checked to be this simulator's)."""
        parts = urlsplit(url)
        self.assertEqual((parts.scheme, parts.hostname, parts.port),
                         (self.scheme, "127.0.0.1", self.url_port()))
        return parts.path

    def url_port(self):
        return self.sim.port

    def get(self, url, headers=None):
        return self.call("GET", self.local(url), headers=headers)

    def done_request(self, data=b"hello dump\n", **changes):
        """A request taken through upload, process and status polls to its end."""
        r = self.create(**changes)
        self.assertEqual(self.upload(r, data)["failures"], [])
        self.assertEqual(self.api("process", self.ids(r))["failures"], [])
        for _ in range(10):
            r = self.status(r)["request"]
            if r["state"] in ("done", "failed"):
                return r
        self.fail(f"request stuck in {r['state']}")


class OdooApiTest(OdooTestBase):
    @classmethod
    def setUpClass(cls):
        cls.sim = OdooSim()

    @classmethod
    def tearDownClass(cls):
        code = cls.sim.stop()
        output = cls.sim.output()
        gone = not os.path.exists(cls.sim.odoo_dir) or not os.listdir(cls.sim.odoo_dir)
        cls.sim.dir.cleanup()
        assert code == 0, f"simulator exit code {code}"
        assert output == b"", output.decode(errors="replace")[-3000:]
        assert gone, "the upload dir survived the shutdown"

    def setUp(self):
        self.call("POST", "/_sim/reset")

    # -- create --

    def test_create_reply_has_every_documented_field(self):
        for via in ("form", "query"):
            self.call("POST", "/_sim/reset")
            body = self.api("create", GOOD, via=via)
            self.assertEqual(list(body), ["failures", "request"])
            self.assertEqual(body["failures"], [])
            r = body["request"]
            self.assertEqual(list(r), SEED_KEYS)
            self.assertEqual(r["id"], 10534)
            self.assertEqual(r["issue"], 648398)
            self.assertRegex(r["key"], r"^[A-Za-z0-9_-]{22}==$")
            for name in ("email", "target", "aim", "filename"):
                self.assertEqual(r[name], GOOD[name])
            self.assertEqual((r["state"], r["issue_stage"]), ("draft", "new"))
            self.assertRegex(r["created_at"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
            self.assertEqual((r["elapsed"], r["filestore"]), ("00:00", False))
            for name in ("timezone", "filesize", "database_uuid", "estimated_time",
                         "processed_at", "customer_message", "database_version",
                         "postgresql"):
                self.assertIsNone(r[name], name)
            self.assertEqual(r["compressions"], [])
            for field, tail in URL_FIELDS.items():
                self.assertEqual(r[field], f"http://127.0.0.1:{self.sim.port}"
                                 f"/database/eu1/{r['id']}/{r['key']}/{tail}")

    def test_create_ids_rise_and_keys_differ(self):
        first = self.create()
        second = self.create(timezone="Europe/Prague", aim="production", target="6.0")
        self.assertEqual(second["id"], first["id"] + 1)
        self.assertEqual(second["issue"], first["issue"] + 1)
        self.assertNotEqual(first["key"], second["key"])
        self.assertEqual((second["timezone"], second["aim"], second["target"]),
                         ("Europe/Prague", "production", "6.0"))
        for target in ("6.0", "6.1", "7.0", "8.0", "16.0", "17.0"):
            self.assertIn(target, odoo.VALID_TARGETS)
            self.create(target=target)

    def test_create_failures_in_the_documented_shape(self):
        body = self.api("create", dict(GOOD, target="5.0", contract="M123456-abcxyz"))
        self.assertEqual(body, {"failures": [
            {"reason": "TARGET:INVALID", "message": 'Invalid value "5.0"',
             "value": "5.0", "expected": odoo.VALID_TARGETS},
            {"reason": "CONTRACT:NOT_FOUND",
             "message": "Can not find contract M123456-abcxyz",
             "code": "M123456-abcxyz"}]})
        body = self.api("create", dict(GOOD, contract="M999123-abcdef"), via="query")
        self.assertEqual(body["failures"], [{
            "reason": "CONTRACT:NOT_FOUND", "code": "M999123-abcdef",
            "message": "Can not find contract M999123-abcdef"}])
        for contract in ("nonsense", "M123456", "m123456-abcdef"):
            reasons = [f["reason"] for f in self.api(
                "create", dict(GOOD, contract=contract))["failures"]]
            self.assertEqual(reasons, ["CONTRACT:NOT_FOUND"], contract)
        body = self.api("create", dict(GOOD, aim="testing", email="john.doe"))
        self.assertEqual(body["failures"], [
            {"reason": "AIM:INVALID", "message": 'Invalid value "testing"',
             "value": "testing", "expected": ["test", "production"]},
            {"reason": "EMAIL:INVALID", "message": 'Invalid email address "john.doe"',
             "value": "john.doe"}])
        self.assertNotIn("request", body)
        body = self.api("create", {})
        self.assertEqual(body["failures"], [
            {"reason": "PARAM:MISSING", "message": f'Missing required parameter "{p}"',
             "param": p} for p in ("contract", "email", "target", "aim", "filename")])
        body = self.api("create", {"contract": "M999", "email": "x", "target": "9",
                                   "aim": "fun", "filename": ""})
        self.assertEqual([f["reason"] for f in body["failures"]],
                         ["PARAM:MISSING", "TARGET:INVALID", "AIM:INVALID",
                          "EMAIL:INVALID", "CONTRACT:NOT_FOUND"])
        # nothing was created by the failed calls
        self.assertEqual(self.sim_json("GET", "/_sim/odoo/requests"), {"requests": []})

    def test_params_query_wins_and_multipart_forms(self):
        reply = self.call("POST", "/database/v1/create?target=16.0",
                          urlencode(dict(GOOD, target="5.0")).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(reply.json()["request"]["target"], "16.0")
        # a form body is only read as such with a form Content-Type
        reply = self.call("POST", "/database/v1/create", urlencode(GOOD).encode(),
                          {"Content-Type": "text/plain"})
        self.assertEqual(len(reply.json()["failures"]), 5)
        boundary = "xYzZY"
        parts = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"'
                        f'\r\n\r\n{v}\r\n' for k, v in GOOD.items())
        reply = self.call("POST", "/database/v1/create",
                          (parts + f"--{boundary}--\r\n").encode(),
                          {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(reply.json()["failures"], [])
        self.assertEqual(reply.json()["request"]["filename"], GOOD["filename"])

    # -- the whole flow --

    def test_flow_upload_process_status_download(self):
        r = self.create()
        data = pattern(934_902)  # the documentation's 912.99 Kb
        # nothing to download yet
        for field in ("upgraded_dump_url", "original_dump_url", "notes_url",
                      "upgraded_sql_url", "original_sql_url", "modules_url"):
            reply = self.get(r[field])
            self.assertEqual(reply.status, 404, field)
            self.assertEqual(reply.json()["failures"][0], {
                "reason": "DUMP:NOT_READY", "value": "draft", "expected": ["done"],
                "message": f'Request {r["id"]} is in state "draft"; downloads need "done"'})
        body = self.upload(r, data)
        self.assertEqual(body["failures"], [])
        up = body["request"]
        self.assertEqual(list(up), SEED_KEYS)
        self.assertEqual((up["state"], up["filesize"]), ("draft", "912.99 Kb"))
        self.assertEqual((up["compressions"], up["postgresql"]), (["sql"], None))
        sim = self.sim_request(r)["sim"]
        self.assertEqual(sim["upload_bytes"], len(data))
        self.assertEqual(sim["upload_sha256"], hashlib.sha256(data).hexdigest())
        body = self.api("process", self.ids(r))
        self.assertEqual(body["failures"], [])
        self.assertEqual(body["request"]["state"], "pending")
        self.assertEqual(body["request"]["estimated_time"], "00:01")
        self.assertIsNone(body["request"]["processed_at"])
        seen = []
        for _ in range(5):
            s = self.status(r)["request"]
            self.assertEqual(list(s), SEED_KEYS)
            seen.append((s["state"], s["issue_stage"], s["elapsed"]))
            self.assertEqual(s["filesize"], "912.99 Kb")
        self.assertEqual(seen, [("pending", "pending", "00:00"),
                                ("progress", "progress", "00:01"),
                                ("done", "done", "00:01"), ("done", "done", "00:01"),
                                ("done", "done", "00:01")])
        self.assertRegex(s["processed_at"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertEqual(s["database_version"], "16.0")  # one below the target
        self.assertRegex(s["database_uuid"], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-")
        self.assertIsNone(s["customer_message"])
        # downloads
        reply = self.get(s["upgraded_dump_url"])
        self.assertEqual(reply.status, 200)
        head = odoo.upgraded_header(r["id"], "17.0", len(data),
                                    hashlib.sha256(data).hexdigest())
        self.assertTrue(head.startswith(b"-- dbsync-sim upgraded dump: request 10534"))
        self.assertEqual(reply.body, head + data)
        self.assertEqual(int(reply.header("Content-Length")), len(head) + len(data))
        self.assertEqual(reply.header("Content-Type"), "application/octet-stream")
        self.assertEqual(reply.header("Accept-Ranges"), "bytes")
        self.assertEqual(reply.header("Content-Disposition"),
                         'attachment; filename="upgraded_db_name.dump"')
        reply = self.get(s["original_dump_url"])
        self.assertEqual((reply.status, reply.body), (200, data))
        self.assertEqual(self.get(s["modules_url"]).body[:4], b"PK\x05\x06")
        self.assertIn(b"Upgrade notes", self.get(s["notes_url"]).body)
        for field in ("upgraded_sql_url", "original_sql_url"):
            reply = self.get(s[field])
            self.assertEqual(reply.status, 200)
            self.assertTrue(reply.body.startswith(b"-- dbsync-sim"))
        reply = self.get(s["status_url"])
        self.assertEqual(reply.status, 200)
        self.assertIn(b"State: done", reply.body)
        self.assertEqual(self.sim_request(r)["sim"]["downloads"], 6)
        # done is final; process again is refused
        body = self.api("process", self.ids(r))
        self.assertEqual(body["failures"][0]["reason"], "STATE:INVALID")
        self.assertEqual(self.status(r)["request"]["state"], "done")

    def test_status_before_process_stays_draft(self):
        r = self.create()
        for _ in range(3):
            s = self.status(r)["request"]
            self.assertEqual((s["state"], s["elapsed"]), ("draft", "00:00"))
        self.assertEqual(s, r)  # nothing moved

    # -- upload --

    def test_upload_rules(self):
        r = self.create()
        conn = self.connect()
        try:
            # wrong key, unknown or bad request: 4xx; the body is drained, so the
            # same keep-alive connection goes on working
            bad = dict(r, key="x" + r["key"][1:])
            self.assertEqual(self.upload(bad, b"x" * 100_000, status=403, conn=conn),
                             {"failures": [{"reason": "KEY:INVALID",
                                            "message": f"Invalid key for request {r['id']}"}]})
            for rid in (99, "abc"):
                body = self.upload(dict(r, id=rid), b"x" * 10, status=404, conn=conn)
                self.assertEqual(body["failures"], [{
                    "reason": "REQUEST:NOT_FOUND", "code": str(rid),
                    "message": f"Can not find request {rid}"}])
            reply = self.call("POST", "/database/v1/upload", b"abc",
                              {"Content-Type": "application/octet-stream"}, conn=conn)
            self.assertEqual(reply.status, 200)
            self.assertEqual([(f["reason"], f["param"]) for f in reply.json()["failures"]],
                             [("PARAM:MISSING", "key"), ("PARAM:MISSING", "request")])
            # a form Content-Type (curl --data-binary without -H) is refused
            body = self.upload(r, b"abc", {"Content-Type": "application/x-www-form-urlencoded"},
                               conn=conn)
            self.assertEqual(body["failures"][0]["reason"], "UPLOAD:CONTENT_TYPE")
            self.assertEqual(body["failures"][0]["expected"], ["application/octet-stream"])
            self.assertIsNone(body["request"]["filesize"])
            body = self.upload(r, b"", conn=conn)
            self.assertEqual(body["failures"][0]["reason"], "UPLOAD:EMPTY")
            self.assertIsNone(body["request"]["filesize"])
            self.assertEqual(os.listdir(self.sim.upload_dir()), [])
            # GET is not an upload
            reply = self.call("GET", "/database/v1/upload?" + urlencode(self.ids(r)), conn=conn)
            self.assertEqual(reply.status, 405)
            self.assertEqual(reply.json()["failures"][0]["reason"], "METHOD:NOT_ALLOWED")
            # no Content-Type is accepted; a second upload replaces the first
            self.assertEqual(self.upload(r, b"a" * 2000, {"Content-Type": ""}, conn=conn)
                             ["request"]["filesize"], "1.95 Kb")
            body = self.upload(r, b"b" * 500, conn=conn)
            self.assertEqual(body["request"]["filesize"], "500.00 b")
            self.assertEqual(len(os.listdir(self.sim.upload_dir())), 1)
            self.assertEqual(self.sim_request(r)["sim"]["upload_sha256"],
                             hashlib.sha256(b"b" * 500).hexdigest())
            # no uploads once processing started
            self.api("process", self.ids(r), conn=conn)
            body = self.upload(r, b"c" * 10, conn=conn)
            self.assertEqual(body["failures"], [{
                "reason": "STATE:INVALID", "value": "pending", "expected": ["draft"],
                "message": f'Request {r["id"]} is in state "pending"; upload needs "draft"'}])
            self.assertEqual(body["request"]["state"], "pending")
            self.assertEqual(self.sim_request(r)["sim"]["upload_bytes"], 500)
        finally:
            conn.close()

    def test_upload_guesses_the_dump_kind(self):
        cases = [
            (custom_dump_head(), ["pgdmp_custom", "sql"], "15"),
            (custom_dump_head("9.4.26"), ["pgdmp_custom", "sql"], "9.4"),
            (b"--\n-- PostgreSQL database dump\n--\n\n"
             b"-- Dumped from database version 9.4.26\n", ["sql"], "9.4"),
            (b"PK\x03\x04" + bytes(100), ["zip", "sql"], None),
            (gzip.compress(b"select 1;"), ["gzip", "sql"], None),
            (b"\x00\x01 whatever", ["sql"], None),
        ]
        for data, compressions, version in cases:
            r = self.create()
            up = self.upload(r, data)["request"]
            self.assertEqual((up["compressions"], up["postgresql"]),
                             (compressions, version), data[:20])
        self.assertEqual(odoo.custom_dump_version(REAL_CUSTOM_HEAD),
                         "15.20 (Debian 15.20-0+deb12u1)")
        self.assertEqual(REAL_CUSTOM_HEAD, custom_dump_head()[:len(REAL_CUSTOM_HEAD)])

    def test_human_sizes(self):
        self.assertEqual(odoo.human_size(934_902), "912.99 Kb")
        self.assertEqual(odoo.human_size(1), "1.00 b")
        self.assertEqual(odoo.human_size(1023), "1023.00 b")
        self.assertEqual(odoo.human_size(1024), "1.00 Kb")
        self.assertEqual(odoo.human_size(200 * MiB), "200.00 Mb")
        self.assertEqual(odoo.human_size(3 << 30), "3.00 Gb")
        self.assertEqual(odoo.human_size(5 << 40), "5.00 Tb")

    def test_chunked_upload_and_bad_chunks(self):
        r = self.create()
        blocks, sha = generated(5 * MiB + 123, chunk=65536)
        body = self.upload(r, blocks(), chunked=True)
        self.assertEqual(body["failures"], [])
        self.assertEqual(self.sim_request(r)["sim"]["upload_sha256"], sha)
        # chunk extensions and trailers are allowed
        target = "/database/v1/upload?" + urlencode(self.ids(r))
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n"
                      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n".encode())
            self.assertIn(b"HTTP/1.1 200", s.recv(100))
        self.assertEqual(self.sim_request(r)["sim"]["upload_sha256"],
                         hashlib.sha256(b"hello world").hexdigest())
        # a bad chunk size: 400, connection closed, nothing stored
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n"
                      "5\r\nhello\r\nzz\r\n".encode())
            answer = b""
            while True:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer[:100])
        self.assertEqual(json.loads(answer.split(b"\r\n\r\n", 1)[1])["failures"][0]["reason"],
                         "BODY:INVALID")
        self.assertEqual(self.sim_request(r)["sim"]["upload_sha256"],
                         hashlib.sha256(b"hello world").hexdigest())
        self.assertEqual(len(os.listdir(self.sim.upload_dir())), 1)

    def test_client_aborts_mid_upload(self):
        r = self.create()
        target = "/database/v1/upload?" + urlencode(self.ids(r))
        with socket.create_connection(("127.0.0.1", self.sim.port), timeout=10) as s:
            s.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n".encode() + bytes(3 * MiB))
            deadline = time.monotonic() + 5  # the partial upload is on disk
            while not os.listdir(self.sim.upload_dir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(len(os.listdir(self.sim.upload_dir())), 1)
        deadline = time.monotonic() + 5
        while os.listdir(self.sim.upload_dir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(os.listdir(self.sim.upload_dir()), [])  # the partial file is gone
        self.assertIsNone(self.status(r)["request"]["filesize"])
        self.assertEqual(self.call("GET", "/_sim/health").status, 200)

    def test_large_upload_is_streamed(self):
        """200 MB generated on the fly, with Content-Length and chunked; back
        through the download, hashed on the fly; the simulator's peak RSS stays
        far below the size."""
        total = 200 * 1000 * 1000
        blocks, sha = generated(total)
        r = self.create()
        started = time.monotonic()
        body = self.upload(r, blocks(), length=total)
        up_seconds = time.monotonic() - started
        self.assertEqual(body["failures"], [])
        self.assertEqual(body["request"]["filesize"], "190.73 Mb")
        self.assertEqual(self.sim_request(r)["sim"]["upload_sha256"], sha)
        self.assertEqual(os.path.getsize(os.path.join(
            self.sim.upload_dir(), os.listdir(self.sim.upload_dir())[0])), total)
        r2 = self.create()
        self.assertEqual(self.upload(r2, blocks(), chunked=True)["failures"], [])
        self.assertEqual(self.sim_request(r2)["sim"]["upload_sha256"], sha)
        # download it back
        self.api("process", self.ids(r))
        for _ in range(3):
            s = self.status(r)["request"]
        self.assertEqual(s["state"], "done")
        conn = self.connect(timeout=120)
        try:
            started = time.monotonic()
            conn.request("GET", self.local(s["original_dump_url"]))
            resp = conn.getresponse()
            self.assertEqual(int(resp.getheader("Content-Length")), total)
            digest, n = hashlib.sha256(), 0
            while True:
                data = resp.read(MiB)
                if not data:
                    break
                digest.update(data)
                n += len(data)
            down_seconds = time.monotonic() - started
        finally:
            conn.close()
        self.assertEqual((n, digest.hexdigest()), (total, sha))
        peak = self.sim.status_mb("VmHWM")
        self.assertLess(peak, 120, f"peak RSS {peak:.0f} MB")
        print(f"\n  200 MB: upload {total / up_seconds / 1e6:.0f} MB/s, download "
              f"{total / down_seconds / 1e6:.0f} MB/s (http.client), sim peak RSS "
              f"{peak:.0f} MB", file=sys.stderr, end=" ")

    # -- process / state machine --

    def test_process_rules(self):
        r = self.create()
        body = self.api("process", self.ids(r), via="query")
        self.assertEqual(body["failures"], [{
            "reason": "UPLOAD:MISSING",
            "message": f"No database dump uploaded for request {r['id']}; "
                       "upload one before asking to process it"}])
        self.assertEqual(body["request"]["state"], "draft")
        self.assertEqual(self.api("process", {"key": r["key"]})["failures"],
                         [{"reason": "PARAM:MISSING", "param": "request",
                           "message": 'Missing required parameter "request"'}])
        self.assertEqual(self.api("process", dict(self.ids(r), key="nope"), status=403)
                         ["failures"][0]["reason"], "KEY:INVALID")
        self.assertEqual(self.api("process", dict(self.ids(r), request="77"), status=404)
                         ["failures"][0]["reason"], "REQUEST:NOT_FOUND")
        self.upload(r, b"dump")
        self.assertEqual(self.api("process", self.ids(r))["request"]["state"], "pending")
        body = self.api("process", self.ids(r))
        self.assertEqual(body["failures"][0]["reason"], "STATE:INVALID")
        self.assertEqual(body["failures"][0]["value"], "pending")
        self.assertEqual(body["request"]["state"], "pending")

    def test_polls_per_state(self):
        self.assertEqual(self.sim_json("GET", "/_sim/odoo/config"),
                         {"polls": {"pending": 1, "progress": 1}})
        self.assertEqual(self.sim_json("POST", "/_sim/odoo/config?polls=3&polls_progress=2"),
                         {"polls": {"pending": 3, "progress": 2}})
        r = self.create()
        self.upload(r, b"dump")
        self.api("process", self.ids(r))
        states = [(s["state"], s["elapsed"]) for s in
                  (self.status(r)["request"] for _ in range(7))]
        self.assertEqual(states, [("pending", "00:00")] * 3 +
                         [("progress", "00:01"), ("progress", "00:02")] +
                         [("done", "00:02")] * 2)
        # 0 polls skip the state: done on the first status call
        self.sim_json("POST", "/_sim/odoo/config?polls=0")
        r = self.create()
        self.upload(r, b"dump")
        self.api("process", self.ids(r))
        s = self.status(r)["request"]
        self.assertEqual((s["state"], s["elapsed"]), ("done", "00:00"))
        self.assertIsNotNone(s["processed_at"])
        self.sim_json("POST", "/_sim/odoo/config?polls=-1", status=400)
        self.sim_json("POST", "/_sim/odoo/config?polls_pending=x", status=400)
        self.call("POST", "/_sim/reset")
        self.assertEqual(self.sim_json("GET", "/_sim/odoo/config"),
                         {"polls": {"pending": 1, "progress": 1}})

    def test_marked_requests_fail(self):
        for changes in ({"filename": "prod-FAIL.dump"}, {"contract": "M123456-failing"}):
            s = self.done_request(**changes)
            self.assertEqual((s["state"], s["issue_stage"]), ("failed", "failed"), changes)
            self.assertIn("failed", s["customer_message"])
            self.assertIsNotNone(s["processed_at"])
            reply = self.get(s["upgraded_dump_url"])
            self.assertEqual(reply.status, 404)
            self.assertEqual(reply.json()["failures"][0]["value"], "failed")
            self.assertEqual(self.status(s)["request"]["state"], "failed")  # final
        r = self.create()
        marked = self.sim_json("POST", f"/_sim/odoo/fail?request={r['id']}&message=Boom")
        self.assertTrue(marked["request"]["sim"]["fail"])
        self.upload(r, b"x")
        self.api("process", self.ids(r))
        for _ in range(3):
            s = self.status(r)["request"]
        self.assertEqual((s["state"], s["customer_message"]), ("failed", "Boom"))

    def test_forced_states(self):
        r = self.create()
        base = f"/_sim/odoo/state?request={r['id']}"
        for state in ("pending", "progress", "done"):
            self.sim_json("POST", f"{base}&state={state}", status=409)  # no upload yet
        self.sim_json("POST", f"{base}&state=bogus", status=400)
        self.sim_json("POST", "/_sim/odoo/state?request=1&state=done", status=404)
        s = self.sim_json("POST", f"{base}&state=cancelled&message=Stopped%20by%20support")
        self.assertEqual((s["request"]["state"], s["request"]["customer_message"]),
                         ("cancelled", "Stopped by support"))
        s = self.status(r)["request"]
        self.assertEqual((s["state"], s["issue_stage"]), ("cancelled", "cancelled"))
        self.assertEqual(self.api("process", self.ids(r))["failures"][0]["reason"],
                         "STATE:INVALID")
        self.assertEqual(self.upload(r, b"x")["failures"][0]["reason"], "STATE:INVALID")
        self.assertEqual(self.get(r["upgraded_dump_url"]).status, 404)
        # back to draft, upload, then straight to done
        self.sim_json("POST", f"{base}&state=draft")
        self.upload(r, b"forced")
        s = self.sim_json("POST", f"{base}&state=done")["request"]
        self.assertEqual(s["state"], "done")
        self.assertEqual(s["database_version"], "16.0")
        self.assertIsNotNone(s["processed_at"])
        self.assertTrue(self.get(r["upgraded_dump_url"]).body.endswith(b"\nforced"))
        s = self.sim_json("POST", f"{base}&state=progress")["request"]
        self.assertEqual(self.status(r)["request"]["state"], "progress")
        self.assertEqual(self.status(r)["request"]["state"], "done")

    def test_requests_listing_does_not_advance(self):
        r = self.create()
        self.upload(r, b"x")
        self.api("process", self.ids(r))
        for _ in range(3):
            rows = self.sim_json("GET", "/_sim/odoo/requests")["requests"]
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["state"], "pending")
        self.assertEqual(list(rows[0])[:-1], SEED_KEYS)
        self.assertEqual(rows[0]["sim"], {
            "upload_bytes": 1, "upload_sha256": hashlib.sha256(b"x").hexdigest(),
            "sparse_bytes": 0, "polls": 0, "fail": False, "downloads": 0})
        self.assertEqual(self.sim_json("GET", "/_sim/odoo/requests?request=5"),
                         {"requests": []})

    # -- downloads --

    def test_ranges(self):
        data = pattern(10_000, seed=3)
        s = self.done_request(data)
        url = s["original_dump_url"]
        for header, start, end in (("bytes=0-99", 0, 99), ("bytes=9990-", 9990, 9999),
                                   ("bytes=-10", 9990, 9999), ("bytes=5000-99999", 5000, 9999)):
            reply = self.get(url, {"Range": header})
            self.assertEqual(reply.status, 206, header)
            self.assertEqual(reply.header("Content-Range"), f"bytes {start}-{end}/10000")
            self.assertEqual(reply.body, data[start:end + 1], header)
        reply = self.get(url, {"Range": "bytes=10000-"})
        self.assertEqual(reply.status, 416)
        self.assertEqual(reply.header("Content-Range"), "bytes */10000")
        self.assertEqual(reply.json()["failures"][0]["reason"], "RANGE:INVALID")
        for ignored in ("bytes=0-1,5-6", "lines=1-2", "bytes=9-3"):
            self.assertEqual(self.get(url, {"Range": ignored}).body, data, ignored)
        # ranges over the header line of the upgraded dump
        full = self.get(s["upgraded_dump_url"]).body
        reply = self.get(s["upgraded_dump_url"], {"Range": "bytes=10-20000"})
        self.assertEqual(reply.body, full[10:])

    def test_sparse_downloads(self):
        block = odoo.sparse_block()
        self.assertEqual(len(block), MiB)
        s = self.done_request(b"tiny", filename="bench.sparse-3M")
        reply = self.get(s["upgraded_dump_url"])
        self.assertEqual(len(reply.body), 3 * MiB)
        self.assertEqual(reply.body, block * 3)
        self.assertEqual(self.get(s["original_dump_url"]).body, b"tiny")
        reply = self.get(s["upgraded_dump_url"], {"Range": "bytes=1048570-1048585"})
        self.assertEqual(reply.body, (block * 2)[1048570:1048586])
        self.assertEqual(self.sim_request(s)["sim"]["sparse_bytes"], 3 * MiB)
        # through the control endpoint; size 0 turns it off
        r = self.done_request(b"plain")
        self.sim_json("POST", f"/_sim/odoo/sparse?request={r['id']}&size=1500K", status=200)
        self.assertEqual(self.get(r["upgraded_dump_url"]).body, (block * 2)[:1500 * 1024])
        self.sim_json("POST", f"/_sim/odoo/sparse?request={r['id']}&size=0")
        self.assertTrue(self.get(r["upgraded_dump_url"]).body.endswith(b"\nplain"))
        self.sim_json("POST", f"/_sim/odoo/sparse?request={r['id']}&size=2X", status=400)
        # 1 GiB, read and counted, not stored anywhere
        s = self.done_request(b"x", filename="big.sparse-1G")
        conn = self.connect(timeout=120)
        try:
            conn.request("GET", self.local(s["upgraded_dump_url"]))
            resp = conn.getresponse()
            self.assertEqual(int(resp.getheader("Content-Length")), 1 << 30)
            n = 0
            first = resp.read(MiB)
            self.assertEqual(first, block)
            n = len(first)
            while True:
                data = resp.read(4 * MiB)
                if not data:
                    break
                n += len(data)
                last = data
        finally:
            conn.close()
        self.assertEqual(n, 1 << 30)
        self.assertEqual(last[-MiB:], block)
        self.assertEqual(len(os.listdir(self.sim.upload_dir())), 3)  # the 3 tiny uploads
        self.assertLess(self.sim.status_mb("VmHWM"), 120)

    def test_download_paths(self):
        s = self.done_request()
        prefix = f"/database/eu1/{s['id']}/{s['key']}"
        self.assertEqual(self.call("GET", f"{prefix}/upgraded/other").status, 404)
        self.assertEqual(self.call("GET", f"/database/eu1/{s['id']}/wrong/upgraded/archive")
                         .status, 403)
        self.assertEqual(self.call("GET", f"/database/eu1/999/{s['key']}/upgraded/archive")
                         .status, 404)
        reply = self.call("POST", f"{prefix}/upgraded/archive")
        self.assertEqual((reply.status, reply.header("Allow")), (405, "GET"))
        # a percent-encoded key works too
        key = s["key"].replace("=", "%3D")
        self.assertEqual(self.call("GET", f"/database/eu1/{s['id']}/{key}/upgraded/archive")
                         .status, 200)
        for path in ("/database/v1/nope", "/database/v2/create", "/database/"):
            reply = self.call("GET", path)
            self.assertEqual(reply.status, 404, path)
            self.assertEqual(reply.json()["failures"][0]["reason"], "PATH:NOT_FOUND")
        reply = self.call("DELETE", "/database/v1/create")
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.header("Allow"), "GET, POST")

    def test_keep_alive_through_the_flow(self):
        conn = self.connect()
        try:
            body = self.api("create", GOOD, conn=conn)
            r = body["request"]
            self.upload(r, b"abc" * 1000, conn=conn)
            self.api("process", self.ids(r), conn=conn)
            for _ in range(3):
                s = self.api("status", self.ids(r), conn=conn)["request"]
            reply = self.call("GET", self.local(s["upgraded_dump_url"]), conn=conn)
            self.assertTrue(reply.body.endswith(b"abc" * 1000))
            self.assertEqual(self.api("status", self.ids(r), conn=conn)["request"]["state"],
                             "done")
        finally:
            conn.close()
        stats = self.sim_json("GET", "/_sim/stats")
        self.assertEqual(stats["api_connections"], 1)
        self.assertEqual(stats["by_path"]["/database/v1/status"], 4)

    # -- request_sftp_access --

    def test_request_sftp_access(self):
        r = self.create()
        keys = f"# my keys\n\n{SSH_KEY}\necdsa-sha2-nistp256 AAAAE2VjZHNh= other\n"
        body = self.api("request_sftp_access", dict(self.ids(r), ssh_keys=keys))
        self.assertEqual(body, {"failures": [], "request": {
            "hostname": "127.0.0.1", "sftp_port": 2200, "sftp_user": f"user_{r['id']}",
            "shared_file": "db_name.dump", "request_id": r["id"],
            "sample_command": f"sftp -P 2200 user_{r['id']}@127.0.0.1"}})
        # as curl -F ssh_keys=@file sends it (multipart file), ids in the query
        boundary = "b0undary"
        form = (f'--{boundary}\r\nContent-Disposition: form-data; name="ssh_keys"; '
                f'filename="authorized_keys"\r\nContent-Type: text/plain\r\n\r\n'
                f'{SSH_KEY}\n\r\n--{boundary}--\r\n').encode()
        reply = self.call("POST", "/database/v1/request_sftp_access?" + urlencode(self.ids(r)),
                          form, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        self.assertEqual(reply.json()["failures"], [])
        body = self.api("request_sftp_access", self.ids(r))
        self.assertEqual(body["failures"], [{"reason": "PARAM:MISSING", "param": "ssh_keys",
                                             "message": 'Missing required parameter "ssh_keys"'}])
        body = self.api("request_sftp_access", dict(self.ids(r), ssh_keys="not a key\n"))
        self.assertEqual(body["failures"], [{"reason": "SSH_KEYS:INVALID",
                                             "message": "Not a list of ssh public keys",
                                             "value": "not a key"}])
        self.assertEqual(self.api("request_sftp_access", dict(self.ids(r), key="k",
                                                              ssh_keys=SSH_KEY), status=403)
                         ["failures"][0]["reason"], "KEY:INVALID")
        self.upload(r, b"x")
        self.api("process", self.ids(r))
        body = self.api("request_sftp_access", dict(self.ids(r), ssh_keys=SSH_KEY))
        self.assertEqual(body["failures"][0]["reason"], "STATE:INVALID")
        self.assertEqual(body["failures"][0]["expected"], ["draft", "done"])
        for _ in range(3):
            self.status(r)
        body = self.api("request_sftp_access", dict(self.ids(r), ssh_keys=SSH_KEY))
        self.assertEqual(body["request"]["shared_file"], "upgraded_db_name.dump")

    # -- faults --

    def arm(self, query, status=200):
        return self.sim_json("POST", "/_sim/fault?" + query, status=status)

    def test_status_fault_keyed_by_path(self):
        s = self.create()
        self.upload(s, b"x")
        self.api("process", self.ids(s))
        armed = self.arm("path=/database/v1/status&mode=status&status=503&count=2")
        self.assertEqual(armed, {"armed": {"path": "/database/v1/status", "mode": "status",
                                           "status": 503, "seconds": 60.0, "count": 2}})
        for _ in range(2):
            body = self.status(s, status=503)
            self.assertEqual(body, {"failures": [{"reason": "SIM:FAULT",
                                                  "message": "Simulated error 503"}]})
        # the faulted calls did not count as polls
        self.assertEqual(self.status(s)["request"]["state"], "pending")
        self.assertEqual(self.status(s)["request"]["state"], "progress")
        # other paths and Flexi companies are untouched
        self.arm("path=/database/v1/process&mode=status&status=500")
        self.assertEqual(self.create()["id"], s["id"] + 1)
        self.arm("company=demo&mode=status&status=502")
        self.assertEqual(self.status(s)["request"]["state"], "done")
        self.assertEqual(self.api("process", self.ids(s), status=500)["failures"][0]
                         ["reason"], "SIM:FAULT")

    def test_fault_modes(self):
        r = self.create()
        self.arm("path=/database/v1/create&mode=malformed")
        reply = self.call("GET", "/database/v1/create?" + urlencode(GOOD))
        self.assertEqual(reply.status, 200)
        self.assertRaises(ValueError, json.loads, reply.body)
        self.arm("path=/database/v1/status&mode=truncated-json")
        reply = self.call("GET", "/database/v1/status?" + urlencode(self.ids(r)))
        self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
        self.assertRaises(ValueError, json.loads, reply.body)
        self.arm("path=/database/v1/status&mode=truncated")
        self.assertRaises(http.client.IncompleteRead, self.status, r)
        self.arm("path=/database/v1/status&mode=reset")
        self.assertRaises(ConnectionResetError, self.status, r)
        self.arm("path=/database/v1/status&mode=slow&seconds=0.3")
        started = time.monotonic()
        self.assertEqual(self.status(r)["request"]["state"], "draft")
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        self.assertEqual(self.status(r)["request"]["state"], "draft")
        # only Flexi has lowversion; bad arguments
        self.arm("path=/database/v1/status&mode=lowversion", status=400)
        self.arm("path=database/v1/status", status=400)
        self.arm("path=/x&company=demo", status=400)

    def test_upload_faults(self):
        r = self.create()
        # status: the body is read and thrown away; keep-alive survives
        self.arm("path=/database/v1/upload&mode=status&status=507")
        conn = self.connect()
        try:
            body = self.upload(r, bytes(2 * MiB), status=507, conn=conn)
            self.assertEqual(body["failures"][0]["reason"], "SIM:FAULT")
            self.assertIsNone(self.api("status", self.ids(r), conn=conn)["request"]["filesize"])
        finally:
            conn.close()
        # reset: the connection dies, nothing stored
        self.arm("path=/database/v1/upload&mode=reset")
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            self.upload(r, b"y" * 1000)
        self.assertEqual(os.listdir(self.sim.upload_dir()), [])
        # slow then fine
        self.arm("path=/database/v1/upload&mode=slow&seconds=0.2")
        started = time.monotonic()
        self.assertEqual(self.upload(r, b"z" * 1000)["request"]["filesize"], "1000.00 b")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)

    def test_download_faults(self):
        s = self.done_request(pattern(3 * MiB))
        path = self.local(s["upgraded_dump_url"])
        self.arm(f"path={path}&mode=truncated")
        conn = self.connect()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertRaises(http.client.IncompleteRead, resp.read)
        finally:
            conn.close()
        # "/*" arms every path below it; the most specific armed scope wins
        self.arm("path=/database/eu1/*&mode=status&status=503&count=2")
        self.arm(f"path={path}&mode=status&status=500")
        self.assertEqual(self.get(s["upgraded_dump_url"]).status, 500)
        self.assertEqual(self.get(s["original_dump_url"]).status, 503)
        self.assertEqual(self.get(s["upgraded_dump_url"]).status, 503)
        reply = self.get(s["upgraded_dump_url"])
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.body.endswith(pattern(3 * MiB)))
        self.arm("path=/database/eu1/*&mode=truncated-json")
        reply = self.get(s["upgraded_dump_url"])
        self.assertEqual(len(reply.body), int(reply.header("Content-Length")))
        self.assertEqual(len(reply.body), (len(pattern(3 * MiB)) + reply.body.index(b"\n") + 1) // 2)
        self.arm("path=/database/*&mode=reset")
        self.assertRaises(ConnectionResetError, self.get, s["modules_url"])
        self.assertEqual(self.get(s["modules_url"]).status, 200)
        self.call("POST", "/_sim/reset")
        self.assertEqual(self.get(s["modules_url"]).status, 404)  # request gone

    def test_reset_clears_requests_and_files(self):
        r = self.done_request(b"abc")
        self.arm("path=/database/v1/create&mode=status")
        self.assertEqual(len(os.listdir(self.sim.upload_dir())), 1)
        self.call("POST", "/_sim/reset")
        self.assertEqual(os.listdir(self.sim.upload_dir()), [])
        self.assertEqual(self.status(r, status=404)["failures"][0]["reason"],
                         "REQUEST:NOT_FOUND")
        self.assertEqual(self.create()["id"], 10534)  # armed fault gone too

    def test_flexi_untouched(self):
        reply = self.call("GET", "/c/demo/changes.json")
        self.assertEqual(reply.status, 401)  # still needs Flexi auth


class OdooTLSTest(OdooTestBase):
    """The API over the TLS listener: URLs name https and its port."""
    scheme = "https"

    @classmethod
    def setUpClass(cls):
        cls.certs_dir = tempfile.TemporaryDirectory(prefix="dbsync-odoo-certs-")
        try:
            cls.certs = make_certs(cls.certs_dir.name)
            port_file = os.path.join(cls.certs_dir.name, "tls.port")
            cls.sim = OdooSim("--tls-cert", cls.certs["server.pem"], "--tls-key",
                              cls.certs["server.key"], "--tls-port-file", port_file)
            with open(port_file) as f:
                cls.tls_port = int(f.read())
        except BaseException:
            cls.certs_dir.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.sim.stop()
        output = cls.sim.output()
        cls.sim.dir.cleanup()
        cls.certs_dir.cleanup()
        assert code == 0 and output == b"", (code, output[-2000:])

    def connect(self, timeout=30):
        return http.client.HTTPSConnection(
            "127.0.0.1", self.tls_port, timeout=timeout,
            context=ssl.create_default_context(cafile=self.certs["ca.pem"]))

    def url_port(self):
        return self.tls_port

    def test_flow_over_tls(self):
        r = self.create()
        self.assertTrue(r["upgraded_dump_url"].startswith(
            f"https://127.0.0.1:{self.tls_port}/database/eu1/"))
        blocks, sha = generated(20 * MiB + 7, chunk=256 * 1024, seed=5)
        self.assertEqual(self.upload(r, blocks(), chunked=True)["failures"], [])
        self.api("process", self.ids(r))
        for _ in range(3):
            s = self.status(r)["request"]
        self.assertEqual(s["state"], "done")
        reply = self.get(s["upgraded_dump_url"])
        head = reply.body[:reply.body.index(b"\n") + 1]
        self.assertIn(sha.encode(), head)
        self.assertEqual(hashlib.sha256(reply.body[len(head):]).hexdigest(), sha)
        reply = self.get(s["original_dump_url"], {"Range": "bytes=-5"})
        self.assertEqual(reply.status, 206)
        self.assertEqual(len(reply.body), 5)
        # the plain listener names its own scheme and port
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=10)
        try:
            conn.request("GET", "/database/v1/status?" + urlencode(self.ids(r)))
            plain = json.loads(conn.getresponse().read())["request"]
        finally:
            conn.close()
        self.assertEqual(plain["status_url"], f"http://127.0.0.1:{self.sim.port}"
                         f"/database/eu1/{r['id']}/{r['key']}/status")


if __name__ == "__main__":
    unittest.main()
