//! `workload=demo` (the default): a banner of platform facts, then the self-test.

use super::Outcome;
use broadside_arch::pte::PAGE_SIZE;
use broadside_platform::boot_info::BootInfo;
use broadside_platform::kprintln;

/// Prints the banner and runs `selftest`.
pub fn run(info: &'static BootInfo) -> Outcome {
    let p = &info.platform;
    let f = &info.features;
    let mem: u64 = p.memory[..p.memory_ranges].iter().map(|r| r.size).sum();
    let (free, total) = broadside_memory::frame::stats();
    kprintln!("broadside — broadcast-TLBI shootdown, RCU-deferred table freeing, lockless walks");
    kprintln!(
        "  CPUs           {} online of {} in the DTB",
        broadside_base::percpu::online_count(),
        p.cpus
    );
    kprintln!(
        "  memory         {} MiB ({} of {} frames free)",
        mem >> 20,
        free,
        total
    );
    for r in &p.memory[..p.memory_ranges] {
        kprintln!("                 {:#x}..{:#x}", r.base, r.end());
    }
    kprintln!(
        "  GICv3          distributor {:#x}, {} redistributor region(s)",
        p.gicd.base,
        p.gicr_regions
    );
    for r in &p.gicr[..p.gicr_regions] {
        kprintln!("                 {:#x}..{:#x}", r.base, r.end());
    }
    match info.psci_version {
        Some((maj, min)) => kprintln!("  PSCI           {maj}.{min} over {}", p.psci_method),
        None => kprintln!("  PSCI           version unknown, over {}", p.psci_method),
    }
    kprintln!("  entry EL       EL{} (running at EL1)", info.boot_el);
    kprintln!("  FEAT_TLBIRANGE {}", yes_no(f.tlbi_range));
    kprintln!("  FEAT_TLBIOS    {}", yes_no(f.tlbi_os));
    kprintln!("  FEAT_TTL       {}", yes_no(f.ttl));
    kprintln!("  ASID bits      {}", f.asid_bits);
    kprintln!(
        "  timer          {} Hz tick, counter {} Hz, PPI {}",
        crate::settings::settings().arch.hz,
        broadside_arch::aarch64::cpu::counter_frequency(),
        p.timer_virtual_ppi
    );
    kprintln!(
        "  UART           PL011 at {:#x}; page size {} KiB",
        p.uart.base,
        PAGE_SIZE / 1024
    );
    super::selftest::run(info)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
