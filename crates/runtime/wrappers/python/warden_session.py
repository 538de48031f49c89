"""Warden's session agent: the long-lived program of a session box.

Runs inside the jail, as the session's uid, under every layer of the box;
never trusted by the host. It starts one process per execution and keeps a
persistent interpreter per language for stateful cells.

Descriptor 5 is a SOCK_SEQPACKET control socket to the host. One JSON
document per message.

Host -> agent: {"op": "exec", "id", "mode": "script"|"handler"|"repl",
  "language": "python"|"javascript"|"shell", "cpu_seconds", "env": {...}}
  with four descriptors: the code, the event, stdout, stderr and the result
  channel (memfds and pipes).
Host -> agent, once, when a box started ahead is claimed by a session:
  {"op": "env", "env": {...}} (no descriptors): the session's environment,
  answered by {"msg": "env_set"}.
Agent -> host: {"msg": "ready", "pid"}; {"msg": "started", "pid", "keep": [pids the
  host must not kill when this execution ends: the idle interpreters]};
  {"msg": "exited", "status": raw wait status, "keep": [...], "died": bool (a
  persistent interpreter ended), "restarted": bool (it had, and was started
  anew for this cell)};
  {"msg": "refused", "reason"}.

Each execution's code is written to /tmp/.warden/cell-N.<ext> (so tracebacks
name a file) and run by the host's own interpreters: script mode as a
program, handler mode through the language's handler wrapper, repl mode in
the language's persistent interpreter (warden_repl.py, warden_repl.mjs),
whose output the agent relays to the execution's descriptors.
"""

import _signal
import os
import select
import sys

# The JSON of warden_wrapper (the C scanner and encoder alone): the json
# package would pull in re, enum and collections, about half of the agent's
# start; `signal` would pull in enum too. The wrapper comes from its
# precompiled bytecode, like this agent (see pycache.rs).
from warden_wrapper import _dumps, _loads

CONTROL_FD = 5
CELLS = "/tmp/.warden"
PYTHON = ["/usr/bin/python3", "-S", "-B"]
NODE = ["/usr/bin/node"]
SHELL = ["/bin/bash"]
EXT = {"python": "py", "javascript": "js", "shell": "sh"}
HANDLER_EXT = {"python": "py", "javascript": "mjs"}
PR_SET_DUMPABLE = 4
_EOF = object()


def _prctl_dumpable(flag):
    try:
        import _ctypes

        _ctypes.call_function(_ctypes.dlsym(_ctypes.dlopen(None), "prctl"), (PR_SET_DUMPABLE, flag, 0, 0, 0))
    except (ImportError, OSError, AttributeError):
        pass


def _recv(sock):
    import array
    import _socket

    fds = array.array("i")
    msg, anc, _, _ = sock.recvmsg(65536, _socket.CMSG_LEN(8 * fds.itemsize))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


