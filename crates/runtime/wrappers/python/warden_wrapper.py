"""Warden's Python handler wrapper. Runs inside the jail; never trusted.

Usage: warden_wrapper.py once|serve ENTRYPOINT HANDLER

Descriptors (placed by the host):
  3  result channel (a memfd): one JSON document, written once
  4  event (a memfd) in `once` mode
  5  control socket (SOCK_SEQPACKET) in `serve` mode

The result is {"ok": true, "value": ...} or {"ok": false, "error": {...}}.
Nothing the handler prints reaches descriptor 3, so printed text can never
pass for a result.

Imports are kept to _json, os and sys up front: every module imported here
is paid for by every cold call and stays resident in every fork-server
(asyncio alone takes ~57 ms to import; the json package pulls in re, enum and
collections, 1.5 MiB). The rest is imported where needed.
"""

import _json
import os
import sys

RESULT_FD = 3
EVENT_FD = 4
CONTROL_FD = 5
# The plugin's code; a session's cells live elsewhere (the session agent
# sets WARDEN_CODE_DIR).
CODE_DIR = os.environ.get("WARDEN_CODE_DIR", "/code")
WRAPPER_FILE = os.path.abspath(__file__)


class _Decoding:
    """What json.loads passes to the C scanner: strict, no hooks."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[name])


_scan = _json.make_scanner(_Decoding)
_JSON_SPACE = " \t\n\r"


def _loads(data):
    """json.loads on the C scanner alone, without importing the json package."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    body = text.rstrip(_JSON_SPACE)
    try:
        value, end = _scan(body, len(body) - len(body.lstrip(_JSON_SPACE)))
        if end == len(body):
            return value
    except (StopIteration, SystemError):
        # The C scanner's own error needs json.decoder loaded to be raised
        # (SystemError otherwise): a malformed document pays for the import,
        # and gets json's exact message.
        pass
    import json

    return json.loads(text)


def _not_serializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(doc, allow_nan=True):
    """Compact _dumps(ensure_ascii=False) on the C encoder."""
    encode = _json.make_encoder({}, _not_serializable, _json.encode_basestring, None, ":", ",", False, False, allow_nan)
    return "".join(encode(doc, 0))


def _error(kind, message, tb=None, **extra):
    err = {"type": kind, "message": message}
    if tb is not None:
        import traceback

        # The traceback without this wrapper's own frames.
        frames = [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename) != WRAPPER_FILE]
        err["traceback"] = "".join(traceback.format_list(frames)).rstrip("\n")
        if frames:
            err.setdefault("file", os.path.relpath(frames[-1].filename, CODE_DIR) if frames[-1].filename.startswith(CODE_DIR) else frames[-1].filename)
            err.setdefault("line", frames[-1].lineno)
    err.update({k: v for k, v in extra.items() if v is not None})
    return err


def _write_result(doc):
    data = _dumps(doc, allow_nan=False).encode("utf-8")
    view = memoryview(data)
    while view:
        n = os.write(RESULT_FD, view)
        view = view[n:]


