//! Kernel bring-up and the paths out: the boot CPU's sequence, a secondary's, the timer tick,
//! idling, the watchdog, and every exit (pass, fail, bad arguments, panic, exception, timeout),
//! each of which ends with the `summary:` line.

use crate::arch::aarch64::exception::TrapFrame;
use crate::arch::aarch64::layout::{self, ImageLayout, mmio_virt, phys_to_virt};
use crate::arch::aarch64::{cpu, gic, mmu, psci, semihosting, timer};
use crate::kprintln;
use crate::mm::frame::{self, FrameKind};
use crate::mm::kmap::KernelTables;
use crate::mm::pte::{Attributes, PAGE_SIZE};
use crate::platform::bootargs::BootArgs;
use crate::platform::console;
use crate::platform::dtb::{self, PlatformInfo};
use crate::smp::{self, CpuState};
use crate::stats::{self, Counter};
use crate::workload::{self, Outcome};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Once;

/// Exit codes (the design's contract).
pub mod exit_code {
    pub const PASS: i32 = 0;
    pub const CHECK_FAILED: i32 = 1;
    pub const BAD_CONFIG: i32 = 2;
    pub const PANIC: i32 = 3;
    pub const WATCHDOG: i32 = 4;
}

/// Where QEMU puts the DTB for an ELF kernel that does not cover the start of RAM: the start of
/// RAM, which `linker.ld` leaves free by loading the image 2 MiB above it.
const ELF_BOOT_DTB_OFFSET_BELOW_IMAGE: u64 = 2 << 20;

/// Facts about this boot that the banner, the workloads and the summary need.
#[derive(Debug)]
pub struct BootInfo {
    pub platform: PlatformInfo,
    pub args: BootArgs,
    pub boot_el: u64,
    pub features: cpu::CpuFeatures,
    pub psci_version: Option<(u16, u16)>,
}

static BOOT: Once<BootInfo> = Once::new();
/// Set by the first CPU to start exiting; any other CPU that tries to exit parks instead.
static EXITING: AtomicBool = AtomicBool::new(false);

/// The boot facts (after `boot_cpu_main` has parsed them).
pub fn boot_info() -> &'static BootInfo {
    BOOT.get().expect("boot info not ready")
}

