"""Loads the broadside GDB helpers (the package scripts/gdb/broadside/) into gdb.

scripts/gdb.sh runs `source scripts/gdb/broadside.py`; so can any gdb session:

    (gdb) source scripts/gdb/broadside.py

This file stays a loader so that path keeps working; the code is in the package next to it.
`import broadside` finds the package, not this file, even though both sit in scripts/gdb: for
each directory on sys.path, Python's path finder prefers a package directory over a module file
of the same name (and gdb runs a sourced file as __main__, so this file is never imported as
`broadside` itself).
"""

import os
import sys

_DIR = os.path.dirname(os.path.abspath(__file__))
if _DIR not in sys.path:
    sys.path.insert(0, _DIR)

# Sourcing the single-file helpers again re-ran them, which picked up edits; drop any previously
# imported package modules so that re-sourcing this loader does the same.
for _name in [n for n in sys.modules if n == "broadside" or n.startswith("broadside.")]:
    del sys.modules[_name]

import broadside.commands  # noqa: E402,F401 (registers bs-cpus, bs-counters, bs-pt, ...)