def _non_serializable_path(value, path="$"):
    """Path and type name of the first value json cannot encode, or None."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, "float (NaN or infinity)"
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _non_serializable_path(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                return f"{path} (a key)", type(key).__name__
            found = _non_serializable_path(item, f"{path}.{key}")
            if found:
                return found
        return None
    return path, type(value).__name__


def load_handler(entrypoint, name):
    """Import the plugin module and find its handler, or return an error."""
    if CODE_DIR not in sys.path:
        sys.path.insert(0, CODE_DIR)
    path = os.path.join(CODE_DIR, entrypoint)
    if not os.path.isfile(path):
        return None, _error("EntrypointNotFound", f"entrypoint `{entrypoint}` does not exist in the package")
    # The import machinery that is always loaded (frozen): importlib.util
    # would add ~0.4 MiB to every fork-server.
    import importlib._bootstrap as bootstrap
    import importlib._bootstrap_external as external

    loader = external.SourceFileLoader("plugin_main", path)
    spec = bootstrap.spec_from_loader("plugin_main", loader)
    module = bootstrap.module_from_spec(spec)
    sys.modules["plugin_main"] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        file = os.path.relpath(e.filename, CODE_DIR) if e.filename and e.filename.startswith(CODE_DIR) else e.filename
        return None, _error("SyntaxError", f"{e.msg} ({file}, line {e.lineno})", file=file, line=e.lineno)
    except BaseException as e:  # an import that raises is the plugin's error
        return None, _error(type(e).__name__, f"importing `{entrypoint}` failed: {e}", e.__traceback__)
    handler = getattr(module, name, None)
    if handler is None:
        return None, _error("HandlerNotFound", f"`{entrypoint}` defines no function `{name}`")
    if not callable(handler):
        return None, _error("HandlerNotFound", f"`{name}` in `{entrypoint}` is a {type(handler).__name__}, not a function")
    return handler, None


def _expects_object(handler):
    """True when the handler's first parameter is annotated as a mapping."""
    code = getattr(handler, "__code__", None)
    if code is None or code.co_argcount == 0:
        return False
    ann = getattr(handler, "__annotations__", {}).get(code.co_varnames[0])
    if ann is None:
        return False
    if isinstance(ann, str):
        return ann.split("[")[0].strip() in ("dict", "Dict", "Mapping", "typing.Dict", "typing.Mapping")
    # collections.abc's own module: importing collections.abc would pull in
    # the whole collections package.
    import _collections_abc

    for t in (ann, getattr(ann, "__origin__", None)):
        if t is dict or t is _collections_abc.Mapping:
            return True
        if isinstance(t, type) and issubclass(t, dict):  # TypedDict classes are dicts
            return True
    return False


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def call(handler, event_bytes, expects_object):
    """Run the handler on one event; returns the result document.

    `expects_object` is `_expects_object(handler)`, worked out once per
    handler rather than in every forked call."""
    try:
        event = _loads(event_bytes.decode("utf-8")) if event_bytes.strip() else {}
    except (UnicodeDecodeError, ValueError) as e:
        return {"ok": False, "error": _error("InvalidEvent", f"the event is not valid JSON: {e}")}
    if expects_object and not isinstance(event, dict):
        return {"ok": False, "error": _error("InvalidEvent", f"the handler expects an object but the event is {type(event).__name__ if event is not None else 'null'}")}
    try:
        value = handler(event)
        if hasattr(value, "__await__"):  # async def handler
            import asyncio

            async def _await(v):
                return await v

            value = asyncio.run(_await(value))
    except BaseException as e:
        if isinstance(e, SystemExit) and e.code in (None, 0):
            return {"ok": False, "error": _error("SystemExit", "the handler called sys.exit() instead of returning a value")}
        return {"ok": False, "error": _error(type(e).__name__, str(e), e.__traceback__)}
    bad = _non_serializable_path(value)
    if bad:
        where, kind = bad
        return {"ok": False, "error": _error("ResultNotSerializable", f"the return value is not JSON-serializable: {kind} at {where}")}
    return {"ok": True, "value": value}


def run_once(entrypoint, name):
    handler, err = load_handler(entrypoint, name)
    doc = {"ok": False, "error": err} if err else call(handler, _read_all(EVENT_FD), _expects_object(handler))
    sys.stdout.flush()
    sys.stderr.flush()
    _write_result(doc)


def _recv_fds(sock, bufsize, maxfds):
    """A message and the descriptors passed with it (SCM_RIGHTS)."""
    import array
    import _socket

    fds = array.array("i")
    msg, ancdata, _, _ = sock.recvmsg(bufsize, _socket.CMSG_LEN(maxfds * fds.itemsize))
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


PR_SET_DUMPABLE = 4


def _prctl_function():
    """libc's prctl through _ctypes (the C module alone: the ctypes package
    would cost the fork-server ~0.6 MiB more), or None."""
    try:
        import _ctypes

        return _ctypes, _ctypes.dlsym(_ctypes.dlopen(None), "prctl")
    except (ImportError, OSError, AttributeError):
        return None


