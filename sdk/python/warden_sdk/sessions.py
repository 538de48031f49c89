"""A small client for Warden's sandbox sessions (``/v1/sessions``).

    from warden_sdk.sessions import Client

    client = Client("http://127.0.0.1:8080", api_key)
    with client.create_session(template="python-basic", stateful=True) as s:
        s.run("x = 21")
        print(s.run("x * 2")["return_value"])        # 42
        s.upload("data/in.csv", b"a,b\\n1,2\\n")
        for event in s.stream("print(open('data/in.csv').read())", mode="script"):
            if event.kind == "stdout":
                print(event.data, end="")
        print(s.download("data/in.csv"))
    # the session is terminated when the block ends

Standard library only (``urllib``). A refused call raises :class:`WardenError`
with the server's problem document (``status``, ``detail``, ``errors``).
This module is not added to plugin packages: it talks to a server, from
outside a box.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["Client", "Session", "Event", "WardenError"]


class WardenError(Exception):
    """A call the server refused: its HTTP status and problem document."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem if isinstance(problem, dict) else {}
        self.detail = self.problem.get("detail") or f"the server answered {status}"
        self.errors = self.problem.get("errors") or []
        lines = [self.detail] + [f"  {e.get('location', '')}: {e.get('message', '')}" for e in self.errors]
        super().__init__("\n".join(lines))


class Event:
    """One event of an execution's live output: ``kind`` is ``status``,
    ``stdout``, ``stderr`` or ``result``; ``data`` is the text of an output
    chunk, or the parsed JSON of the others; ``id`` resumes after it."""

    __slots__ = ("kind", "id", "data")

    def __init__(self, kind, id, data):
        self.kind = kind
        self.id = id
        self.data = data

    def __repr__(self):
        return f"Event({self.kind!r}, {self.id!r}, {self.data!r})"


def _quote_path(path):
    """A workspace path (``/workspace/`` may lead) for a URL, name by name."""
    p = path
    if p == "/workspace" or p.startswith("/workspace/"):
        p = p[len("/workspace"):]
    return "/".join(urllib.parse.quote(n, safe="") for n in p.lstrip("/").split("/"))


