"""The sessions client against a real ``warden serve``.

The server binary comes from ``WARDEN_BIN`` (scripts/test builds it and sets
it). Without it the tests are skipped, saying so loudly, unless
``WARDEN_REQUIRE_SDK_SERVER=1`` (set by scripts/test), which makes the
absence a failure. The server needs root (the jail).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from warden_sdk.sessions import Client, WardenError  # noqa: E402

BIN = os.environ.get("WARDEN_BIN", "")
REASON = (
    "WARDEN_BIN is not set to a built `warden` binary: the sessions client "
    "is NOT tested (scripts/test sets it; or `cargo build -p warden-cli` and "
    "WARDEN_BIN=target/debug/warden)"
)
if not (BIN and os.access(BIN, os.X_OK)):
    if os.environ.get("WARDEN_REQUIRE_SDK_SERVER") == "1":
        raise RuntimeError(REASON)
    sys.stderr.write(f"\n*** SKIPPED: {REASON} ***\n")


def _post(base, path, key, body):
    req = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@unittest.skipUnless(BIN and os.access(BIN, os.X_OK), REASON)
class Sessions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.TemporaryDirectory()
        env = dict(os.environ, WARDEN_LOG="warn")
        env.pop("WARDEN_DATABASE_URL", None)
        cls.server = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", cls.data.name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        admin, base = None, None
        for line in cls.server.stdout:
            if line.strip().startswith("wk_"):
                admin = line.strip()
            if line.startswith("warden: listening on "):
                base = line.split()[3]
                break
        if not (admin and base):
            cls.server.kill()
            raise RuntimeError("warden serve did not start (is this root?)")
        # Keep reading so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in cls.server.stdout], daemon=True).start()
        _post(base, "/v1/apps", admin, {"id": "shop"})
        key = _post(base, "/v1/keys", admin, {"name": "shop", "role": "app", "app": "shop"})["secret"]
        cls.client = Client(base, key)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(60)
        cls.data.cleanup()

    def test_code_runs_in_each_mode_and_a_stateful_session_keeps_its_variables(self):
        with self.client.create_session(env={"GREETING": "hi"}, resources={"memory_mb": 256},
                                        stateful=True) as s:
            self.assertEqual(s.record["status"], "running")
            self.assertEqual(s.record["resources"]["memory_mb"], 256)
            s.run("import os\nx = 21")
            r = s.run("x * 2")
            self.assertEqual(r["status"], "success", r)
            self.assertEqual(r["return_value"], 42)
            r = s.run("import os\nprint(os.environ['GREETING'])\nraise SystemExit(3)", mode="script")
            self.assertEqual((r["stdout"], r["exit_code"]), ("hi\n", 3))
            r = s.run("def handler(e):\n    return {'twice': e['n'] * 2}", mode="handler", event={"n": 4})
            self.assertEqual(r["return_value"], {"twice": 8})
            r = s.run("console.log(6 * 7)", language="javascript", mode="script")
            self.assertEqual(r["stdout"], "42\n")
        self.assertEqual(s.record["status"], "terminated")
        s.close()  # twice is fine
        with self.assertRaises(WardenError) as e:
            s.run("print(1)")
        self.assertEqual(e.exception.status, 409)

    def test_output_streams_as_events_and_files_move_both_ways(self):
        with self.client.create_session() as s:
            events = list(s.stream("import sys\nprint('out')\nprint('err', file=sys.stderr)"))
            kinds = [e.kind for e in events]
            self.assertIn("stdout", kinds)
            self.assertIn("stderr", kinds)
            self.assertEqual(kinds[-1], "result")
            self.assertEqual("".join(e.data for e in events if e.kind == "stdout"), "out\n")
            self.assertEqual(events[-1].data["status"], "success")

            entry = s.upload("/workspace/data/in.bin", bytes(range(256)) * 4)
            self.assertEqual(entry["size"], 1024)
            r = s.run("print(len(open('data/in.bin', 'rb').read()))")
            self.assertEqual(r["stdout"], "1024\n")
            self.assertEqual(s.download("data/in.bin"), bytes(range(256)) * 4)
            with tempfile.TemporaryDirectory() as d:
                n = s.download_to("data/in.bin", os.path.join(d, "x"))
                self.assertEqual(n, 1024)
            names = [e["name"] for e in s.list_files("data")]
            self.assertEqual(names, ["in.bin"])
            s.remove("data/in.bin")
            self.assertEqual(s.list_files("data"), [])
            with self.assertRaises(WardenError) as e:
                s.download("data/in.bin")
            self.assertEqual(e.exception.status, 404)
            with self.assertRaises(WardenError) as e:
                s.upload("a/../b", b"x")
            self.assertEqual(e.exception.status, 400)
            self.assertIn("path", str(e.exception))
            self.assertIn(s.id, [x["id"] for x in self.client.list_sessions(status="running")])

    def test_bad_requests_raise_the_servers_problem(self):
        with self.assertRaises(WardenError) as e:
            self.client.create_session(template="no-such-template", resources={"memory_mb": 1})
        self.assertEqual(e.exception.status, 422)
        locations = [x["location"] for x in e.exception.errors]
        self.assertEqual(locations, ["/template"])
        with self.assertRaises(WardenError) as e:
            self.client.session("ses_00000000000000000000000000")
        self.assertEqual(e.exception.status, 404)
        # An install the server refuses (a shell session takes no packages)
        # raises its located problem, and the session runs on.
        with self.client.create_session(template="shell") as s:
            with self.assertRaises(WardenError) as e:
                s.install([{"ecosystem": "pip", "name": "six"}])
            self.assertEqual(e.exception.status, 422)
            self.assertEqual([x["location"] for x in e.exception.errors], ["/packages"])
            self.assertEqual(s.run("echo still", language="shell")["stdout"], "still\n")


if __name__ == "__main__":
    unittest.main()