def _set_dumpable(prctl, flag):
    if prctl is not None:
        mod, addr = prctl
        mod.call_function(addr, (PR_SET_DUMPABLE, flag, 0, 0, 0))


def serve(entrypoint, name):
    """Fork-server: import once, then one forked child per call."""
    import io
    import resource
    import _socket

    # Non-dumpable: /proc/<this pid>/mem and ptrace are closed to the calls
    # forked from here (same uid), so no call can change what later calls
    # compute. The host checks this before it sends a call. Each call makes
    # itself dumpable again (it may then reset its OOM score; its own memory
    # is nobody else's business).
    prctl = _prctl_function()
    _set_dumpable(prctl, 0)
    # The server prints nothing (the host closed its output). Descriptors 3
    # and 4 are held from the start, before the plugin is imported: received
    # descriptors never land on the numbers a call's child moves its result
    # channel to, and no file the plugin's own threads open can be given
    # those numbers (a thread's file object that thinks it owns 3 would
    # close a call's result channel when the forked child drops it).
    devnull = os.open("/dev/null", os.O_RDWR)
    reserved = (1, 2, RESULT_FD, EVENT_FD)
    for fd in reserved:
        if fd != devnull:
            os.dup2(devnull, fd)
    if devnull not in reserved:
        os.close(devnull)
    # The C socket type directly: socket.py would pull in enum and friends.
    ctl = _socket.socket(fileno=CONTROL_FD)
    captured = io.StringIO()
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = captured
    try:
        handler, err = load_handler(entrypoint, name)
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    if err:
        ctl.send(_dumps({"msg": "load_failed", "error": err, "output": captured.getvalue()[-4096:]}).encode())
        return
    code = getattr(handler, "__code__", None)
    if code is not None and code.co_flags & 0x80:  # CO_COROUTINE: async def
        import asyncio  # once here, not in every forked call

        del asyncio
    expects_object = _expects_object(handler)
    # Everything alive now is shared with every forked call: keep the
    # collector away from it, so a call does not copy those pages.
    import gc

    gc.collect()
    gc.freeze()
    ctl.send(_dumps({"msg": "ready", "pid": os.getpid()}).encode())
    while True:
        try:
            msg, fds = _recv_fds(ctl, 65536, 8)
        except OSError:
            return
        if not msg:
            return  # the host closed the channel: retire
        req = _loads(msg)
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            ctl.send(_dumps({"msg": "refused", "reason": "expected 4 descriptors"}).encode())
            continue
        event_fd, out_fd, err_fd, result_fd = fds
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                ctl.close()
                os.setsid()
                _set_dumpable(prctl, 1)
                try:
                    with open("/proc/self/oom_score_adj", "w") as f:
                        f.write("0")  # the server is protected; the call is not
                except OSError:
                    pass
                cpu = int(req.get("cpu_seconds") or 0)
                if cpu > 0:
                    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                os.dup2(out_fd, 1)
                os.dup2(err_fd, 2)
                os.dup2(result_fd, RESULT_FD)
                for fd in (out_fd, err_fd, result_fd):
                    if fd not in (1, 2, RESULT_FD):
                        os.close(fd)
                os.chdir(req.get("cwd") or "/workspace")
                event = _read_all(event_fd)
                os.close(event_fd)
                doc = call(handler, event, expects_object)
                sys.stdout.flush()
                sys.stderr.flush()
                _write_result(doc)
            except BaseException:
                # The wrapper's own failure, not the handler's: say why on the
                # call's stderr (already in place, or still the server's).
                import traceback

                traceback.print_exc()
                sys.stderr.flush()
                code = 70
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        ctl.send(_dumps({"msg": "started", "pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        ctl.send(_dumps({"msg": "exited", "status": status}).encode())


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("once", "serve"):
        print("usage: warden_wrapper.py once|serve ENTRYPOINT HANDLER", file=sys.stderr)
        sys.exit(64)
    mode, entrypoint, name = sys.argv[1:]
    sys.argv = [os.path.join(CODE_DIR, entrypoint)]
    if mode == "once":
        run_once(entrypoint, name)
    else:
        serve(entrypoint, name)


if __name__ == "__main__":
    main()
