//! `workload=selftest`: in-kernel checks of the foundation — frame allocator and heap, a timer
//! tick on every CPU, an SGI round trip to every CPU, and the W^X layout (a write to text faults
//! and is recovered through the fix-up table; stack guard pages are unmapped). Each check prints
//! one line; any failure makes the run exit 1.

use super::{Outcome, role};
use crate::arch::aarch64::exception::{probe_read_u64, probe_write_u64};
use crate::arch::aarch64::layout::{ImageLayout, phys_to_virt};
use crate::arch::aarch64::{cpu, gic};
use crate::kernel::BootInfo;
use crate::mm::aspace::AddressSpace;
use crate::mm::frame::{self, FrameKind};
use crate::mm::gather::MmuGather;
use crate::mm::pte::{Attributes, DescriptorKind, PAGE_SIZE};
use crate::platform::bootargs::FlushMode;
use crate::smp::{self, ipi};
use crate::stats::{Counter, Snapshot};
use crate::{kprintln, stats};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// The result of one check: `Err` carries what went wrong.
type Check = Result<(), alloc::string::String>;

/// A named self-test check.
type NamedCheck = (&'static str, fn(&BootInfo) -> Check);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err(alloc::format!($($fmt)*));
        }
    };
}

/// Runs every check; the outcome fails if any does.
pub fn run(info: &BootInfo) -> Outcome {
    smp::this_cpu()
        .role
        .store(role::SELFTEST, Ordering::Relaxed);
    let checks: &[NamedCheck] = &[
        ("frame allocator", check_frames),
        ("heap", check_heap),
        ("timer tick on every CPU", check_ticks),
        ("SGI round trip to every CPU", check_sgi_round_trip),
        ("W^X layout and fix-ups", check_wx_layout),
        ("stack guard pages", check_guards),
        (
            "TLB flush of 512 pages: exact TLBI and DSB counts",
            check_range_flush_counts,
        ),
        (
            "freed tables are flushed with walk caches",
            check_walk_cache_flush,
        ),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check(info) {
            Ok(()) => kprintln!("selftest: {name}: ok"),
            Err(why) => {
                failed += 1;
                kprintln!("selftest: {name}: FAIL: {why}");
            }
        }
    }
    kprintln!(
        "selftest: {} of {} checks passed",
        checks.len() - failed,
        checks.len()
    );
    smp::this_cpu().role.store(role::NONE, Ordering::Relaxed);
    Outcome::from_checks(failed == 0)
}

fn check_frames(_: &BootInfo) -> Check {
    let (free_before, total) = frame::stats();
    ensure!(
        free_before > 0 && free_before <= total,
        "free {free_before} of {total}"
    );
    let mut got = Vec::new();
    for i in 0..64u64 {
        let pa = frame::alloc_frame(FrameKind::Kernel).ok_or("allocation failed")?;
        ensure!(pa % PAGE_SIZE == 0, "frame {pa:#x} not page aligned");
        let m = frame::meta(pa);
        ensure!(
            m.refcount.load(Ordering::Relaxed) == 1,
            "refcount of a new frame is not 1"
        );
        ensure!(m.kind() == FrameKind::Kernel as u32, "kind not recorded");
        // SAFETY: the frame was just allocated to this check and is in the linear map.
        let words = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(pa) as *mut u64, 512) };
        ensure!(words.iter().all(|w| *w == 0), "frame {pa:#x} not zeroed");
        words[0] = i;
        got.push(pa);
    }
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure!(sorted.len() == got.len(), "a frame was handed out twice");
    ensure!(
        frame::stats().0 == free_before - 64,
        "free count off by {}",
        free_before - 64 - frame::stats().0
    );
    let big = frame::alloc_frames(9, FrameKind::Kernel).ok_or("2 MiB allocation failed")?;
    ensure!(
        big % (PAGE_SIZE << 9) == 0,
        "order-9 block {big:#x} not naturally aligned"
    );
    frame::free_frames(big, 9);
    for pa in got {
        frame::free_frame(pa);
        ensure!(
            frame::meta(pa).refcount.load(Ordering::Relaxed) == 0,
            "freed frame still counted"
        );
    }
    ensure!(
        frame::stats().0 == free_before,
        "free count not restored: {} vs {free_before}",
        frame::stats().0
    );
    Ok(())
}

