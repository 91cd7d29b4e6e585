# Batch commands for scripts/gdb-check.sh: stop inside the running selftest (every CPU online),
# run every broadside helper, then let the kernel finish. "=== NAME" lines delimit sections.
break broadside::workload::selftest::check_wx_layout
continue
echo === help\n
help bs-cpus
help bs-counters
help bs-pt
help bs-rcu
help bs-gather
echo === bs-cpus\n
bs-cpus
echo === bs-counters\n
bs-counters
echo === bs-pt text\n
bs-pt kernel $pc
echo === bs-pt text-by-root\n
bs-pt $TTBR1_EL1 $pc
echo === bs-pt linear\n
bs-pt kernel 0xffff000041234567
echo === bs-pt unmapped\n
bs-pt kernel 0xffffe00000000000
echo === bs-pt guard\n
bs-pt kernel &__boot_stack_guard
echo === bs-rcu\n
bs-rcu
echo === errors\n
python
# Bad input must give one-line gdb errors, never Python tracebacks.
for cmd in ("bs-pt", "bs-pt kernel no_such_symbol", "bs-cpus extra", "bs-counters -z",
            "bs-gather", "bs-gather broadside_base::percpu::PERCPU"):
    try:
        gdb.execute(cmd)
        print("NO-ERROR[%s]" % cmd)
    except gdb.error as e:
        print("ERROR[%s]: %s" % (cmd, e))
end
echo === end\n
delete
continue
