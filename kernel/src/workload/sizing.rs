//! Sizing a workload to the machine's memory: how much is free, refusing a run that cannot fit
//! (exit 2, with the `--mem` to boot with), and the allocations a bench cannot go without.

use broadside_arch::pte::PAGE_SIZE;
use broadside_platform::boot_info::{BootInfo, boot_info};

const MIB: u64 = 1 << 20;

/// Free frames and RAM, in bytes.
pub fn free_memory(info: &BootInfo) -> (u64, u64) {
    let (free_frames, _) = broadside_memory::frame::stats();
    let p = &info.platform;
    let ram = p.memory[..p.memory_ranges].iter().map(|r| r.size).sum();
    (free_frames * PAGE_SIZE, ram)
}

/// Refuses to run for want of memory: one line naming what is needed, exit 2. The `--mem`
/// suggestion adds what the kernel itself uses now (image, heap, metadata) to the need.
pub fn refuse(workload: &str, what: &str, need: u64, free: u64, ram: u64) -> ! {
    let suggest = (need + ram.saturating_sub(free)).div_ceil(16 * MIB) * 16;
    broadside_platform::exit::config_error(format_args!(
        "error: {workload}: needs {} MiB of free memory for {what}, found {} MiB free of {} MiB RAM: boot with --mem {suggest}M or more",
        need.div_ceil(MIB),
        free / MIB,
        ram / MIB
    ))
}

/// An allocation `workload` cannot go without. Its start-up sizing should make it succeed; if
/// it does not, table frees still waiting for a grace period are let through and it is tried
/// once more, and then the run is refused (exit 2) naming `what` and the memory the workload
/// needs (`need()`, asked only then).
pub fn must<T>(
    workload: &str,
    what: &str,
    need: impl FnOnce() -> u64,
    mut alloc: impl FnMut() -> Option<T>,
) -> T {
    if let Some(v) = alloc() {
        return v;
    }
    broadside_sync::rcu_kernel::barrier();
    if let Some(v) = alloc() {
        return v;
    }
    let (free, ram) = free_memory(boot_info());
    refuse(workload, what, need(), free, ram)
}
