//! Kernel bring-up and the paths out: the boot CPU's sequence, a secondary's, the timer tick,
//! idling, the watchdog, and every exit (pass, fail, bad arguments, panic, exception, timeout),
//! each of which ends with the `summary:` line.

use crate::settings::{self, Settings};
use crate::workload::settings::Bug as KernelBug;
use crate::workload::{self, Outcome};
use ::semihosting as semihosting_crate;
use broadside_arch::PhysAddr;
use broadside_arch::aarch64::exception;
use broadside_arch::aarch64::exception::TrapFrame;
use broadside_arch::aarch64::layout::ImageLayout;
use broadside_arch::aarch64::{cpu, gic, mmu, psci, semihosting, timer};
use broadside_arch::pte::PAGE_SIZE;
use broadside_base::ExitCode;
use broadside_base::stats::{self, Counter};
use broadside_memory::frame;
use broadside_platform::boot_info::{self, BootInfo, boot_info, boot_info_opt};
use broadside_platform::console;
use broadside_platform::dtb::{self, PlatformInfo};
use broadside_platform::exit::{self, config_error};
use broadside_platform::kprintln;
use broadside_smp as smp;
use broadside_smp::settings::Bug as SmpBug;
use broadside_smp::watchdog;
use broadside_sync::settings::Bug as SyncBug;
use core::sync::atomic::Ordering;

/// Where QEMU puts the DTB for an ELF kernel that does not cover the start of RAM: the start of
/// RAM, which `linker.ld` leaves free by loading the image 2 MiB above it.
const ELF_BOOT_DTB_OFFSET_BELOW_IMAGE: u64 = 2 << 20;