class Repl:
    """A persistent interpreter: commands on its stdin, output on two pipes
    the agent relays, results as JSON lines on a third."""

    def __init__(self, language):
        self.language = language
        cmd_r, self.cmd = os.pipe()
        self.out, out_w = os.pipe()
        self.err, err_w = os.pipe()
        self.res, res_w = os.pipe()
        if language == "python":
            argv = PYTHON + ["/warden/python/warden_repl.py"]
        else:
            argv = NODE + ["/warden/node/warden_repl.mjs"]
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.setsid()
                os.dup2(cmd_r, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.dup2(res_w, 3)
                os.closerange(4, 1024)
                os.chdir("/workspace")
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        for fd in (cmd_r, out_w, err_w, res_w):
            os.close(fd)
        for fd in (self.out, self.err, self.res):
            os.set_blocking(fd, False)
        self.partial = b""

    def alive(self):
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def close(self):
        for fd in (self.cmd, self.out, self.err, self.res):
            try:
                os.close(fd)
            except OSError:
                pass

    def run(self, code, out_fd, err_fd, result_fd):
        """Run one cell and relay its output. Returns None while the
        interpreter lives on, else its raw wait status."""
        self.partial = b""
        line = _dumps({"code": code}).encode() + b"\n"
        try:
            _write_all(self.cmd, line)
        except OSError:
            return self._dead()
        targets = {self.out: out_fd, self.err: err_fd}
        while True:
            ready, _, _ = select.select([self.out, self.err, self.res], [], [])
            for fd in ready:
                if fd in targets:
                    _relay(fd, targets[fd])
            if self.res in ready:
                doc = self._result()
                if doc is not None:
                    # What the cell printed just before it ended.
                    for fd, target in targets.items():
                        _relay(fd, target)
                    if doc is _EOF:
                        # The result channel ended: the interpreter died.
                        return self._dead()
                    _write_all(result_fd, doc)
                    return None

    def _result(self):
        try:
            chunk = os.read(self.res, 1 << 20)
        except BlockingIOError:
            return None
        if not chunk:
            return _EOF
        self.partial += chunk
        if b"\n" not in self.partial:
            return None
        doc, _, rest = self.partial.partition(b"\n")
        self.partial = rest
        return doc

    def _dead(self):
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except OSError:
            pass
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = _signal.SIGKILL
        self.close()
        return status


def _relay(src, dst):
    while True:
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            return
        except OSError:
            return
        if not data:
            return
        _write_all(dst, data)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError:
            return
        view = view[n:]


def _cell_path(n, language, mode):
    ext = HANDLER_EXT[language] if mode == "handler" else EXT[language]
    return "%s/cell-%d.%s" % (CELLS, n, ext)


def _argv(language, mode, path):
    if mode == "script":
        return {"python": PYTHON, "javascript": NODE, "shell": SHELL}[language] + [path]
    name = os.path.basename(path)
    if language == "python":
        return PYTHON + ["/warden/python/warden_boot.py", "once", name, "handler"]
    return NODE + ["/warden/node/warden_wrapper.mjs", "once", name, "handler"]


def main():
    import _socket

    _prctl_dumpable(0)
    ctl = _socket.socket(fileno=CONTROL_FD)
    os.makedirs(CELLS, mode=0o700, exist_ok=True)
    # Descriptors 0, 1, 3 and 4 are held (a cell's process gets its own at
    # these numbers); stderr stays: the host keeps the agent's last words.
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 3, 4):
        os.dup2(devnull, fd)
    os.close(devnull)
    repls = {}
    lost = set()  # languages whose interpreter died: the next cell says so
    cell = 0
    ctl.send(_dumps({"msg": "ready", "pid": os.getpid()}).encode())
    while True:
        try:
            msg, fds = _recv(ctl)
        except OSError:
            return
        if not msg:
            return  # the host closed the channel
        try:
            req = _loads(msg)
        except ValueError:
            req = {}
        if req.get("op") == "env" and not fds and isinstance(req.get("env"), dict):
            # A box started ahead becomes a session: its environment, for
            # every process started from now on (interpreters too).
            for k, v in req["env"].items():
                os.environ[str(k)] = str(v)
            ctl.send(_dumps({"msg": "env_set"}).encode())
            continue
        if req.get("op") != "exec" or len(fds) != 5:
            for fd in fds:
                os.close(fd)
            ctl.send(_dumps({"msg": "refused", "reason": "not an exec request with five descriptors"}).encode())
            continue
        code_fd, event_fd, out_fd, err_fd, result_fd = fds
        language, mode = req.get("language"), req.get("mode")
        if language not in EXT or mode not in ("script", "handler", "repl") or (
            mode != "script" and language not in HANDLER_EXT
        ):
            for fd in fds:
                os.close(fd)
            ctl.send(_dumps({"msg": "refused", "reason": "unsupported language or mode"}).encode())
            continue
        code = b""
        while True:
            chunk = os.read(code_fd, 1 << 20)
            if not chunk:
                break
            code += chunk
        os.close(code_fd)
        if mode == "repl":
            os.close(event_fd)
            repl = repls.get(language)
            restarted = False
            if repl is None or not repl.alive():
                restarted = repl is not None or language in lost
                lost.discard(language)
                if repl is not None:
                    repl.close()
                repl = repls[language] = Repl(language)
            keep = [r.pid for lang, r in repls.items() if lang != language]
            ctl.send(_dumps({"msg": "started", "pid": repl.pid, "keep": keep, "restarted": restarted}).encode())
            status = repl.run(code.decode("utf-8", "replace"), out_fd, err_fd, result_fd)
            died = status is not None
            if died:
                del repls[language]
                lost.add(language)
            for fd in (out_fd, err_fd, result_fd):
                os.close(fd)
            keep = [r.pid for r in repls.values()]
            ctl.send(
                _dumps(
                    {"msg": "exited", "status": status or 0, "died": died, "restarted": restarted, "keep": keep}
                ).encode()
            )
            continue
        cell += 1
        path = _cell_path(cell, language, mode)
        with open(path, "wb") as f:
            f.write(code)
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": "/workspace",
            "TMPDIR": "/tmp",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        # The box's own: its layer's search paths, and (a session granted
        # egress) the proxy its connections go through and the CA bundle.
        for k in ("PYTHONPATH", "NODE_PATH", "PYTHONUNBUFFERED", "HTTP_PROXY", "HTTPS_PROXY",
                  "http_proxy", "https_proxy", "NODE_EXTRA_CA_CERTS"):
            if k in os.environ:
                env[k] = os.environ[k]
        for k, v in (req.get("env") or {}).items():
            env[str(k)] = str(v)
        env["WARDEN_CODE_DIR"] = CELLS
        cpu = int(req.get("cpu_seconds") or 0)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                _prctl_dumpable(1)
                if cpu > 0:
                    import resource

                    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_fd, 1)
                os.dup2(err_fd, 2)
                os.dup2(result_fd, 3)
                os.dup2(event_fd, 4)
                os.closerange(5, 1024)
                os.chdir("/workspace")
                argv = _argv(language, mode, path)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        for fd in fds[1:]:
            os.close(fd)
        keep = [r.pid for r in repls.values()]
        ctl.send(_dumps({"msg": "started", "pid": pid, "keep": keep}).encode())
        _, status = os.waitpid(pid, 0)
        try:
            os.unlink(path)
        except OSError:
            pass
        keep = [r.pid for r in repls.values()]
        ctl.send(_dumps({"msg": "exited", "status": status, "keep": keep}).encode())


if __name__ == "__main__":
    main()