fn check_heap(_: &BootInfo) -> Check {
    let (used_before, total) = crate::mm::heap::stats();
    ensure!(total >= 4 << 20, "heap only {total} bytes");
    {
        let v: Vec<u64> = (0..100_000).collect();
        ensure!(
            v.iter().sum::<u64>() == 99_999 * 100_000 / 2,
            "heap data corrupted"
        );
        let b = alloc::boxed::Box::new([7u8; 8192]);
        ensure!(b.iter().all(|x| *x == 7), "box corrupted");
        ensure!(
            crate::mm::heap::stats().0 > used_before,
            "allocations not accounted"
        );
    }
    let used_after = crate::mm::heap::stats().0;
    ensure!(
        used_after == used_before,
        "heap leaked {} bytes",
        used_after as i64 - used_before as i64
    );
    Ok(())
}

/// Waits up to `ms` for `cond`, as a quiescent busy-wait.
fn wait_for(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = cpu::counter() + cpu::counter_frequency() * ms / 1000;
    while cpu::counter() < deadline {
        if cond() {
            return true;
        }
        crate::kernel::wait_relax();
    }
    cond()
}

fn check_ticks(_: &BootInfo) -> Check {
    let start: Vec<u64> = smp::online_cpus()
        .map(|c| c.ticks.load(Ordering::Relaxed))
        .collect();
    let ok = wait_for(5000, || {
        smp::online_cpus()
            .zip(&start)
            .all(|(c, s)| c.ticks.load(Ordering::Relaxed) >= s + 2)
    });
    if !ok {
        let stuck: Vec<usize> = smp::online_cpus()
            .zip(&start)
            .filter(|(c, s)| c.ticks.load(Ordering::Relaxed) < *s + 2)
            .map(|(c, _)| c.index)
            .collect();
        return Err(alloc::format!("no ticks within 5 s on CPUs {stuck:?}"));
    }
    Ok(())
}

/// Pings received per CPU.
static PINGS: [AtomicU64; crate::config::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::config::MAX_CPUS];

/// The SGI_PING handler: acknowledge by counting.
pub fn ping_handler() {
    stats::count(stats::Counter::SgisReceived);
    PINGS[crate::arch::cpu_id()].fetch_add(1, Ordering::Release);
}

fn check_sgi_round_trip(_: &BootInfo) -> Check {
    let me = crate::arch::cpu_id();
    for c in smp::online_cpus().filter(|c| c.index != me) {
        let before = PINGS[c.index].load(Ordering::Acquire);
        gic::send_sgi(ipi::SGI_PING, c.mpidr.load(Ordering::Relaxed));
        ensure!(
            wait_for(2000, || PINGS[c.index].load(Ordering::Acquire)
                == before + 1),
            "cpu{} did not acknowledge SGI {} within 2 s",
            c.index,
            ipi::SGI_PING
        );
    }
    Ok(())
}

