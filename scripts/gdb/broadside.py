"""broadside GDB helpers (placeholder: commands are added in scripts/gdb/broadside.py)."""
