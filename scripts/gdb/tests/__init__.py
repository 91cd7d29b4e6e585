"""Host tests of the GDB helpers' pure modules (no gdb, no QEMU; standard library unittest).

From the repository root:

    python3 -m unittest discover -s scripts/gdb/tests -t scripts/gdb

`-t scripts/gdb` puts scripts/gdb on sys.path, so `import broadside.pte` finds the package.
"""