fn check_wx_layout(_: &BootInfo) -> Check {
    let image = ImageLayout::get();
    let text = check_wx_layout as *const () as u64;
    ensure!(
        (image.start..image.text_end).contains(&text),
        "check function outside .text"
    );
    let faults_before = stats::read(stats::Counter::FaultsFixedUp);
    // SAFETY: `text` is mapped; reading it is harmless, and the write must fault (if it did not,
    // it would rewrite the word with its own value).
    unsafe {
        let word = probe_read_u64(text as *const u64)
            .map_err(|f| alloc::format!("reading text faulted: {:?}", f.esr))?;
        match probe_write_u64(text as *mut u64, word) {
            Ok(()) => return Err("a write to kernel text succeeded".into()),
            Err(f) => ensure!(
                f.esr.is_permission_fault() && f.far == text,
                "write to text: {:?} at {:#x}",
                f.esr,
                f.far
            ),
        }
        let bss = &PINGS as *const _ as u64;
        ensure!(probe_read_u64(bss as *const u64).is_ok(), ".bss unreadable");
        let rodata = b"rodata probe".as_ptr() as u64 & !7;
        let w = probe_read_u64(rodata as *const u64).map_err(|_| "rodata unreadable")?;
        ensure!(
            probe_write_u64(rodata as *mut u64, w).is_err(),
            "a write to .rodata succeeded"
        );
    }
    ensure!(
        stats::read(stats::Counter::FaultsFixedUp) == faults_before + 2,
        "fix-up count is not exactly 2 more"
    );
    // The live tables say the same: text RX, data RW + never executable.
    let (text_desc, _) = crate::mm::kmap::lookup_live(text).ok_or("text not mapped")?;
    let (data_desc, _) =
        crate::mm::kmap::lookup_live(&PINGS as *const _ as u64).ok_or("bss not mapped")?;
    let (linear_desc, _) = crate::mm::kmap::lookup_live(phys_to_virt(
        text - crate::arch::aarch64::layout::KIMAGE_VBASE,
    ))
    .ok_or("linear alias of text not mapped")?;
    for (name, d, level, want_write, want_exec) in [
        ("text", text_desc, 3, false, true),
        ("bss", data_desc, 3, true, false),
        ("linear map", linear_desc, 2, true, false),
    ] {
        let attrs = match d.kind(level) {
            DescriptorKind::Page { attrs, .. } | DescriptorKind::Block { attrs, .. } => attrs,
            _ => return Err(alloc::format!("{name}: not a leaf at level {level}")),
        };
        let writable = attrs.access.el1_writable();
        ensure!(writable == want_write, "{name}: writable={writable}");
        let exec = !attrs.privileged_execute_never;
        ensure!(exec == want_exec, "{name}: executable={exec}");
        ensure!(!(writable && exec), "{name}: writable and executable");
    }
    Ok(())
}

fn check_guards(_: &BootInfo) -> Check {
    let image = ImageLayout::get();
    let mut guards = alloc::vec![image.boot_stack_guard, image.boot_exc_stack_guard];
    for c in smp::online_cpus().filter(|c| c.index != 0) {
        let ((kb, _), (eb, _)) = crate::arch::aarch64::layout::stack_slot(c.index);
        guards.push(kb - PAGE_SIZE);
        guards.push(eb - PAGE_SIZE);
    }
    for g in guards {
        // SAFETY: a guard page must be unmapped; the probe recovers from the fault.
        match unsafe { probe_read_u64(g as *const u64) } {
            Ok(_) => return Err(alloc::format!("guard page {g:#x} is mapped")),
            Err(f) => ensure!(f.esr.is_translation_fault(), "guard {g:#x}: {:?}", f.esr),
        }
    }
    Ok(())
}

/// Where the TLB checks map their pages (2 MiB aligned).
const TEST_SPACE_BASE: u64 = 0x4000_0000;

/// A new space with `pages` pages mapped at `TEST_SPACE_BASE`, loaded on every CPU once so
/// that its flushes are broadcast as a running process's would be.
fn space_active_everywhere(pages: u64) -> Result<AddressSpace, alloc::string::String> {
    let space = AddressSpace::new().ok_or("no memory for a space")?;
    {
        let _g = space.lock.lock();
        space
            .map_pages(TEST_SPACE_BASE, pages, Attributes::user_data_rw())
            .ok_or("no memory for pages")?;
    }
    activate_everywhere(&space);
    Ok(space)
}

