"""Self-test of the octoplant Export API part of the simulator (octoplant.py):
python3 -m unittest discover -s test/sim -p 'test_*.py'

Starts dbsync_sim.py as a subprocess and talks to it over real HTTP with
http.client; the CRC-32 helpers are also checked in-process.
"""

import hashlib
import http.client
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import octoplant  # noqa: E402  (CRC helpers, constants)
from simproc import HttpCalls, SimProcess  # noqa: E402

MiB = 1 << 20
PASSWORD = "oct-pw"
GRANT = {"grant_type": "password", "username": "versiondog",
         "password": PASSWORD, "client_id": "public-api",
         "client_secret": "ff99971a-f8c3-4d21-5345-f7cb021b4b54"}
STATE_TYPE = "type.googleapis.com/octoplant.export.v1.ExportState"
META_KEYS = ["@type", "name", "systemId", "licenseSerialNumber", "state",
             "currentSubProcess", "finishedSubProcesses", "openSubProcesses"]
KINDS = ["projectTree", "jobList", "jobResults", "unequalJobResults",
         "userManagement", "componentTypes", "componentLog", "eventLog",
         "adminLog", "standardLibraryManagement",
         "componentsWithStdLibAssignments", "assetState", "usageInformation"]


class OctoplantSim(SimProcess):
    """A simulator subprocess (stdout and stderr kept)."""

    prefix = "dbsync-octoplant-test-"

    def arguments(self):
        return ["--odoo-dir", os.path.join(self.dir.name, "odoo"),
                "--password", PASSWORD]