/// The boot CPU's path from `kernel_main` to the workload and out.
pub fn boot_cpu_main(dtb_pa: u64, boot_el: u64) -> ! {
    smp::cpu(0).mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    crate::mm::heap::init_bootstrap();
    let image = ImageLayout::get();
    let (image_pa, image_end_pa) = image.phys_range();
    let dtb_pa = if dtb_pa != 0 {
        dtb_pa
    } else {
        image_pa - ELF_BOOT_DTB_OFFSET_BELOW_IMAGE
    };

    // SAFETY: the early linear map covers the 1 GiB holding the image and the DTB below it; the
    // DTB's pages are reserved below and never handed out.
    let platform = match unsafe { dtb::parse(phys_to_virt(dtb_pa), dtb_pa) } {
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
    let window_start = image_pa & !((1 << 30) - 1);
    let early_window = (window_start, window_start + (1 << 30));
    let usable = usable_ranges(&platform, image_pa, image_end_pa);
    for &(s, e) in &usable {
        let (s, e) = (s.max(early_window.0), e.min(early_window.1));
        if e > s {
            frame::add_range(s, e);
        }
    }
    let (ram_lo, ram_hi) = ram_extent(&platform);
    frame::init_metadata(ram_lo, ram_hi);

    let tables = build_kernel_tables(&platform, &image)
        .unwrap_or_else(|e| early_config_error(format_args!("error: kernel tables: {e:?}")));
    // SAFETY: boot CPU, no other CPU online, IRQs masked since reset; the new tables map the
    // image, its stacks and the linear map at the addresses the early tables used.
    unsafe { mmu::replace_kernel_tables(tables.root()) };
    crate::mm::kmap::install(tables);
    mmu::drop_boot_idmap();

    // The rest of RAM, now that the linear map covers it.
    for &(s, e) in &usable {
        if e > early_window.1 {
            frame::add_range(s.max(early_window.1), e);
        }
        if s < early_window.0 {
            frame::add_range(s, e.min(early_window.0));
        }
    }

    // SAFETY: the UART's page is mapped as device memory at this address and used only here.
    unsafe { console::init(mmio_virt(platform.uart.base)) };
    let args = match BootArgs::parse(platform.bootargs) {
        Ok(a) => a,
        Err(e) => {
            kprintln!("error: {e}");
            emit_summary_early(boot_el, &platform);
            semihosting::exit(exit_code::BAD_CONFIG);
        }
    };
    console::init_log(args.log.level_filter());
    grow_heap();

    let features = cpu::CpuFeatures::read();
    BOOT.call_once(|| BootInfo {
        args,
        boot_el,
        features,
        psci_version: psci::version(),
        platform,
    });
    let info = boot_info();
    let cpus = info.platform.cpus;

    // GICv3: arm-gic drives one contiguous redistributor region; QEMU puts 123 there.
    let redists = info.platform.gicr.size / (128 * 1024);
    if cpus as u64 > redists {
        config_error(format_args!(
            "error: gic: {cpus} CPUs but the first redistributor region holds {redists}; broadside supports that many"
        ));
    }
    // SAFETY: both regions were mapped as device memory by `build_kernel_tables` and nothing
    // else uses them; `cpus` fits the region (checked above).
    if let Err(e) = unsafe {
        gic::init(
            mmio_virt(info.platform.gicd.base),
            mmio_virt(info.platform.gicr.base),
            cpus,
        )
    } {
        config_error(format_args!("error: gic: {e:?}"));
    }
    timer::set_rate(info.args.hz);
    init_memory_policy(info);
    // RCU counts every CPU in the DTB from the start: secondaries enter their idle loop (an
    // extended quiescent state) as soon as they are up.
    crate::sync::rcu_kernel::init(cpus);
    cpu_local_init(0);

    let timeout_s = info
        .args
        .timeout
        .unwrap_or_else(|| workload::default_timeout(&info.args));
    arm_watchdog(timeout_s);
    log::info!(
        "broadside: {} CPUs, entered at EL{}, PSCI over {}, bootargs \"{}\"",
        cpus,
        boot_el,
        conduit.name(),
        info.platform.bootargs
    );

    match smp::boot::start_secondaries(&info.platform.cpu_mpidrs[..cpus], info.args.cpus_wait_ms) {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => {
            let mut line = alloc::string::String::new();
            for c in missing.iter() {
                line.push_str(&alloc::format!(" cpu{c}"));
            }
            log::error!(
                "{} CPU(s) did not come online within {} ms:{}",
                missing.count,
                info.args.cpus_wait_ms,
                line
            );
            watchdog_fire(format_args!("CPUs did not come online"));
        }
        Err(e) => config_error(format_args!("error: smp: could not start CPUs: {e:?}")),
    }
    log::info!("{} CPUs online", smp::online_count());

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
fn init_memory_policy(info: &BootInfo) {
    use crate::platform::bootargs::Bug;
    let f = &info.features;
    crate::mm::tlb::init(
        crate::mm::tlbflush::TlbFeatures::from_id_regs(f.isar0, f.mmfr2),
        info.args.flush,
        info.args.bugs,
    );
    crate::mm::table_free::init(info.args.tablefree, info.args.bugs.has(Bug::FreeTablesNow));
    let bits = info
        .args
        .asid_bits
        .map_or(f.asid_bits, |b| (b as u32).min(f.asid_bits));
    if (1u64 << bits) - 1 <= info.platform.cpus as u64 {
        config_error(format_args!(
            "error: bootargs: asid_bits={bits}: needs more than {} ASIDs ({} CPUs each keep one at rollover)",
            info.platform.cpus, info.platform.cpus
        ));
    }
    crate::mm::aspace::init_asids(bits, info.platform.cpus);
    crate::mm::fault_inject::init(
        info.args.fail_alloc_per_mille,
        info.args.seed,
        info.args.bugs,
    );
    crate::mm::shared::init(info.args.unshare, info.args.bugs.has(Bug::UnshareNoSync));
}

fn ram_extent(p: &PlatformInfo) -> (u64, u64) {
    let ranges = &p.memory[..p.memory_ranges];
    let lo = ranges.iter().map(|r| r.base).min().unwrap_or(0);
    let hi = ranges.iter().map(|r| r.end()).max().unwrap_or(0);
    (lo, hi)
}

/// Builds the W^X kernel tables: linear map, image sections, boot stacks (guards unmapped), MMIO.
fn build_kernel_tables(
    p: &PlatformInfo,
    image: &ImageLayout,
) -> Result<KernelTables, crate::mm::kmap::MapError> {
    let mut t = KernelTables::new()?;
    for r in &p.memory[..p.memory_ranges] {
        t.map(
            phys_to_virt(r.base),
            r.base,
            r.size,
            Attributes::kernel_data(),
            true,
        )?;
    }
    let pa = |va: u64| va - layout::KIMAGE_VBASE;
    let mut map_image = |start: u64, end: u64, attrs: Attributes| {
        t.map(start, pa(start), end - start, attrs, false)
    };
    map_image(image.start, image.text_end, Attributes::kernel_text())?;
    map_image(
        image.text_end,
        image.rodata_end,
        Attributes::kernel_rodata(),
    )?;
    map_image(
        image.rodata_end,
        image.boot_stack_guard,
        Attributes::kernel_data(),
    )?;
    map_image(
        image.boot_stack_guard + PAGE_SIZE,
        image.boot_exc_stack_guard,
        Attributes::kernel_data(),
    )?;
    map_image(
        image.boot_exc_stack_guard + PAGE_SIZE,
        image.end,
        Attributes::kernel_data(),
    )?;
    for dev in [p.uart, p.gicd, p.gicr] {
        let base = dev.base & !(PAGE_SIZE - 1);
        let size = (dev.end() - base).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        t.map(mmio_virt(base), base, size, Attributes::device(), false)?;
    }
    Ok(t)
}

/// Grows the heap by 1/16 of free memory (4..64 MiB).
fn grow_heap() {
    let (free, _) = frame::stats();
    let want = (free * PAGE_SIZE / 16).clamp(4 << 20, 64 << 20);
    let order = (want / PAGE_SIZE).ilog2();
    if let Some(pa) = frame::alloc_frames(order, FrameKind::Kernel) {
        // SAFETY: the frames were just allocated for the heap and stay with it.
        unsafe {
            crate::mm::heap::add_region(phys_to_virt(pa) as usize, (PAGE_SIZE << order) as usize)
        };
    }
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
    gic::enable_private(IntId::sgi(smp::ipi::SGI_KICK), cpu_index, sgi_received);
    gic::enable_private(
        IntId::sgi(smp::ipi::SGI_PING),
        cpu_index,
        workload::selftest::ping_handler,
    );
    crate::mm::tlb::register_ipis(cpu_index);
    smp::this_cpu()
        .last_tick_at
        .store(cpu::counter(), Ordering::Relaxed);
    timer::start();
    smp::percpu::mark_online();
    cpu::irq_enable();
}

/// A secondary CPU's path from `secondary_main`.
pub fn secondary_cpu_main(cpu_index: usize) -> ! {
    mmu::drop_boot_idmap();
    cpu_local_init(cpu_index);
    smp::work::idle_loop()
}

fn sgi_received() {
    stats::count(Counter::SgisReceived);
}

/// The timer interrupt: re-arm, count, report a quiescent state, check the watchdog.
fn tick() {
    timer::rearm();
    let this = smp::this_cpu();
    let now = cpu::counter();
    let ticks = this.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    this.last_tick_at.store(now, Ordering::Relaxed);
    stats::count(Counter::TimerTicks);
    crate::sync::rcu_kernel::quiescent();
    check_watchdog(now, ticks);
}

/// Idles this CPU until the next interrupt (a secondary with no work).
pub fn idle_wait() {
    let irq = cpu::irq_save();
    crate::sync::rcu_kernel::idle_enter();
    cpu::wfi();
    crate::sync::rcu_kernel::idle_exit();
    // The pending interrupt is taken here, after the CPU has left its extended quiescent state.
    cpu::irq_restore(irq);
}

/// One iteration of a busy-wait on other CPUs: a quiescent state for RCU.
pub fn wait_relax() {
    crate::mm::tlb::serve_ipi_requests();
    crate::sync::rcu_kernel::quiescent();
    cpu::relax();
}

// ---- watchdog ----------------------------------------------------------------------------

static WATCHDOG_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// Counter value when the watchdog was armed (for the report: how long into the run it fired).
static WATCHDOG_ARMED_AT: AtomicU64 = AtomicU64::new(0);
/// The `timeout=` in force, in seconds (for the report).
static WATCHDOG_TIMEOUT_S: AtomicU64 = AtomicU64::new(0);
static WATCHDOG_FIRED: AtomicBool = AtomicBool::new(false);

fn arm_watchdog(seconds: u32) {
    let now = cpu::counter();
    WATCHDOG_ARMED_AT.store(now, Ordering::Relaxed);
    WATCHDOG_TIMEOUT_S.store(seconds as u64, Ordering::Relaxed);
    WATCHDOG_DEADLINE.store(
        now + seconds as u64 * cpu::counter_frequency(),
        Ordering::Relaxed,
    );
}

/// Ticks between one CPU's scans of every CPU for a stall: the scan is O(CPUs) and the stall
/// limit is seconds, so each CPU need not do it on every tick.
const STALL_SCAN_EVERY: u64 = 16;

/// Two checks, from every CPU's tick: the run's deadline (`timeout=`), and the stall rule of
/// `smp::stall` — a working CPU that has taken no tick for longer than the limit is stuck with
/// IRQs masked. The stall check is what names a stuck CPU within seconds; the deadline only
/// says the run as a whole took too long.
fn check_watchdog(now: u64, ticks: u64) {
    let freq = cpu::counter_frequency();
    if now > WATCHDOG_DEADLINE.load(Ordering::Relaxed) {
        watchdog_fire(format_args!(
            "the run did not finish within timeout={} s ({} ms after the watchdog was armed)",
            WATCHDOG_TIMEOUT_S.load(Ordering::Relaxed),
            smp::stall::ticks_to_ms(
                now.saturating_sub(WATCHDOG_ARMED_AT.load(Ordering::Relaxed)),
                freq
            ),
        ));
    }
    if !ticks.is_multiple_of(STALL_SCAN_EVERY) {
        return;
    }
    let limit_ms = smp::stall::stall_limit_ms(smp::online_count());
    let limit = smp::stall::ms_to_ticks(limit_ms, freq);
    for c in smp::online_cpus() {
        let last = c.last_tick_at.load(Ordering::Relaxed);
        if smp::stall::is_stalled(now, last, limit) && c.state() == CpuState::Working {
            let ms = |ticks: u64| smp::stall::ticks_to_ms(ticks, freq);
            let deadline = WATCHDOG_DEADLINE.load(Ordering::Relaxed);
            watchdog_fire(format_args!(
                "cpu{} stopped taking timer ticks: last tick {} ms ago (limit {} ms), {} ms after the watchdog was armed, {} ms before the run deadline",
                c.index,
                ms(now - last),
                limit_ms,
                ms(now.saturating_sub(WATCHDOG_ARMED_AT.load(Ordering::Relaxed))),
                ms(deadline.saturating_sub(now)),
            ));
        }
    }
}

/// Prints why (one `watchdog: ...` line), then every CPU's state (one line each), then the
/// summary (fail), and exits with code 4. Allocates nothing: it runs in the tick handler, and
/// the stuck CPU may hold the heap lock.
pub fn watchdog_fire(why: core::fmt::Arguments<'_>) -> ! {
    if WATCHDOG_FIRED.swap(true, Ordering::AcqRel) {
        park();
    }
    let now = cpu::counter();
    let freq = cpu::counter_frequency();
    console::with_console_forced(|out| {
        let _ = writeln!(
            out,
            "watchdog: {why} (seen by cpu{})",
            crate::arch::cpu_id()
        );
        for c in smp::online_cpus().chain(
            (0..boot_info_opt().map_or(0, |b| b.platform.cpus))
                .map(smp::cpu)
                .filter(|c| !c.is_online()),
        ) {
            let since_tick_ms = smp::stall::ticks_to_ms(
                now.saturating_sub(c.last_tick_at.load(Ordering::Relaxed)),
                freq,
            );
            let _ = writeln!(
                out,
                "watchdog: cpu{} mpidr={:#x} {} state={} role={} ticks={} last_tick={}ms_ago heartbeat={} in_walker={}",
                c.index,
                c.mpidr.load(Ordering::Relaxed),
                if c.is_online() { "online" } else { "OFFLINE" },
                c.state().name(),
                workload::role_name(c.role.load(Ordering::Relaxed)),
                c.ticks.load(Ordering::Relaxed),
                since_tick_ms,
                c.heartbeat.load(Ordering::Relaxed),
                c.in_walker.load(Ordering::Relaxed),
            );
        }
    });
    finish(Outcome::fail_with_code(exit_code::WATCHDOG))
}

fn boot_info_opt() -> Option<&'static BootInfo> {
    BOOT.get()
}

// ---- exits -------------------------------------------------------------------------------

/// Prints the summary for `outcome` and exits with its code. Only the first CPU to get here
/// prints; any other parks.
pub fn finish(outcome: Outcome) -> ! {
    if EXITING.swap(true, Ordering::AcqRel) {
        park();
    }
    publish_derived_counters();
    workload::summary::emit(boot_info_opt(), &outcome);
    semihosting::exit(outcome.code)
}

/// Copies counters kept by subsystems (RCU, the ASID allocator) into the summary counters.
fn publish_derived_counters() {
    crate::sync::rcu_kernel::publish_stats();
    if let Some(a) = crate::mm::aspace::asid_allocator_opt() {
        let have = stats::read(Counter::AsidRollovers);
        stats::add(Counter::AsidRollovers, a.rollovers().saturating_sub(have));
    }
}

/// Stops this CPU for good (another CPU is exiting).
pub fn park() -> ! {
    cpu::irq_save();
    smp::this_cpu().set_state(CpuState::Parked);
    loop {
        cpu::wfi();
    }
}

/// A configuration error after the console is up: the message, the summary, exit 2.
pub fn config_error(msg: core::fmt::Arguments<'_>) -> ! {
    kprintln!("{msg}");
    finish(Outcome::fail_with_code(exit_code::BAD_CONFIG))
}

/// A configuration error before the console is up: report through semihosting, exit 2.
fn early_config_error(msg: core::fmt::Arguments<'_>) -> ! {
    kprintln!("{msg}");
    semihosting::exit(exit_code::BAD_CONFIG)
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
            crate::arch::cpu_id()
        );
        let _ = frame.dump(out);
    });
    finish(Outcome::fail_with_code(exit_code::PANIC))
}

/// A Rust panic: message, location, CPU, backtrace, summary, exit 3.
pub fn fatal_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let fp = crate::arch::aarch64::exception::current_frame_pointer();
    console::with_console_forced(|out| {
        let _ = writeln!(
            out,
            "PANIC on cpu{}: {}",
            crate::arch::cpu_id(),
            info.message()
        );
        if let Some(loc) = info.location() {
            let _ = writeln!(out, "  at {}:{}:{}", loc.file(), loc.line(), loc.column());
        }
        let _ = writeln!(out, "  backtrace:");
        let _ = crate::arch::aarch64::exception::backtrace_from(fp, 0, out);
    });
    finish(Outcome::fail_with_code(exit_code::PANIC))
}

/// Free memory for the banner and summary: (free frames, total frames).
pub fn memory_stats() -> (u64, u64) {
    frame::stats()
}
