"""Shared helpers of the simulator self-tests (test_odoo.py, test_octoplant.py):
SimProcess starts dbsync_sim.py as a subprocess on a free port, Reply is one
HTTP answer read whole. Not a test module itself (no test_ prefix).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "dbsync_sim.py")


class SimProcess:
    """A simulator subprocess in its own temp dir (stdout and stderr kept).

    Command line: --port 0 --port-file <dir>/port, then arguments(), then the
    extra arguments given here. Subclasses set prefix and arguments()."""

    prefix = "dbsync-sim-test-"

    def __init__(self, *extra):
        self.dir = tempfile.TemporaryDirectory(prefix=self.prefix)
        self.port_file = os.path.join(self.dir.name, "port")
        self.out_path = os.path.join(self.dir.name, "out")
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, SCRIPT, "--port", "0", "--port-file",
                 self.port_file, *self.arguments(), *extra],
                stdout=out, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while not os.path.exists(self.port_file):
            if time.monotonic() - started > 5 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("simulator did not start")
            time.sleep(0.01)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def arguments(self):
        """The subclass's own arguments (may use self.dir)."""
        return []

    def output(self):
        with open(self.out_path, "rb") as f:
            return f.read()

    def status_mb(self, field):
        """A /proc/<pid>/status field given in kB (VmHWM, VmRSS...) in MB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return None

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Reply:
    """One HTTP answer: status, the response (for headers) and its body."""

    def __init__(self, resp, body):
        self.status = resp.status
        self.resp = resp
        self.body = body

    def header(self, name):
        return self.resp.getheader(name)

    def json(self):
        return json.loads(self.body)


class HttpCalls:
    """Mixin of the test bases: call() over self.connect() (a new
    connection per call unless one is given), the reply read whole."""

    def call(self, method, path, body=None, headers=None, conn=None):
        own = conn is None
        conn = conn or self.connect()
        if method in ("POST", "PUT") and body is None:
            body = b""
        try:
            conn.request(method, path, body, dict(headers or {}))
            resp = conn.getresponse()
            return Reply(resp, resp.read())
        finally:
            if own:
                conn.close()
