"""Warden's Python entry point: runs the wrapper from its bytecode.

The host precompiles warden_wrapper.py into __pycache__ (a pyc checked
against the source's hash), so a box does not compile the wrapper again:
compiling it costs every fork-server ~1.5 MiB of resident memory and every
cold call a few milliseconds. Without that cache, or with a stale one,
Python compiles the source instead: same behaviour, only slower.
"""

import sys

sys.path.insert(0, "/warden/python")
import warden_wrapper  # noqa: E402

del sys.path[0]  # plugin imports must not find the wrapper's directory
warden_wrapper.main()
