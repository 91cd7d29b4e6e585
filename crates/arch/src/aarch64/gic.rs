//! GICv3 through arm-gic: distributor and redistributors set up once by the boot CPU, each CPU's
//! interface by that CPU; interrupt dispatch to registered handlers; SGIs.
//!
//! arm-gic issues no barriers of its own. A `DSB ISHST` before an SGI makes the stores that the
//! SGI announces visible before the target can take it; the ISB after enabling the CPU interface
//! makes the system-register writes take effect.

use aarch64_cpu::asm::barrier;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use broadside_base::IrqSpinlock;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The distributor/redistributor driver; configuration calls take `&mut`, so it lives in a lock.
static GIC: IrqSpinlock<Option<GicV3<'static>>> = IrqSpinlock::new(None);

/// Handlers for SGIs and PPIs (INTIDs 0..32), as `fn()` pointers stored as usize (0 = none).
static HANDLERS: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];

/// Priority for every interrupt broadside uses: all equal, so none preempts another (handlers
/// run with IRQs masked anyway).
const PRIORITY: u8 = 0x80;

/// Initialises the GIC from the boot CPU.
///
/// # Safety
///
/// `gicd` and `gicr` must be the virtual addresses of the distributor and the (contiguous)
/// redistributor region, mapped as device memory and used by nothing else; `cpus` must not
/// exceed the redistributors in that region.
pub unsafe fn init(gicd: u64, gicr: u64, cpus: usize) -> Result<(), arm_gic::gicv3::GicError> {
    let gicd = NonNull::new(gicd as *mut Gicd).expect("GICD address is null");
    let gicr = NonNull::new(gicr as *mut GicrSgi).expect("GICR address is null");
    // SAFETY: the caller guarantees both regions are mapped device memory owned by this driver.
    let mut gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, cpus)? };
    gic.setup(0);
    *GIC.lock() = Some(gic);
    finish_cpu_interface();
    Ok(())
}

/// Brings up GIC state for secondary CPU `cpu` (its redistributor and CPU interface).
pub fn init_secondary(cpu: usize) {
    if let Some(gic) = GIC.lock().as_mut() {
        gic.init_cpu(cpu);
    }
    GicCpuInterface::enable_group1(true);
    finish_cpu_interface();
}

fn finish_cpu_interface() {
    GicCpuInterface::set_priority_mask(0xff);
    barrier::isb(barrier::SY);
}

/// Registers `handler` for private interrupt `intid` (an SGI or PPI) and enables it on `cpu`.
/// Handlers are shared by all CPUs; enabling is per CPU.
pub fn enable_private(intid: IntId, cpu: usize, handler: fn()) {
    let idx = intid.raw_value() as usize;
    HANDLERS[idx].store(handler as *const () as usize, Ordering::Release);
    let mut guard = GIC.lock();
    let gic = guard.as_mut().expect("GIC not initialised");
    gic.set_interrupt_priority(intid, Some(cpu), PRIORITY)
        .expect("GIC priority");
    if intid.is_ppi() {
        gic.set_trigger(intid, Some(cpu), Trigger::Level)
            .expect("GIC trigger");
    }
    gic.enable_interrupt(intid, Some(cpu), true)
        .expect("GIC enable");
}

/// Sends SGI `sgi` to the CPU whose affinity is `mpidr`. Stores made before the call are
/// visible to the target's handler.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    barrier::dsb(barrier::ISHST);
    let target = SgiTarget::List {
        affinity3: ((mpidr >> 32) & 0xff) as u8,
        affinity2: ((mpidr >> 16) & 0xff) as u8,
        affinity1: ((mpidr >> 8) & 0xff) as u8,
        target_list: 1 << (mpidr & 0xf),
    };
    GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1)
        .expect("SGI number is valid");
}

/// Sends SGI `sgi` to every CPU but this one.
pub fn send_sgi_all_others(sgi: u32) {
    barrier::dsb(barrier::ISHST);
    GicCpuInterface::send_sgi(
        IntId::sgi(sgi),
        SgiTarget::All,
        SgiTargetGroup::CurrentGroup1,
    )
    .expect("SGI number is valid");
}

/// Acknowledges and dispatches every pending interrupt; called from the IRQ vector.
pub fn handle_irq() {
    while let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) {
        let idx = intid.raw_value() as usize;
        let handler = HANDLERS.get(idx).map_or(0, |h| h.load(Ordering::Acquire));
        if handler != 0 {
            // SAFETY: only `enable_private` stores here, and it stores `fn()` pointers.
            let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(handler) };
            f();
        } else {
            broadside_base::stats::count(broadside_base::stats::Counter::SpuriousIrqs);
        }
        GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
    }
}