/// Activates `space` on every online CPU and back, so it counts as active on all of them.
fn activate_everywhere(space: &AddressSpace) {
    fn visit(_cpu: usize, arg: usize) {
        // SAFETY: `arg` points to the caller's space, alive across `run_on_all`.
        let space = unsafe { &*(arg as *const AddressSpace) };
        if space.activate() {
            space.deactivate();
        }
    }
    smp::work::run_on_all(visit, space as *const AddressSpace as usize);
}

/// Unmapping 512 contiguous 4 KiB pages (no table freed) costs exactly one range TLBI with
/// FEAT_TLBIRANGE, or one ASID flush without it, and one DSB ISH — or, on one CPU, one local
/// operation and no DSB ISH.
fn check_range_flush_counts(info: &BootInfo) -> Check {
    if info.args.flush != FlushMode::Tlbi || !info.args.bugs.is_empty() {
        kprintln!(
            "selftest: (skipped: flush={} bug={})",
            info.args.flush.name(),
            info.args.bugs
        );
        return Ok(());
    }
    let base = TEST_SPACE_BASE;
    let space = space_active_everywhere(1024)?;
    // Pages 256..768 span both level-3 tables without emptying either: a leaf-only flush.
    let before = Snapshot::take();
    {
        let _g = space.lock.lock();
        let mut g = MmuGather::new_range(&space);
        space.unmap(&mut g, base + 256 * PAGE_SIZE, base + 768 * PAGE_SIZE);
        g.finish();
    }
    let d = Snapshot::take().since(&before);
    let (ops, range, asid, local, dsb) = (
        d.get(Counter::TlbiOps),
        d.get(Counter::TlbiRangeOps),
        d.get(Counter::TlbiAsidOps),
        d.get(Counter::TlbiLocalOps),
        d.get(Counter::DsbIsh),
    );
    let got =
        alloc::format!("tlbi_ops={ops} range={range} asid={asid} local={local} dsb_ish={dsb}");
    ensure!(
        d.get(Counter::PagesUnmapped) == 512,
        "pages_unmapped={}",
        d.get(Counter::PagesUnmapped)
    );
    if smp::online_count() == 1 {
        ensure!(
            local == ops && dsb == 0 && (1..=2).contains(&ops),
            "one CPU: {got}"
        );
    } else if info.features.tlbi_range {
        ensure!(
            ops == 1 && range == 1 && asid == 0 && dsb == 1,
            "with FEAT_TLBIRANGE: {got}"
        );
    } else {
        ensure!(
            ops == 1 && asid == 1 && range == 0 && dsb == 1,
            "without FEAT_TLBIRANGE: {got}"
        );
    }
    kprintln!("selftest:   512-page unmap: {got}");
    space.destroy();
    Ok(())
}

/// Unmapping a whole 2 MiB of pages frees its level-3 table; the gather's flush must then use
/// the walk-cache forms (rule 5), which the kernel verifies itself.
fn check_walk_cache_flush(info: &BootInfo) -> Check {
    if !info.args.bugs.is_empty() {
        return Ok(());
    }
    let base = TEST_SPACE_BASE;
    let space = space_active_everywhere(512)?;
    let before = Snapshot::take();
    let record = {
        let _g = space.lock.lock();
        let mut g = MmuGather::new_range(&space);
        space.unmap(&mut g, base, base + 512 * PAGE_SIZE);
        g.flush_mmu();
        let r = g.last_flush;
        g.finish();
        r
    };
    let d = Snapshot::take().since(&before);
    ensure!(
        !record.leaf_only,
        "a flush covering a freed table was leaf-only: {record:?}"
    );
    ensure!(
        d.get(Counter::LeafOnlyFlushDetected) == 0,
        "leaf_only_flush_detected rose"
    );
    ensure!(
        space.lookup(base).is_none(),
        "page still mapped after unmap"
    );
    space.destroy();
    Ok(())
}