/// The boot CPU's path from `kernel_main` to the workload and out.
pub fn boot_cpu_main(dtb_pa: u64, boot_el: u64) -> ! {
    // The hooks through which lower layers reach what only the top knows: how an unexpected
    // exception is reported, how a run's summary is printed, what a waiting CPU serves.
    semihosting::set_exit_with_code(|code| semihosting_crate::process::exit(code));
    exception::set_fatal_handler(fatal_exception);
    exit::set_reporter(report);
    broadside_sync::requests::set_request_server(broadside_mm::tlb::serve_ipi_requests);
    smp::cpu(0).mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    broadside_memory::heap::init_bootstrap();
    let image = ImageLayout::get();
    let (image_pa, image_end_pa) = image.phys_range();
    let dtb_pa = if dtb_pa != 0 {
        dtb_pa
    } else {
        image_pa - ELF_BOOT_DTB_OFFSET_BELOW_IMAGE
    };

    // Through the early map; its pages are kept from the frame allocator (`usable_ranges`).
    let platform = match dtb::parse_early(dtb_pa) {
        Ok(p) => p,
        Err(e) => early_config_error(format_args!("error: {e}")),
    };

    // PSCI first: it is how the kernel powers off when the host has no semihosting.
    let Some(conduit) = psci::Conduit::from_method(platform.psci_method) else {
        early_config_error(format_args!(
            "error: dtb: /psci method {:?} is neither hvc nor smc",
            platform.psci_method
        ));
    };
    psci::init(conduit);

    // Frames: first only what the early tables map (the image's 1 GiB), enough to build the real
    // tables; the rest once they are live.
    let early_window = image.early_window();
    let usable = usable_ranges(&platform, image_pa, image_end_pa);
    for &(s, e) in &usable {
        let (s, e) = (s.max(early_window.0), e.min(early_window.1));
        if e > s {
            frame::add_range(PhysAddr::new(s), PhysAddr::new(e));
        }
    }
    let (ram_lo, ram_hi) = ram_extent(&platform);
    frame::init_metadata(PhysAddr::new(ram_lo), PhysAddr::new(ram_hi));

    let mut devices = broadside_memory::kmap::switch_to_kernel_tables(&platform)
        .unwrap_or_else(|e| early_config_error(format_args!("error: kernel tables: {e:?}")));
    mmu::drop_boot_idmap();

    // The rest of RAM, now that the linear map covers it.
    for &(s, e) in &usable {
        if e > early_window.1 {
            frame::add_range(PhysAddr::new(s.max(early_window.1)), PhysAddr::new(e));
        }
        if s < early_window.0 {
            frame::add_range(PhysAddr::new(s), PhysAddr::new(e.min(early_window.0)));
        }
    }

    devices.start_console();
    let args = match broadside_base::args::parse::<Settings>(platform.bootargs) {
        Ok(a) => settings::set(a),
        Err(e) => {
            kprintln!("error: {e}");
            emit_summary_early(boot_el, &platform);
            semihosting::exit(ExitCode::BadConfig.code());
        }
    };
    console::init_log(args.platform.log.level_filter());
    broadside_memory::heap::grow();

    let features = cpu::CpuFeatures::read();
    let info = boot_info::set(BootInfo {
        boot_el,
        features,
        psci_version: psci::version(),
        platform,
    });
    let cpus = info.platform.cpus;

    // GICv3: every redistributor region the DTB names (QEMU virt: 123 redistributors in the
    // first, the rest in a second); the GIC layer finds each CPU's by its affinity.
    if let Err(e) = devices.start_gic(&info.platform.cpu_mpidrs[..cpus]) {
        config_error(format_args!("error: gic: {e}"));
    }
    timer::set_rate(args.arch.hz);
    init_memory_policy(info, args);
    // RCU counts every CPU in the DTB from the start: secondaries enter their idle loop (an
    // extended quiescent state) as soon as they are up.
    broadside_sync::rcu_kernel::init(cpus);
    cpu_local_init(0);

    let timeout_s = args
        .smp
        .timeout
        .unwrap_or_else(|| workload::default_timeout(&args.workload));
    watchdog::arm(timeout_s);
    log::info!(
        "broadside: {} CPUs, entered at EL{}, PSCI over {}, bootargs \"{}\"",
        cpus,
        boot_el,
        conduit.name(),
        info.platform.bootargs
    );
    log_errata(args);

    let bringup_start = cpu::counter();
    match smp::boot::start_secondaries(&info.platform.cpu_mpidrs[..cpus], args.smp.cpus_wait_ms) {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => {
            let mut line = alloc::string::String::new();
            for c in missing.iter() {
                line.push_str(&alloc::format!(" cpu{c}"));
            }
            log::error!(
                "{} CPU(s) did not come online within {} ms:{}",
                missing.count,
                args.smp.cpus_wait_ms,
                line
            );
            watchdog::fire(format_args!("CPUs did not come online"));
        }
        Err(e) => config_error(format_args!("error: smp: could not start CPUs: {e:?}")),
    }
    log::info!(
        "{} CPUs online ({} ms of bring-up)",
        smp::online_count(),
        (cpu::counter() - bringup_start) * 1000 / cpu::counter_frequency()
    );

    let outcome = workload::run(info);
    finish(outcome)
}

/// RAM the frame allocator may hand out: every memory range minus the part of the image's range
/// below the image's end (QEMU's DTB and boot blobs, then the image) and minus the DTB wherever
/// it is.
fn usable_ranges(
    p: &PlatformInfo,
    image_pa: u64,
    image_end_pa: u64,
) -> alloc::vec::Vec<(u64, u64)> {
    let mut out = alloc::vec::Vec::new();
    let dtb = (
        p.dtb.base & !(PAGE_SIZE - 1),
        p.dtb.end().div_ceil(PAGE_SIZE) * PAGE_SIZE,
    );
    for r in &p.memory[..p.memory_ranges] {
        let mut start = r.base;
        if r.base <= image_pa && image_pa < r.end() {
            start = image_end_pa;
        }
        for (s, e) in [(start, dtb.0.min(r.end())), (dtb.1.max(start), r.end())] {
            if e > s {
                out.push((s, e));
            }
        }
    }
    out
}

