"""Registers the bs-* commands with gdb: importing a cmd_* module registers its command (the
@command decorator in values.py), in the order the single-file helpers defined them."""

from . import cmd_cpus, cmd_counters, cmd_pt, cmd_rcu, cmd_gather, cmd_events  # noqa: F401 (registration)
