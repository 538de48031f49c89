"""Warden's program runner for Python: one-shot runs (`POST /v1/run` and the
compatibility APIs). Runs inside the jail; never trusted.

The handler wrapper loads this module as a plugin. A warm box's fork-server
imports it once; every run is one forked child calling `handler`, which
writes the program's files into the workspace, puts its stdin on descriptor
0, runs the entry file as `__main__` (as `python3 FILE ARGS...` would) and
ends the process with the program's exit status. The host reads that
status: there is no return value. When the event itself is unusable the
handler raises, and the wrapper reports a runner failure instead.

Event: {"main": PATH, "files": [{"path", "content" (base64), "mode"}],
"stdin" (base64), "args": [str]}; paths are relative to /workspace.
"""

import os
import sys

WORKSPACE = "/workspace"

# The interpreter runs isolated (-I), so PYTHONPATH (which carries a
# template's dependency layer) is not read by Python itself: put it on the
# path here, ahead of the standard library, where Python would have.
for _entry in reversed([p for p in os.environ.get("PYTHONPATH", "").split(":") if p]):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)

# Imported once in the fork-server, shared by every run: what programs sent
# by Dify's code nodes import first (json, base64), and what a runner needs.
import binascii  # noqa: E402
import json  # noqa: E402,F401
import base64  # noqa: E402,F401


def _write_files(files):
    for f in files:
        rel = f["path"]
        path = os.path.join(WORKSPACE, rel)
        parent = os.path.dirname(path)
        if parent != WORKSPACE:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        data = binascii.a2b_base64(f.get("content") or "")
        mode = int(f.get("mode") or 0o644) & 0o777
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def _place_stdin(data):
    """The program's stdin on descriptor 0: a memory file holding it."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    old = sys.stdin
    sys.stdin = sys.__stdin__ = open(
        0, "r", encoding=getattr(old, "encoding", None) or "utf-8", errors="strict", closefd=False
    )


def _exit_status(exc):
    """The exit status `python3 FILE` ends with for a SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _finish(status):
    """End the run as the interpreter would end: wait for the program's
    threads, run its atexit functions, flush, exit."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(status)


def handler(event):
    main = event["main"]
    args = [str(a) for a in event.get("args") or []]
    _write_files(event.get("files") or [])
    _place_stdin(binascii.a2b_base64(event.get("stdin") or ""))
    path = os.path.join(WORKSPACE, main)
    with open(path, "rb") as f:
        source = f.read()
    sys.argv = [main] + args
    sys.path.insert(0, os.path.dirname(path))
    module = type(sys)("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    module.__cached__ = None
    sys.modules["__main__"] = module
    status = 0
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        import traceback

        traceback.print_exception(type(e), e, None)
        _finish(1)
    try:
        exec(code, module.__dict__)
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        import traceback

        # Without this runner's own frame: what `python3 FILE` prints.
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        status = 1
    _finish(status)