/// Fixes the TLB, table-free, ASID and fault-injection policies from the arguments.
fn init_memory_policy(info: &BootInfo, args: &Settings) {
    let f = &info.features;
    // First: every mm module asks it which bugs are planted (`bug=`).
    broadside_mm::fault_inject::init(args.mm.fail_alloc_per_mille, args.base.seed, args.mm.bugs);
    broadside_mm::tlb::init(
        broadside_arch::tlbi::TlbFeatures::from_id_regs(f.isar0, f.mmfr2),
        args.mm.flush,
        errata(args),
    );
    broadside_mm::table_free::set_mode(args.mm.tablefree);
    let bits = args
        .mm
        .asid_bits
        .map_or(f.asid_bits, |b| (b as u32).min(f.asid_bits));
    if (1u64 << bits) - 1 <= info.platform.cpus as u64 {
        config_error(format_args!(
            "error: bootargs: asid_bits={bits}: needs more than {} ASIDs ({} CPUs each keep one at rollover)",
            info.platform.cpus, info.platform.cpus
        ));
    }
    // Before the ASID allocator, whose rollovers it observes, and before any space exists.
    let (ram_lo, ram_hi) = ram_extent(&info.platform);
    broadside_mm::audit::init(
        args.audit_enabled(),
        info.platform.cpus,
        ram_lo,
        ram_hi - ram_lo,
    );
    broadside_mm::audit::model_errata(errata(args));
    broadside_mm::aspace::init_asids(bits, info.platform.cpus);
    broadside_mm::unshare_sync::set_mode(args.mm.unshare);
    if args.base.weak {
        broadside_base::weak::enable(args.base.seed);
        broadside_mm::audit::stores_delayed();
    }
    broadside_sync::planted::set(
        args.sync.bugs.has(SyncBug::GateNoFence),
        args.sync.bugs.has(SyncBug::RcuSnapshotEarly),
    );
    // Before the secondaries start, whose idle loop reads it.
    smp::work::set_planted(args.smp.bugs.has(SmpBug::IdleLostWakeup));
    if args.base.yield_points {
        broadside_base::hint::enable(args.base.seed);
        broadside_base::pct::enable(
            args.base.seed,
            info.platform.cpus,
            args.base.pct_depth as usize,
        );
        broadside_base::events::enable();
    }
}

/// The errata in force: `errata=`, or those of the boot CPU's MIDR_EL1 (QEMU gives every CPU
/// the same model).
fn errata(args: &Settings) -> broadside_arch::errata::Errata {
    args.mm.errata.resolve(cpu::midr())
}

/// The boot log's one line on errata: which are in force, the CPU, and why.
fn log_errata(args: &Settings) {
    use broadside_arch::errata::Midr;
    use broadside_mm::settings::{Bug as MmBug, ErrataArg};
    let midr = Midr(cpu::midr());
    let e = errata(args);
    let mut names = alloc::string::String::new();
    for name in e.names() {
        if !names.is_empty() {
            names.push(',');
        }
        names.push_str(name);
    }
    if names.is_empty() {
        names.push_str("none");
    }
    let cpu = match midr.arm_core() {
        Some(core) => alloc::format!("{core} r{}p{}", midr.variant(), midr.revision()),
        None => alloc::format!(
            "implementer {:#04x} part {:#05x}",
            midr.implementer(),
            midr.part()
        ),
    };
    let why = match args.mm.errata {
        ErrataArg::Auto => "from MIDR_EL1",
        ErrataArg::Forced(_) => "forced by errata=",
    };
    let skipped = [MmBug::ErratumNoRepeat, MmBug::ErratumNoDvmsync]
        .into_iter()
        .filter(|b| args.mm.bugs.has(*b))
        .map(|b| alloc::format!("; bug={} skips its workaround", b.name()))
        .collect::<alloc::string::String>();
    log::info!(
        "errata: {names} ({cpu}, MIDR_EL1 {:#010x}: {why}){skipped}",
        midr.0
    );
}

fn ram_extent(p: &PlatformInfo) -> (u64, u64) {
    let ranges = &p.memory[..p.memory_ranges];
    let lo = ranges.iter().map(|r| r.base).min().unwrap_or(0);
    let hi = ranges.iter().map(|r| r.end()).max().unwrap_or(0);
    (lo, hi)
}

/// Per-CPU initialisation common to every CPU, run on that CPU: GIC interface, timer, IPI
/// handlers, online.
fn cpu_local_init(cpu_index: usize) {
    use arm_gic::IntId;
    let info = boot_info();
    if cpu_index != 0 {
        gic::init_secondary(cpu_index);
    }
    gic::enable_private(IntId::ppi(info.platform.timer_virtual_ppi), cpu_index, tick);
    gic::enable_private(
        IntId::sgi(smp::ipi::SGI_KICK),
        cpu_index,
        smp::work::kick_received,
    );
    gic::enable_private(
        IntId::sgi(smp::ipi::SGI_PING),
        cpu_index,
        workload::selftest::ping_handler,
    );
    broadside_mm::tlb::register_ipis(cpu_index);
    smp::this_cpu()
        .last_tick_at
        .store(cpu::counter(), Ordering::Relaxed);
    timer::start();
    smp::percpu::mark_online();
    broadside_base::irq::unmask();
}

