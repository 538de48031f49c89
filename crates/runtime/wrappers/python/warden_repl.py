"""Warden's persistent Python interpreter for a session's stateful cells.

Runs inside the jail, started by the session agent; never trusted. Reads one
JSON line per cell on stdin ({"code": ...}), runs it in one namespace that
lives as long as this process (variables, imports and open files persist),
and writes one JSON line per cell on descriptor 3:
{"ok": true, "value": <the last expression's value, when it is JSON>,
 "repr": <its repr>} or {"ok": false, "error": {type, message, traceback}}.
What the cell prints goes to stdout and stderr as usual.
"""

import ast
import json
import os
import sys
import traceback

RESULT_FD = 3


def _error(e):
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith("<cell")]
    err = {"type": type(e).__name__, "message": str(e)}
    if frames:
        err["traceback"] = "".join(traceback.format_list(frames)).rstrip("\n")
        err["line"] = frames[-1].lineno
    return err


def _jsonable(value):
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def run(code, namespace, n):
    name = "<cell %d>" % n
    tree = ast.parse(code, filename=name, mode="exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, name, "exec"), namespace)
    if last is None:
        return {"ok": True, "value": None}
    value = eval(compile(last, name, "eval"), namespace)
    if value is not None:
        namespace["_"] = value
    doc = {"ok": True, "value": value if _jsonable(value) else None}
    if value is not None:
        doc["repr"] = repr(value)[:65536]
    return doc


def main():
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    sys.path.insert(0, "/workspace")
    n = 0
    for line in sys.stdin:
        n += 1
        try:
            code = json.loads(line)["code"]
            doc = run(code, namespace, n)
        except SystemExit:
            raise
        except BaseException as e:  # the cell's failure, reported, not fatal
            doc = {"ok": False, "error": _error(e)}
        sys.stdout.flush()
        sys.stderr.flush()
        data = memoryview((json.dumps(doc, default=repr) + "\n").encode())
        while data:
            data = data[os.write(RESULT_FD, data) :]


if __name__ == "__main__":
    main()