class Client:
    """A Warden server and an API key (an app's, or an admin's naming ``app``)."""

    def __init__(self, base_url, api_key, timeout=120.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _request(self, method, path, body=None, headers=None, raw=False, stream=False):
        data = None
        h = {"authorization": f"Bearer {self.api_key}"}
        if body is not None and not raw:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
        elif raw:
            data = body
            h["content-type"] = "application/octet-stream"
        h.update(headers or {})
        req = urllib.request.Request(self.base_url + path, data=data, headers=h, method=method)
        try:
            r = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                problem = json.loads(text)
            except ValueError:
                problem = {"detail": text.decode("utf-8", "replace")}
            raise WardenError(e.code, problem) from None
        if stream:
            return r
        with r:
            payload = r.read()
        if raw == "bytes":
            return payload
        return json.loads(payload) if payload else None

    def create_session(self, template=None, resources=None, env=None, stateful=False,
                       packages=None, network=None, idle_timeout_secs=None,
                       max_lifetime_secs=None, app=None):
        """Start a session and return it (its box is running).

        ``resources``: ``{"cpu_cores", "memory_mb", "disk_mb", "pids"}``, any
        of them; ``packages``: extra packages (``{"ecosystem": "pip",
        "name": ..., "version": ...}``); ``network``: hosts to allow.
        ``stateful``: :meth:`Session.run` defaults to the session's persistent
        interpreter (variables and imports kept from one run to the next).
        """
        body = {}
        for key, value in (("template", template), ("resources", resources), ("env", env),
                           ("packages", packages), ("idle_timeout_secs", idle_timeout_secs),
                           ("max_lifetime_secs", max_lifetime_secs), ("app", app)):
            if value is not None:
                body[key] = value
        if network is not None:
            body["network"] = {"allow": list(network)}
        record = self._request("POST", "/v1/sessions", body)
        return Session(self, record, stateful=stateful)

    def session(self, session_id, stateful=False):
        """An existing session, by id."""
        record = self._request("GET", f"/v1/sessions/{urllib.parse.quote(session_id, safe='')}")
        return Session(self, record, stateful=stateful)

    def list_sessions(self, status=None, template=None):
        """The key's sessions, newest first (every page)."""
        items, cursor = [], None
        while True:
            q = {"limit": "200"}
            if status:
                q["status"] = status
            if template:
                q["template"] = template
            if cursor:
                q["cursor"] = cursor
            page = self._request("GET", "/v1/sessions?" + urllib.parse.urlencode(q))
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items


class Session:
    """A live session: run code, stream output, move files; a context
    manager that terminates it on exit."""

    def __init__(self, client, record, stateful=False):
        self.client = client
        self.record = record
        self.id = record["id"]
        self.stateful = stateful

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _path(self, suffix=""):
        return f"/v1/sessions/{urllib.parse.quote(self.id, safe='')}{suffix}"

    def _body(self, code, language, mode, event, timeout_ms, env):
        if mode is None:
            mode = "repl" if self.stateful and language in ("python", "javascript") else "script"
        body = {"language": language, "mode": mode, "code": code}
        if event is not None:
            body["event"] = event
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        if env:
            body["env"] = env
        return body

    def run(self, code, language="python", mode=None, event=None, timeout_ms=None, env=None):
        """Run code and wait for its result: the execution record
        (``status``, ``stdout``, ``stderr``, ``exit_code``, ``return_value``,
        ``error``, …). ``mode``: ``script``, ``handler`` (``handler(event)``)
        or ``repl`` (the persistent interpreter; the default when the
        session is stateful)."""
        body = self._body(code, language, mode, event, timeout_ms, env)
        record = self.client._request("POST", self._path("/executions?mode=async"), body)
        result = None
        for e in self._events(record["id"]):
            if e.kind == "result":
                result = e.data
        return result if result is not None else self.client._request(
            "GET", f"/v1/executions/{urllib.parse.quote(record['id'], safe='')}")

    def stream(self, code, language="python", mode=None, event=None, timeout_ms=None, env=None):
        """Run code and yield its live :class:`Event` s as they come, the
        last one ``result`` (the execution record)."""
        body = self._body(code, language, mode, event, timeout_ms, env)
        record = self.client._request("POST", self._path("/executions?mode=async"), body)
        yield from self._events(record["id"])

    def _events(self, execution_id):
        last = None
        for _ in range(5):
            headers = {"accept": "text/event-stream"}
            if last:
                headers["last-event-id"] = last
            r = self.client._request(
                "GET", f"/v1/executions/{urllib.parse.quote(execution_id, safe='')}/events",
                headers=headers, stream=True)
            kind, eid, data = "", "", []
            with r:
                for raw in r:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line == "":
                        if kind or data:
                            text = "\n".join(data)
                            try:
                                value = json.loads(text)
                            except ValueError:
                                value = text
                            if eid:
                                last = eid
                            yield Event(kind, eid, value)
                            if kind == "result":
                                return
                        kind, eid, data = "", "", []
                    elif line.startswith(":"):
                        continue
                    else:
                        field, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if field == "event":
                            kind = value
                        elif field == "id":
                            eid = value
                        elif field == "data":
                            data.append(value)
        raise WardenError(0, {"detail": f"the events of {execution_id} ended before its result"})

    def upload(self, path, data):
        """Write ``data`` (bytes, or a binary file object) to ``path`` in the
        workspace (folders made as needed); the file's entry."""
        if hasattr(data, "read"):
            data = data.read()
        return self.client._request("PUT", self._path("/files/" + _quote_path(path)), data, raw=True)

    def download(self, path):
        """The bytes of the workspace file ``path``."""
        return self.client._request("GET", self._path("/files/" + _quote_path(path)), raw="bytes")

    def download_to(self, path, local_path, chunk=1 << 16):
        """Stream the workspace file ``path`` into ``local_path``; the bytes
        written."""
        r = self.client._request("GET", self._path("/files/" + _quote_path(path)), stream=True)
        n = 0
        with r, open(local_path, "wb") as f:
            while True:
                block = r.read(chunk)
                if not block:
                    return n
                f.write(block)
                n += len(block)

    def list_files(self, path=""):
        """The entries of a workspace folder (``name``, ``path``, ``kind``,
        ``size``, ``modified_at``)."""
        q = "?" + urllib.parse.urlencode({"path": path.lstrip("/")}) if path.strip("/") else ""
        return self.client._request("GET", self._path("/files" + q))["entries"]

    def remove(self, path):
        """Remove a file, a link or a folder with what it holds."""
        self.client._request("DELETE", self._path("/files/" + _quote_path(path)))

    def install(self, packages):
        """Install packages (``{"ecosystem": "pip", "name": ..., "version":
        ...}``) into the running session. It moves to a box with its new
        dependency layer, its workspace carried over; ``/tmp`` and a
        stateful interpreter's variables do not survive the move. Returns
        ``{"session", "installed", "packages", "files_carried",
        "bytes_carried"}``."""
        done = self.client._request("POST", self._path("/packages"), {"packages": list(packages)})
        self.record = done["session"]
        return done

    def refresh(self):
        """The session's record, read again."""
        self.record = self.client._request("GET", self._path())
        return self.record

    def close(self):
        """Terminate the session (its record stays); closing twice is fine."""
        try:
            self.record = self.client._request("POST", self._path("/terminate"))
        except WardenError as e:
            if e.status != 409:
                raise