class OctoplantTestBase(HttpCalls, unittest.TestCase):
    def connect(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.sim.port,
                                          timeout=timeout)

    def grant(self, changes=None, status=200, **fields):
        form = dict(GRANT, **fields)
        for name in changes or ():
            form.pop(name)
        reply = self.call("POST", "/v1/oauth2/token", urlencode(form).encode(),
                          {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(reply.status, status, reply.body[:300])
        self.assertEqual(reply.header("Content-Type"), "application/json")
        return reply.json()

    def token(self):
        return self.grant()["access_token"]

    def api(self, method, path, body=None, status=200, token=None, conn=None,
            headers=None):
        """One authenticated /v1/ call (a fresh token unless given)."""
        if token is None:  # one grant per test (each test has its instance)
            if not hasattr(self, "_token"):
                self._token = self.token()
            token = self._token
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        hdrs.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        reply = self.call(method, path, body, hdrs, conn=conn)
        self.assertEqual(reply.status, status, reply.body[:300])
        return reply

    def error(self, reply, code):
        """The message of a grpc-gateway error reply with this code."""
        self.assertEqual(reply.header("Content-Type"), "application/json")
        body = reply.json()
        self.assertEqual(list(body), ["code", "message", "details"])
        self.assertEqual((body["code"], body["details"]), (code, []))
        self.assertIsInstance(body["message"], str)
        return body["message"]

    def order(self, *kinds, contents=None, conn=None):
        contents = contents or {k: {} for k in kinds or ("projectTree",)}
        op = self.api("POST", "/v1/order", {"exportContents": contents},
                      conn=conn).json()
        self.check_operation(op)
        return op

    def get(self, name, conn=None):
        op = self.api("GET", f"/v1/order/{name}", conn=conn).json()
        self.check_operation(op)
        return op

    def check_operation(self, op):
        meta = op["metadata"]
        self.assertEqual(list(meta), META_KEYS)
        self.assertEqual(meta["@type"], STATE_TYPE)
        self.assertEqual(meta["name"], op["name"])
        self.assertEqual(str(uuid.UUID(op["name"])), op["name"])
        self.assertIsInstance(meta["finishedSubProcesses"], str)
        self.assertIsInstance(meta["openSubProcesses"], str)
        keys = ["name", "metadata", "done"]
        if meta["state"] == "STATE_SUCCEEDED":
            keys.append("response")
            self.assertEqual(op["response"], {
                "@type": "type.googleapis.com/google.protobuf.Empty"})
        elif meta["state"] == "STATE_FAILED":
            keys.append("error")
            self.assertEqual(list(op["error"]), ["code", "message", "details"])
        self.assertEqual(list(op), keys)
        self.assertEqual(op["done"], meta["state"] in ("STATE_SUCCEEDED",
                                                        "STATE_FAILED"))

    def state(self, name):
        return self.get(name)["metadata"]["state"]

    def until_done(self, name, conn=None):
        for _ in range(20):
            op = self.get(name, conn=conn)
            if op["done"]:
                return op
        self.fail(f"order {name} never done")

    def control(self, method, path, status=200):
        reply = self.call(method, "/_sim/octoplant/" + path)
        self.assertEqual(reply.status, status, reply.body[:300])
        return reply.json()

    def sim_order(self, name):
        (row,) = self.control("GET", f"orders?name={name}")
        return row

    def download(self, name, status=200, headers=None):
        return self.api("GET", f"/v1/order/{name}/download", status=status,
                        headers=headers)

    def arm(self, query):
        reply = self.call("POST", "/_sim/fault?" + query)
        self.assertEqual(reply.status, 200, reply.body)


class OctoplantApiTest(OctoplantTestBase):
    @classmethod
    def setUpClass(cls):
        cls.sim = OctoplantSim()

    @classmethod
    def tearDownClass(cls):
        code = cls.sim.stop()
        output = cls.sim.output()
        cls.sim.dir.cleanup()
        assert code == 0, f"simulator exit code {code}"
        assert output == b"", output.decode(errors="replace")[-3000:]

    def setUp(self):
        self.call("POST", "/_sim/reset")

    # -- tokens --

    def test_token_grant_and_failures(self):
        body = self.grant()
        self.assertEqual(list(body), ["access_token", "token_type",
                                      "expires_in", "refresh_token"])
        self.assertRegex(body["access_token"], r"^[A-Za-z0-9_-]{32,}$")
        self.assertRegex(body["refresh_token"], r"^[A-Za-z0-9_-]{32,}$")
        self.assertEqual((body["token_type"], body["expires_in"]), ("Bearer", 3600))
        self.assertNotEqual(self.token(), body["access_token"])
        for fields, status, code, message in (
                ({"grant_type": "client_credentials"}, 400, 3, "grant_type"),
                ({"client_id": "other"}, 401, 16, "invalid client"),
                ({"client_secret": "wrong"}, 401, 16, "invalid client"),
                ({"client_secret": "wrong", "password": "x"}, 401, 16,
                 "invalid client"),
                ({"username": "admin"}, 401, 16, "invalid username or password"),
                ({"password": "secret"}, 401, 16, "invalid username or password")):
            reply = self.call("POST", "/v1/oauth2/token",
                              urlencode(dict(GRANT, **fields)).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(reply.status, status, fields)
            self.assertIn(message, self.error(reply, code))
        reply = self.call("POST", "/v1/oauth2/token",
                          urlencode({k: v for k, v in GRANT.items()
                                     if k != "grant_type"}).encode())
        self.assertEqual(reply.status, 400)
        self.error(reply, 3)
        reply = self.call("GET", "/v1/oauth2/token")
        self.assertEqual((reply.status, reply.header("Allow")), (405, "POST"))
        self.error(reply, 12)
        stats = self.control("GET", "stats")
        self.assertEqual((stats["grants"], stats["grant_failures"]), (2, 7))

    def test_token_required(self):
        reply = self.api("GET", "/v1/order/x", token="", status=401)
        self.assertIn("missing", self.error(reply, 16))
        reply = self.api("POST", "/v1/order", {}, status=401, headers={
            "Authorization": "Basic dmVyc2lvbmRvZzpvY3QtcHc="})
        self.assertIn("missing bearer token", self.error(reply, 16))
        reply = self.api("GET", "/v1/order/x", token="nosuchtoken", status=401)
        self.assertEqual(self.error(reply, 16), "invalid token")
        token = self.token()
        name = self.order("jobList")["name"]
        self.api("GET", f"/v1/order/{name}", token=token)
        self.assertEqual(self.control("POST", "expire_tokens"), {"expired": 2})
        for method, path in (("GET", f"/v1/order/{name}"),
                             ("POST", "/v1/order"),
                             ("POST", f"/v1/order/{name}/cancel"),
                             ("GET", f"/v1/order/{name}/download")):
            reply = self.api(method, path, token=token, status=401)
            self.assertEqual(self.error(reply, 16), "expired token")
        # a new grant works; routing comes before the token check
        del self._token
        self.assertEqual(self.get(name)["metadata"]["state"], "STATE_RUNNING")
        reply = self.api("GET", "/v1/nothing", token="", status=404)
        self.error(reply, 5)
        reply = self.api("DELETE", f"/v1/order/{name}", token="", status=405)
        self.error(reply, 12)
        self.assertEqual(self.control("GET", "stats")["unauthenticated"], 7)

    def test_token_ttl(self):
        self.assertEqual(self.control("POST", "config?token_ttl=1")["token_ttl"], 1)
        body = self.grant()
        self.assertEqual(body["expires_in"], 1)
        token = body["access_token"]
        self.api("GET", "/v1/order/x", token=token)
        time.sleep(1.05)
        reply = self.api("GET", "/v1/order/x", token=token, status=401)
        self.assertEqual(self.error(reply, 16), "expired token")
        self.control("POST", "config?token_ttl=x", status=400)

    # -- orders --

    def test_order_validation(self):
        for body, words in (
                (b"{", "invalid JSON"),
                (b"\xff\xfe", "invalid JSON"),
                (b"[1]", "JSON object"),
                (b"", "exportContents is required"),
                (b"{}", "exportContents is required"),
                (b'{"exportContents": null}', "exportContents is required"),
                (b'{"exportContents": []}', "must be an object"),
                (b'{"exportContents": "projectTree"}', "must be an object"),
                (b'{"exportContents": {}}', "empty"),
                (b'{"exportContents": {"projectTree": {}, "bogus": {}}}',
                 'unknown export kind "bogus"'),
                (b'{"exportContents": {"jobList": 1}}',
                 "exportContents.jobList must be an object"),
                (b'{"exportContents": {"jobList": null}}',
                 "exportContents.jobList must be an object")):
            reply = self.api("POST", "/v1/order", body, status=400)
            self.assertIn(words, self.error(reply, 3), body)
        self.assertEqual(self.control("GET", "orders"), [])
        # every kind; options kept as given; unknown top-level fields ignored
        contents = {k: {} for k in KINDS}
        contents["projectTree"] = {"exportType": "EXPORT_TYPE_JSON",
                                   "flatExport": True}
        reply = self.api("POST", "/v1/order", {"exportContents": contents,
                                               "extra": 1})
        self.assertEqual(reply.header("Content-Type"), "application/json")
        op = reply.json()
        self.check_operation(op)
        self.assertEqual(op["done"], False)
        self.assertEqual(op["metadata"], {
            "@type": STATE_TYPE, "name": op["name"],
            "systemId": op["metadata"]["systemId"],
            "licenseSerialNumber": "SIM-0001", "state": "STATE_PENDING",
            "currentSubProcess": "", "finishedSubProcesses": "0",
            "openSubProcesses": "13"})
        self.assertEqual(uuid.UUID(op["name"]).version, 4)
        uuid.UUID(op["metadata"]["systemId"])
        self.assertEqual(self.sim_order(op["name"])["contents"], contents)
        self.assertNotEqual(self.order()["name"], op["name"])
        reply = self.api("GET", "/v1/order", status=405)
        self.error(reply, 12)

    def test_poll_state_machine(self):
        op = self.order("projectTree", "jobList")
        name = op["name"]
        self.assertEqual(op["metadata"]["openSubProcesses"], "2")
        seen = []
        for _ in range(4):
            op = self.get(name)
            meta = op["metadata"]
            seen.append((meta["state"], meta["currentSubProcess"],
                         meta["finishedSubProcesses"], meta["openSubProcesses"]))
        self.assertEqual(seen, [
            ("STATE_PENDING", "", "0", "2"),
            ("STATE_RUNNING", "projectTree", "0", "2"),
            ("STATE_SUCCEEDED", "", "2", "0"),
            ("STATE_SUCCEEDED", "", "2", "0")])
        row = self.sim_order(name)
        self.assertEqual(row["polls"], 4)
        self.assertEqual((row["state"], row["done"], row["downloads"]),
                         ("STATE_SUCCEEDED", True, 0))
        self.assertLessEqual(row["created"], row["finished"])
        self.assertLessEqual(row["finished"], row["first_seen_done"])
        self.assertLess(time.time() - row["created"], 30)
        self.assertIsNone(row["error"])
        # the listing never advances an order
        name = self.order()["name"]
        for _ in range(3):
            self.assertEqual(self.sim_order(name)["state"], "STATE_PENDING")
        self.assertEqual(self.sim_order(name)["first_seen_done"], None)

    def test_poll_counts(self):
        self.assertEqual(self.control("POST", "config?pending=0&running=0"), {
            "token_ttl": 3600, "pending": 0, "running": 0, "seconds": 0,
            "zip_size": 0, "cut_tail": 0})
        name = self.order()["name"]
        self.assertEqual(self.state(name), "STATE_SUCCEEDED")
        self.control("POST", "config?pending=2&running=3")
        name = self.order("projectTree", "jobList", "eventLog")["name"]
        seen = []
        for _ in range(6):
            meta = self.get(name)["metadata"]
            seen.append((meta["state"], meta["currentSubProcess"],
                         meta["finishedSubProcesses"]))
        self.assertEqual(seen, [
            ("STATE_PENDING", "", "0"), ("STATE_PENDING", "", "0"),
            ("STATE_RUNNING", "projectTree", "0"),
            ("STATE_RUNNING", "jobList", "1"),
            ("STATE_RUNNING", "eventLog", "2"),
            ("STATE_SUCCEEDED", "", "3")])
        self.control("POST", "config?pending=0&running=1")
        name = self.order()["name"]
        self.assertEqual(self.state(name), "STATE_RUNNING")
        self.assertEqual(self.state(name), "STATE_SUCCEEDED")
        self.control("GET", "config?pending=-1", status=400)
        self.control("GET", "config?seconds=abc", status=400)

    def test_time_mode(self):
        seconds = 1.0
        self.assertEqual(self.control("POST", "config?seconds=1")["seconds"], 1)
        name = self.order("projectTree", "jobList")["name"]
        created = self.sim_order(name)["created"]

        def expect(elapsed):  # (state, currentSubProcess) at elapsed seconds
            if elapsed < 0.2 * seconds:
                return ("STATE_PENDING", "")
            if elapsed >= seconds:
                return ("STATE_SUCCEEDED", "")
            share = (elapsed - 0.2 * seconds) / (0.8 * seconds)
            return ("STATE_RUNNING", ["projectTree", "jobList"][int(share * 2)])

        def check_at(elapsed):
            """GET at `elapsed`; compared unless the reply took so long
            that the expected state changed meanwhile."""
            time.sleep(max(0.0, created + elapsed - time.time()))
            before = expect(time.time() - created)
            meta = self.get(name)["metadata"]
            if expect(time.time() - created) == before:
                self.assertEqual((meta["state"], meta["currentSubProcess"]),
                                 before, elapsed)

        for elapsed in (0, 0, 0, 0.3, 0.3, 0.4, 0.7, 0.8):  # GETs do not advance it
            check_at(elapsed)
        time.sleep(max(0.0, created + seconds + 0.05 - time.time()))
        row = self.sim_order(name)  # the listing follows the clock too
        self.assertEqual(row["state"], "STATE_SUCCEEDED")
        self.assertAlmostEqual(row["finished"], created + seconds, places=6)
        self.assertIsNone(row["first_seen_done"])
        self.assertEqual(self.get(name)["done"], True)
        row = self.sim_order(name)
        self.assertGreaterEqual(row["first_seen_done"], created + seconds)
        # failure marks and cancels apply in time mode too
        self.control("POST", "config?seconds=0.3")
        self.control("POST", "fail?count=2&message=late")
        name = self.order()["name"]
        self.api("POST", f"/v1/order/{name}/cancel")
        self.assertEqual(self.get(name)["error"]["code"], 1)
        name = self.order()["name"]
        time.sleep(0.35)
        self.assertEqual(self.get(name)["error"], {"code": 13, "message": "late",
                                                   "details": []})
        self.assertEqual(self.control("POST", "config?seconds=0")["seconds"], 0)

    def test_failing_orders(self):
        marks = self.control("POST", "fail?count=2&code=9&message=disk%20full")
        self.assertEqual(marks, {"fail_next": [
            {"count": 2, "code": 9, "message": "disk full"}]})
        self.control("POST", "fail")  # then one more, with the defaults
        names = [self.order("projectTree", "assetState")["name"] for _ in range(4)]
        errors = [self.until_done(n).get("error") for n in names]
        self.assertEqual(errors[:2], [{"code": 9, "message": "disk full",
                                       "details": []}] * 2)
        self.assertEqual(errors[2]["code"], 13)
        self.assertEqual(errors[2]["message"],
                         "export failed: simulated error while exporting assetState")
        self.assertIsNone(errors[3])
        op = self.get(names[0])
        self.assertEqual((op["metadata"]["state"], op["done"]), ("STATE_FAILED", True))
        self.assertNotIn("response", op)
        reply = self.download(names[0], status=400)
        message = self.error(reply, 9)
        self.assertIn("failed", message)
        self.assertIn(names[0], message)
        # by name; unknown names, done orders, bad codes
        name = self.order()["name"]
        row = self.control("POST", f"fail?name={name}&code=7")["order"]
        self.assertEqual(row["name"], name)
        self.assertEqual(self.until_done(name)["error"]["code"], 7)
        self.control("POST", f"fail?name={name}", status=409)
        self.control("POST", "fail?name=nope", status=404)
        self.control("POST", "fail?code=0", status=400)
        self.control("POST", "fail?code=17", status=400)
        self.control("POST", "fail?count=0", status=400)
        self.control("POST", f"fail?name={name}&count=1", status=400)

    def test_forced_states(self):
        name = self.order()["name"]
        row = self.control("POST", f"state?name={name}&state=STATE_SUCCEEDED")["order"]
        self.assertEqual((row["state"], row["done"]), ("STATE_SUCCEEDED", True))
        self.assertEqual(self.state(name), "STATE_SUCCEEDED")
        self.control("POST", f"state?name={name}&state=STATE_PENDING")
        self.assertEqual(self.sim_order(name)["finished"], None)
        self.assertEqual(self.state(name), "STATE_PENDING")
        self.assertEqual(self.state(name), "STATE_RUNNING")
        row = self.control("POST", f"state?name={name}&state=STATE_FAILED&code=4"
                                   "&message=timeout")["order"]
        self.assertEqual(row["error"], {"code": 4, "message": "timeout", "details": []})
        self.assertEqual(self.get(name)["error"]["message"], "timeout")
        self.control("POST", f"state?name={name}&state=STATE_UNSPECIFIED", status=400)
        self.control("POST", "state?name=nope&state=STATE_PENDING", status=404)

    def test_cancel(self):
        name = self.order("projectTree", "jobList")["name"]
        self.get(name)
        self.assertEqual(self.state(name), "STATE_RUNNING")
        reply = self.api("POST", f"/v1/order/{name}/cancel")
        self.assertEqual(reply.json(), {})
        self.assertEqual(reply.header("Content-Type"), "application/json")
        op = self.get(name)
        self.assertEqual((op["metadata"]["state"], op["done"]), ("STATE_FAILED", True))
        self.assertEqual(op["error"], {"code": 1, "message": "export cancelled",
                                       "details": []})
        self.assertEqual(op["metadata"]["openSubProcesses"], "2")
        self.assertIn("already finished", self.error(
            self.api("POST", f"/v1/order/{name}/cancel", b"{}", status=400), 9))
        pending = self.order()["name"]
        self.api("POST", f"/v1/order/{pending}/cancel", b"{}")
        self.assertEqual(self.state(pending), "STATE_FAILED")
        done = self.order()["name"]
        self.until_done(done)
        self.error(self.api("POST", f"/v1/order/{done}/cancel", status=400), 9)
        self.error(self.api("POST", f"/v1/order/{uuid.uuid4()}/cancel",
                            status=404), 5)
        self.error(self.api("GET", f"/v1/order/{done}/cancel", status=405), 12)
        self.assertEqual(self.control("GET", "stats")["cancels"], 2)

    def test_unknown_name(self):
        for name in (str(uuid.uuid4()), "not-a-uuid", "a b%"):
            reply = self.api("GET", "/v1/order/" + quote(name))
            self.assertEqual(reply.json(), {
                "name": name,
                "metadata": {"@type": STATE_TYPE, "name": "",
                             "state": "STATE_UNSPECIFIED",
                             "finishedSubProcesses": "0",
                             "openSubProcesses": "0"},
                "done": False})
        self.error(self.api("GET", "/v1/order/", status=404), 5)
        self.error(self.api("GET", "/v1/order/x/y", status=404), 5)
        self.assertEqual(self.control("GET", "stats")["status_gets"], 3)

    # -- downloads --

    def test_download_rules_and_archive(self):
        contents = {"projectTree": {"exportType": "EXPORT_TYPE_XML"},
                    "eventLog": {"maxLines": 10}}
        name = self.order(contents=contents)["name"]
        self.assertIn("not finished (STATE_PENDING)",
                      self.error(self.download(name, status=400), 9))
        self.get(name)
        self.get(name)
        self.assertIn("not finished (STATE_RUNNING)",
                      self.error(self.download(name, status=400), 9))
        self.error(self.download(str(uuid.uuid4()), status=404), 5)
        self.error(self.api("POST", f"/v1/order/{name}/download", status=405), 12)
        self.get(name)
        reply = self.download(name)
        self.assertEqual(reply.header("Content-Type"), "application/zip")
        self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
        self.assertEqual(reply.header("Content-Disposition"),
                         f'attachment; filename="export-{name}.zip"')
        with zipfile.ZipFile(io.BytesIO(reply.body)) as z:
            self.assertIsNone(z.testzip())
            self.assertEqual(z.namelist(), ["contents.json", "projectTree.json",
                                            "eventLog.json"])
            self.assertEqual(json.loads(z.read("contents.json")),
                             {"name": name, "exportContents": contents})
            doc = json.loads(z.read("eventLog.json"))
            self.assertEqual((doc["export"], doc["order"], doc["options"]),
                             ("eventLog", name, {"maxLines": 10}))
            for info in z.infolist():
                self.assertEqual(info.compress_type, zipfile.ZIP_STORED)
        self.assertEqual(self.download(name).body, reply.body)
        self.assertEqual(self.sim_order(name)["downloads"], 2)
        self.assertEqual(self.control("GET", "stats")["downloads"], 2)

    def test_cut_tail(self):
        name = self.order("jobList")["name"]
        self.until_done(name)
        whole = self.download(name).body
        self.control("POST", "config?cut_tail=22")
        cut = self.download(name)
        self.assertEqual(cut.status, 200)
        self.assertEqual(int(cut.header("Content-Length")), len(whole) - 22)
        self.assertEqual(cut.body, whole[:-22])
        with self.assertRaises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(cut.body))
        self.control("POST", "config?cut_tail=0")
        self.assertEqual(self.download(name).body, whole)

    def test_zip_sizes(self):
        name = self.order("jobList")["name"]
        self.until_done(name)
        natural = len(self.download(name).body)
        self.assertEqual(self.control("POST", "config?zip_size=5000000")["zip_size"],
                         5000000)
        first = self.download(name).body
        self.assertEqual(len(first), 5000000)
        with zipfile.ZipFile(io.BytesIO(first)) as z:
            self.assertIsNone(z.testzip())
            self.assertEqual(z.namelist(), ["contents.json", "jobList.json",
                                            "payload.bin"])
        self.assertEqual(hashlib.sha256(self.download(name).body).digest(),
                         hashlib.sha256(first).digest())
        if shutil.which("unzip"):
            with tempfile.NamedTemporaryFile(suffix=".zip") as f:
                f.write(first)
                f.flush()
                done = subprocess.run(["unzip", "-tq", f.name],
                                      capture_output=True, text=True)
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        # exact at every size: comment padding below a payload member's
        # overhead, an empty payload.bin at it, the natural size below it
        for size in (natural + 1, natural + 57,
                     natural + octoplant.PAYLOAD_OVERHEAD - 1,
                     natural + octoplant.PAYLOAD_OVERHEAD,
                     natural + octoplant.PAYLOAD_OVERHEAD + 1, natural - 1,
                     3 * MiB + 5):
            self.control("POST", f"config?zip_size={size}")
            body = self.download(name).body
            self.assertEqual(len(body), max(size, natural), size)
            with zipfile.ZipFile(io.BytesIO(body)) as z:
                self.assertIsNone(z.testzip())
                self.assertEqual("payload.bin" in z.namelist(),
                                 size >= natural + octoplant.PAYLOAD_OVERHEAD)
        self.assertEqual(self.control("POST", "config?zip_size=2M")["zip_size"], 2 * MiB)
        self.assertEqual(self.control("POST", "config?zip_size=4294967295")["zip_size"],
                         4294967295)
        self.control("POST", "config?zip_size=4294967296", status=400)
        self.control("POST", "config?zip_size=4G", status=400)
        self.control("POST", "config?zip_size=lots", status=400)

    def test_ranges(self):
        self.control("POST", "config?zip_size=3M")
        name = self.order()["name"]
        self.until_done(name)
        whole = self.download(name).body
        self.assertEqual(len(whole), 3 * MiB)
        for spec, part in (("bytes=100-", whole[100:]),
                           ("bytes=-10", whole[-10:]),
                           ("bytes=5-9", whole[5:10]),
                           (f"bytes={MiB + 3}-{2 * MiB + 7}",
                            whole[MiB + 3:2 * MiB + 8])):
            reply = self.download(name, status=206, headers={"Range": spec})
            self.assertEqual(reply.body, part, spec)
            self.assertEqual(int(reply.header("Content-Length")), len(part))
        reply = self.download(name, status=416,
                              headers={"Range": f"bytes={3 * MiB}-"})
        self.assertEqual(reply.header("Content-Range"), f"bytes */{3 * MiB}")
        self.error(reply, 11)
        self.assertEqual(self.download(name, headers={"Range": "bytes=1-2,5-6"}).body,
                         whole)

    def test_large_download_streams(self):
        size = 256 * MiB
        self.control("POST", f"config?zip_size={size}")
        name = self.order()["name"]
        self.until_done(name)
        before = self.sim.status_mb("VmRSS")
        conn = self.connect(timeout=120)
        try:
            conn.request("GET", f"/v1/order/{name}/download",
                         headers={"Authorization": f"Bearer {self.token()}"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(int(resp.getheader("Content-Length")), size)
            head = resp.read(64 * 1024)
            # the payload member follows the small ones: check its CRC-32
            at = head.index(b"payload.bin") - 30  # its local header
            fields = struct.unpack("<IHHHHHIIIHH", head[at:at + 30])
            self.assertEqual(fields[0], 0x04034B50)
            stored_crc, payload_len = fields[6], fields[7]
            data_at = at + 30 + len(b"payload.bin")
            crc = zlib.crc32(head[data_at:])
            left = payload_len - (len(head) - data_at)
            got = len(head)
            buffer = bytearray(MiB)
            while left > 0:
                n = resp.readinto(memoryview(buffer)[:min(left, MiB)])
                self.assertGreater(n, 0)
                crc = zlib.crc32(memoryview(buffer)[:n], crc)
                left -= n
                got += n
            got += len(resp.read())
        finally:
            conn.close()
        self.assertEqual(got, size)
        self.assertEqual(crc, stored_crc)
        self.assertLess(self.sim.status_mb("VmRSS") - before, 30)

    # -- faults, reset, stats, concurrency --

    def test_path_faults(self):
        name = self.order()["name"]
        token = self.token()
        self.arm("path=/v1/order/*&mode=status&status=503&count=2")
        for _ in range(2):
            reply = self.api("GET", f"/v1/order/{name}", token=token, status=503)
            self.assertEqual(reply.json(), {"code": 14, "message": "Simulated error 503",
                                            "details": []})
        # faulted GETs are no polls
        self.assertEqual(self.state(name), "STATE_PENDING")
        self.assertEqual(self.sim_order(name)["polls"], 1)
        self.arm("path=/v1/oauth2/token&mode=status&status=500")
        self.grant(status=500)
        self.arm("path=/v1/*&mode=malformed")
        reply = self.api("POST", "/v1/order", {"exportContents": {"jobList": {}}},
                         token=token)
        self.assertRaises(ValueError, json.loads, reply.body)
        self.assertEqual(len(self.control("GET", "orders")), 1)
        self.arm(f"path=/v1/order/{name}&mode=reset")
        self.assertRaises(ConnectionResetError, self.get, name)
        self.arm(f"path=/v1/order/{name}&mode=slow&seconds=0.2")
        started = time.monotonic()
        self.assertEqual(self.state(name), "STATE_RUNNING")
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.arm(f"path=/v1/order/{name}&mode=truncated-json")
        reply = self.api("GET", f"/v1/order/{name}", token=token)
        self.assertEqual(int(reply.header("Content-Length")), len(reply.body))
        self.assertRaises(ValueError, json.loads, reply.body)
        # a truncated download announces its length, then breaks off
        self.control("POST", "config?zip_size=3M")
        self.arm(f"path=/v1/order/{name}/download&mode=truncated")
        conn = self.connect()
        try:
            conn.request("GET", f"/v1/order/{name}/download",
                         headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Length"), str(3 * MiB))
            with self.assertRaises(http.client.IncompleteRead) as caught:
                resp.read()
            self.assertEqual(len(caught.exception.partial), 3 * MiB // 2)
        finally:
            conn.close()
        self.assertEqual(len(self.download(name).body), 3 * MiB)

    def test_reset_clears_everything(self):
        token = self.token()
        self.control("POST", "config?pending=0&running=0&zip_size=1M&token_ttl=5")
        self.control("POST", "fail?count=3")
        name = self.order()["name"]
        self.arm("path=/v1/order/*&mode=status")
        self.call("POST", "/_sim/reset")
        self.assertEqual(self.control("GET", "orders"), [])
        self.assertEqual(self.control("GET", "config"), {
            "token_ttl": 3600, "pending": 1, "running": 1, "seconds": 0,
            "zip_size": 0, "cut_tail": 0})
        self.assertEqual(set(self.control("GET", "stats").values()), {0})
        reply = self.api("GET", f"/v1/order/{name}", token=token, status=401)
        self.assertEqual(self.error(reply, 16), "invalid token")
        del self._token
        name = self.order()["name"]  # no failure mark, no fault left
        self.assertFalse(self.until_done(name).get("error"))

    def test_stats(self):
        self.grant(password="x", status=401)
        token = self.token()
        name = self.order()["name"]
        self.order("jobList")
        self.until_done(name)
        self.api("GET", f"/v1/order/{uuid.uuid4()}", token=token)
        self.api("GET", f"/v1/order/{name}/download", token=token)
        self.api("GET", "/v1/order/x", token="bad", status=401)
        self.assertEqual(self.control("GET", "stats"), {
            "grants": 2, "grant_failures": 1, "unauthenticated": 1,
            "status_gets": 4, "orders": 2, "cancels": 0, "downloads": 1})

    def test_concurrent_orders(self):
        token = self.token()
        local = threading.local()
        conns = []

        def one(i):
            if not hasattr(local, "conn"):
                local.conn = self.connect()
                conns.append(local.conn)
            kinds = KINDS[:1 + i % len(KINDS)]
            op = self.api("POST", "/v1/order",
                          {"exportContents": {k: {} for k in kinds}},
                          token=token, conn=local.conn).json()
            for _ in range(10):
                op = self.api("GET", f"/v1/order/{op['name']}", token=token,
                              conn=local.conn).json()
                if op["done"]:
                    break
            return op["name"], op["metadata"]["state"], \
                op["metadata"]["finishedSubProcesses"], len(kinds)

        try:
            with ThreadPoolExecutor(16) as pool:
                results = list(pool.map(one, range(200)))
        finally:
            for conn in conns:
                conn.close()
        self.assertEqual(len({r[0] for r in results}), 200)
        for name, state, finished, n in results:
            self.assertEqual((state, finished), ("STATE_SUCCEEDED", str(n)))
        stats = self.control("GET", "stats")
        self.assertEqual((stats["orders"], stats["status_gets"]), (200, 600))


class OctoplantOptionsTest(OctoplantTestBase):
    @classmethod
    def setUpClass(cls):
        cls.sim = OctoplantSim("--octoplant-user", "alice",
                               "--octoplant-client-secret", "s3cr3t")

    @classmethod
    def tearDownClass(cls):
        code = cls.sim.stop()
        output = cls.sim.output()
        cls.sim.dir.cleanup()
        assert code == 0 and output == b"", output

    def test_user_and_client_secret_options(self):
        self.assertEqual(self.error(self.call(
            "POST", "/v1/oauth2/token", urlencode(GRANT).encode()), 16),
            "invalid client")
        self.grant(client_secret="s3cr3t", status=401)
        self.assertEqual(self.grant(client_secret="s3cr3t", username="alice")
                         ["token_type"], "Bearer")


class CrcTest(unittest.TestCase):
    def test_combine_and_repeat(self):
        a, b = b"hello, ", b"octoplant export"
        self.assertEqual(octoplant.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)),
                         zlib.crc32(a + b))
        self.assertEqual(octoplant.crc32_combine(zlib.crc32(a), 0, 0), zlib.crc32(a))
        block = bytes(range(256)) * 3 + b"xyz"
        for total in (0, 1, 770, 771, 772, 5000, 771 * 64, 771 * 64 + 13, 100003):
            data = (block * (total // len(block) + 1))[:total]
            self.assertEqual(octoplant.crc32_repeat(block, total), zlib.crc32(data),
                             total)


if __name__ == "__main__":
    unittest.main()
