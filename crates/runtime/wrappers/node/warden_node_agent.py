"""Warden's warm Node.js agent. Runs inside the jail; never trusted.

Usage: warden_node_agent.py ENTRYPOINT HANDLER

Node.js cannot receive descriptors over a socket, so it cannot speak the
host's fork-server protocol itself. This agent does (control socket on
descriptor 5, one call's descriptors per request: event, stdout, stderr,
result) and keeps one Node.js process (`warden_wrapper.mjs serve`) that
serves the calls one at a time: the event goes to it as a JSON line, its
output is relayed to the call's pipes, and its result line is written to
the call's result channel. The agent reports `started` (the Node.js
process is the call's process: a timeout or a cancel kills it) and
`exited` (naming the Node.js process as one to keep while it lives).

When the Node.js process dies, or asks to be replaced (a call left
something it cannot undo), the agent reports it and starts a fresh one
before it takes the next call; when that fresh one fails to load the
plugin, the agent exits and the host replaces the box.
"""

import os
import select
import signal
import sys

sys.path.insert(0, "/warden/python")
import warden_wrapper as w  # noqa: E402
from warden_session import _relay, _write_all  # noqa: E402

del sys.path[0]

NODE = ["/usr/bin/node", "/warden/node/warden_wrapper.mjs", "serve"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Node:
    """One `serve` process: calls in on its stdin, output on two pipes, one
    result line per call on a third."""

    def __init__(self, entrypoint, name):
        cmd_r, self.cmd = os.pipe()
        self.out, out_w = os.pipe()
        self.err, err_w = os.pipe()
        self.res, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                w._set_dumpable(w._prctl_function(), 1)
                os.dup2(cmd_r, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                os.dup2(res_w, 3)
                os.closerange(4, 1024)
                os.execv(NODE[0], NODE + [entrypoint, name])
            finally:
                os._exit(127)
        for fd in (cmd_r, out_w, err_w, res_w):
            os.close(fd)
        for fd in (self.out, self.err, self.res):
            os.set_blocking(fd, False)
        self.partial = b""

    def result_line(self, targets):
        """Relay output to `targets` (None: to /dev/null) until one result
        line arrives; None when the process ended first."""
        while True:
            line = self._line()
            if line is not None:
                return line if line is not _EOF else None
            ready, _, _ = select.select([self.out, self.err, self.res], [], [])
            for fd in ready:
                if fd != self.res:
                    _relay(fd, targets[fd] if targets else _DEVNULL)

    def _line(self):
        if b"\n" in self.partial:
            line, _, self.partial = self.partial.partition(b"\n")
            return line
        try:
            chunk = os.read(self.res, 1 << 20)
        except BlockingIOError:
            return None
        if not chunk:
            return _EOF
        self.partial += chunk
        return self._line() if b"\n" in self.partial else None

    def cpu_seconds(self):
        """CPU time the process has used, whole seconds rounded up."""
        try:
            with open("/proc/%d/stat" % self.pid, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return 0
        return -(-ticks // CLK_TCK)

    def stop(self):
        """Kill the process and return its raw wait status."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass
        return self.reap()

    def reap(self):
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = signal.SIGKILL
        for fd in (self.cmd, self.out, self.err, self.res):
            try:
                os.close(fd)
            except OSError:
                pass
        return status


_EOF = object()
_DEVNULL = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)


def start(entrypoint, name):
    """A Node.js process with the plugin loaded, or (None, its error)."""
    node = Node(entrypoint, name)
    line = node.result_line(None)
    doc = w._loads(line) if line else None
    if isinstance(doc, dict) and isinstance(doc.get("doc"), dict) and doc["doc"].get("ready"):
        return node, None
    node.stop()
    err = None
    if isinstance(doc, dict) and isinstance(doc.get("doc"), dict):
        err = doc["doc"].get("error")
    return None, err or w._error("LoadFailed", "the Node.js process ended while loading the plugin")


def main():
    import _socket
    import resource

    if len(sys.argv) != 3:
        print("usage: warden_node_agent.py ENTRYPOINT HANDLER", file=sys.stderr)
        sys.exit(64)
    entrypoint, name = sys.argv[1:]
    # As the Python fork-server: a call runs in the Node.js process (same
    # uid), and must not reach this agent's memory.
    w._set_dumpable(w._prctl_function(), 0)
    ctl = _socket.socket(fileno=w.CONTROL_FD)
    node, err = start(entrypoint, name)
    if node is None:
        ctl.send(w._dumps({"msg": "load_failed", "error": err, "output": ""}).encode())
        return
    ctl.send(w._dumps({"msg": "ready", "pid": os.getpid()}).encode())
    while True:
        try:
            msg, fds = w._recv_fds(ctl, 65536, 8)
        except OSError:
            return
        if not msg:
            return  # the host closed the channel: retire
        req = w._loads(msg)
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            ctl.send(w._dumps({"msg": "refused", "reason": "expected 4 descriptors"}).encode())
            continue
        event_fd, out_fd, err_fd, result_fd = fds
        event = w._read_all(event_fd)
        os.close(event_fd)
        cpu = int(req.get("cpu_seconds") or 0)
        if cpu > 0:
            # RLIMIT_CPU counts the process's whole life: allow what it
            # has used so far plus this call's budget.
            used = node.cpu_seconds()
            try:
                resource.prlimit(node.pid, resource.RLIMIT_CPU, (used + cpu, used + cpu + 1))
            except OSError:
                pass
        ctl.send(w._dumps({"msg": "started", "pid": node.pid}).encode())
        line = w._dumps({"event": event.decode("utf-8", "replace")}).encode() + b"\n"
        try:
            _write_all_or_raise(node.cmd, line)
            answer = node.result_line({node.out: out_fd, node.err: err_fd})
        except OSError:
            answer = None
        doc = w._loads(answer) if answer else None
        if isinstance(doc, dict) and "doc" in doc:
            # What the call printed just before it ended.
            _relay(node.out, out_fd)
            _relay(node.err, err_fd)
            _write_all(result_fd, w._dumps(doc["doc"]).encode())
            recycle = doc.get("recycle") is not False
            died, status = False, 0
        else:
            # It died (killed for a limit, crashed) or broke the protocol:
            # its status is the call's.
            _relay(node.out, out_fd)
            _relay(node.err, err_fd)
            died, status = True, node.stop()
        for fd in (out_fd, err_fd, result_fd):
            os.close(fd)
        if died:
            # The call's process died with the call: the host retires the
            # box (a killed process may have left anything behind).
            ctl.send(w._dumps({"msg": "exited", "status": status, "died": True}).encode())
            return
        if recycle:
            # Replace it before reporting the end: the host kills every
            # process it is not told to keep once the call has ended.
            node.stop()
            node, err = start(entrypoint, name)
            if node is None:
                ctl.send(w._dumps({"msg": "exited", "status": 0, "died": True}).encode())
                return
        ctl.send(w._dumps({"msg": "exited", "status": 0, "keep": [node.pid]}).encode())


def _write_all_or_raise(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


if __name__ == "__main__":
    main()