/// A secondary CPU's path from `secondary_main`.
pub fn secondary_cpu_main(cpu_index: usize) -> ! {
    mmu::drop_boot_idmap();
    let info = boot_info();
    let args = settings::settings();
    if args.workload.bugs.has(KernelBug::LateCpu) && cpu_index == info.platform.cpus - 1 {
        // `bug=late-cpu`: come online well after the boot CPU stopped waiting, so its timeout
        // path runs on every boot rather than only when QEMU happens to be slow.
        let late_ms = args.smp.cpus_wait_ms as u64 + 1000;
        let until = cpu::counter() + cpu::counter_frequency() * late_ms / 1000;
        while cpu::counter() < until {
            cpu::relax();
        }
    }
    cpu_local_init(cpu_index);
    smp::work::idle_loop()
}

/// The timer interrupt: re-arm, count, report a quiescent state, check the watchdog.
fn tick() {
    timer::rearm();
    let this = smp::this_cpu();
    let now = cpu::counter();
    this.ticks.fetch_add(1, Ordering::Relaxed);
    this.last_tick_at.store(now, Ordering::Relaxed);
    this.last_tick_pc
        .store(cpu::exception_return_address(), Ordering::Relaxed);
    stats::count(Counter::TimerTicks);
    // A tick bounds how long this CPU's stores wait in its emulated store buffer (`weak=on`).
    broadside_base::weak::drain();
    broadside_sync::rcu_kernel::quiescent();
    watchdog::check(now);
}

// ---- exits -------------------------------------------------------------------------------

/// The summary reporter every exit path runs (installed in `boot_cpu_main`).
fn report(code: ExitCode, extra_json: Option<&str>) {
    publish_derived_counters();
    workload::summary::emit(boot_info_opt(), code, extra_json);
}

/// Ends the run with `outcome`: its summary, then its exit code.
pub fn finish(outcome: Outcome) -> ! {
    exit::finish(outcome.code, outcome.extra_json.as_deref())
}

/// Copies counters kept by subsystems (RCU, the ASID allocator) into the summary counters.
fn publish_derived_counters() {
    broadside_sync::rcu_kernel::publish_stats();
    if let Some(a) = broadside_mm::aspace::asid_allocator_opt() {
        let have = stats::read(Counter::AsidRollovers);
        stats::add(Counter::AsidRollovers, a.rollovers().saturating_sub(have));
    }
}

/// A configuration error before the console is up: report through semihosting, exit 2.
fn early_config_error(msg: core::fmt::Arguments<'_>) -> ! {
    kprintln!("{msg}");
    semihosting::exit(ExitCode::BadConfig.code())
}

fn emit_summary_early(boot_el: u64, p: &PlatformInfo) {
    workload::summary::emit_minimal(boot_el, p.cpus);
}

/// An unexpected exception: full report, summary, exit 3.
pub fn fatal_exception(what: &str, origin: &str, frame: &TrapFrame) -> ! {
    console::with_console_forced(|out| {
        let _ = writeln!(
            out,
            "FATAL: unexpected {what} on cpu{} ({origin})",
            broadside_base::cpu_id()
        );
        let _ = frame.dump(out);
    });
    exit::finish(ExitCode::Panic, None)
}

/// A Rust panic: message, location, CPU, backtrace, summary, exit 3.
pub fn fatal_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let fp = broadside_arch::aarch64::exception::current_frame_pointer();
    console::with_console_forced(|out| {
        let _ = writeln!(
            out,
            "PANIC on cpu{}: {}",
            broadside_base::cpu_id(),
            info.message()
        );
        if let Some(loc) = info.location() {
            let _ = writeln!(out, "  at {}:{}:{}", loc.file(), loc.line(), loc.column());
        }
        let _ = writeln!(out, "  backtrace:");
        let _ = broadside_arch::aarch64::exception::backtrace_from(fp, 0, out);
    });
    exit::finish(ExitCode::Panic, None)
}
