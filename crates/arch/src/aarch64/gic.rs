//! GICv3 through arm-gic: distributor and redistributors set up once by the boot CPU, each CPU's
//! interface by that CPU; interrupt dispatch to registered handlers; SGIs.
//!
//! arm-gic issues no barriers of its own. A `DSB ISHST` before an SGI makes the stores that the
//! SGI announces visible before the target can take it; the ISB after enabling the CPU interface
//! makes the system-register writes take effect.
//!
//! Redistributors may lie in several regions (QEMU `virt` puts those of CPUs 123 and up in a
//! second one), which arm-gic's `GicV3` (one contiguous region) does not cover. So broadside uses
//! arm-gic's own lower-level drivers: a `GicDistributor` for GICD, one `GicRedistributor` per CPU
//! over the frame whose `GICR_TYPER` affinity matches the CPU's MPIDR (found in every region
//! the DTB names, as Linux's `gic_populate_rdist` does), and `GicCpuInterface` for the system
//! registers. Each redistributor has its own lock, so 512 CPUs coming online do not queue on
//! one GIC lock (under TCG, with 512 vCPU threads on two host cores, that queue took seconds).

use aarch64_cpu::asm::barrier;
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{
    GicCpuInterface, GicDistributor, GicRedistributor, SgiTarget, SgiTargetGroup,
};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use broadside_base::IrqSpinlock;
use broadside_base::config::MAX_CPUS;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The distributor (configured once by the boot CPU; kept so that nothing else can own it).
static DISTRIBUTOR: IrqSpinlock<Option<GicDistributor<'static>>> = IrqSpinlock::new(None);

/// Each CPU's redistributor, by logical CPU number. Configuration calls take `&mut`.
static REDISTRIBUTORS: [IrqSpinlock<Option<GicRedistributor<'static>>>; MAX_CPUS] =
    [const { IrqSpinlock::new(None) }; MAX_CPUS];

/// Handlers for SGIs and PPIs (INTIDs 0..32), as `fn()` pointers stored as usize (0 = none).
static HANDLERS: [AtomicUsize; 32] = [const { AtomicUsize::new(0) }; 32];

/// Priority for every interrupt broadside uses: all equal, so none preempts another (handlers
/// run with IRQs masked anyway).
const PRIORITY: u8 = 0x80;

/// One redistributor frame (RD_base + SGI_base): 2 x 64 KiB (Arm GICv3/v4 architecture
/// specification, 12.10: the redistributor register map).
const GICR_FRAME: usize = 0x2_0000;

/// The affinity fields of MPIDR_EL1 (Aff3, Aff2, Aff1, Aff0), as `GicrTyper::core_mpidr`
/// returns them.
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// Why the GIC could not be set up.
#[derive(Debug)]
pub enum GicInitError {
    /// A region's first redistributor has a frame layout arm-gic does not know (neither GICv3
    /// without virtual LPIs nor GICv4 with them).
    FrameLayout {
        /// The region, in DTB order.
        region: usize,
    },
    /// Two redistributors carry the same CPU's affinity.
    DuplicateRedistributor {
        /// Logical CPU number.
        cpu: usize,
    },
    /// No redistributor in any region carries this CPU's affinity.
    NoRedistributor {
        /// Logical CPU number.
        cpu: usize,
        /// Its MPIDR from the DTB.
        mpidr: u64,
        /// Redistributors found in all regions.
        found: usize,
    },
}

impl core::fmt::Display for GicInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FrameLayout { region } => write!(
                f,
                "redistributor region {region} has an unsupported frame layout"
            ),
            Self::DuplicateRedistributor { cpu } => {
                write!(f, "two redistributors claim cpu{cpu}'s affinity")
            }
            Self::NoRedistributor { cpu, mpidr, found } => write!(
                f,
                "cpu{cpu} (MPIDR {mpidr:#x}) has no redistributor in the DTB's regions ({found} found)"
            ),
        }
    }
}

/// Initialises the GIC from the boot CPU (CPU 0): finds every CPU's redistributor, puts each
/// and the distributor in their default state, and enables this CPU's interface.
///
/// `regions` are the redistributor regions as (virtual address, size) in DTB order; `mpidrs` the
/// CPUs' MPIDRs by logical number.
///
/// # Safety
///
/// `gicd` and every region must be mapped as device memory at those virtual addresses and used
/// by nothing else; called once, before any other function of this module.
pub unsafe fn init(gicd: u64, regions: &[(u64, u64)], mpidrs: &[u64]) -> Result<(), GicInitError> {
    let mut found = 0;
    for (region, &(va, size)) in regions.iter().enumerate() {
        let mut stride = 0;
        let mut offset = 0;
        // Bounded by the region's size as well as by GICR_TYPER.Last: some QEMU versions mark
        // only the machine's last redistributor, not each region's.
        while offset + GICR_FRAME <= size as usize {
            let frame =
                NonNull::new((va as usize + offset) as *mut GicrSgi).expect("GICR address is null");
            // SAFETY: the frame lies inside a region the caller mapped as device memory and gave
            // to this driver; this loop visits each frame once, and the pointer is stored only
            // for the one CPU whose affinity it carries.
            let rd = GicRedistributor::new(unsafe { UniqueMmioPointer::new(frame) });
            let typer = rd.typer();
            if stride == 0 {
                // arm-gic's own rule (`get_redistributor_frame_count`) for the distance between
                // redistributors: two 64 KiB frames, four with GICv4 virtual LPIs.
                stride = match (rd.pidr2().arch_rev(), typer.virtual_lpis_supported()) {
                    (3, false) => GICR_FRAME,
                    (4, true) => 2 * GICR_FRAME,
                    _ => return Err(GicInitError::FrameLayout { region }),
                };
            }
            found += 1;
            let aff = typer.core_mpidr();
            // The DTB lists CPUs in redistributor order on QEMU; look there first.
            let guess = found - 1;
            let cpu = if mpidrs.get(guess).is_some_and(|m| m & MPIDR_AFFINITY == aff) {
                Some(guess)
            } else {
                mpidrs.iter().position(|m| m & MPIDR_AFFINITY == aff)
            };
            if let Some(cpu) = cpu {
                let mut slot = REDISTRIBUTORS[cpu].lock();
                if slot.is_some() {
                    return Err(GicInitError::DuplicateRedistributor { cpu });
                }
                *slot = Some(rd);
            }
            if typer.last_redistributor() {
                break;
            }
            offset += stride;
        }
    }
    if let Some(cpu) = (0..mpidrs.len()).find(|&c| REDISTRIBUTORS[c].lock().is_none()) {
        return Err(GicInitError::NoRedistributor {
            cpu,
            mpidr: mpidrs[cpu],
            found,
        });
    }

    // The order of arm-gic's `GicV3::setup`: this CPU's redistributor awake, every
    // redistributor and the distributor in their default state (all interrupts disabled,
    // Group 1 non-secure, affinity routing on), then Group 1 on this CPU.
    init_cpu(0);
    for slot in &REDISTRIBUTORS[..mpidrs.len()] {
        if let Some(rd) = slot.lock().as_mut() {
            rd.configure_default_settings();
        }
    }
    let gicd = NonNull::new(gicd as *mut Gicd).expect("GICD address is null");
    // SAFETY: the caller guarantees the distributor is mapped device memory owned by this
    // driver; this is its only pointer.
    let mut distributor = GicDistributor::new(unsafe { UniqueMmioPointer::new(gicd) });
    distributor.configure_default_settings();
    *DISTRIBUTOR.lock() = Some(distributor);
    GicCpuInterface::enable_group1(true);
    finish_cpu_interface();
    Ok(())
}

/// What arm-gic's `GicV3::init_cpu` does for CPU `cpu`, run on that CPU.
fn init_cpu(cpu: usize) {
    GicCpuInterface::enable_system_register_el1();
    barrier::isb(barrier::SY);
    // Already awake is fine (arm-gic's `init_cpu` ignores it too).
    if let Some(rd) = REDISTRIBUTORS[cpu].lock().as_mut() {
        let _ = rd.mark_core_awake();
    }
    // ICC_CTLR_EL1 = 0: EOImode 0 (an EOI also deactivates), CBPR 0 (separate binary points
    // for the two groups), PMHE 0 — the value arm-gic's `init_cpu` writes.
    // SAFETY: the system-register interface was just enabled; ICC_CTLR_EL1 only decides how
    // this CPU's interface completes interrupts, and none is in flight (IRQs are masked during
    // bring-up).
    unsafe {
        core::arch::asm!(
            "msr S3_0_C12_C12_4, xzr",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// Brings up GIC state for secondary CPU `cpu` (its redistributor and CPU interface), on it.
pub fn init_secondary(cpu: usize) {
    init_cpu(cpu);
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
    let mut slot = REDISTRIBUTORS[cpu].lock();
    let rd = slot.as_mut().expect("GIC not initialised for this CPU");
    rd.set_interrupt_priority(intid, PRIORITY)
        .expect("GIC priority");
    if intid.is_ppi() {
        rd.set_trigger(intid, Trigger::Level).expect("GIC trigger");
    }
    rd.enable_interrupt(intid, true).expect("GIC enable");
}

/// Sends SGI `sgi` to the CPU whose affinity is `mpidr`. Stores made before the call are
/// visible to the target's handler.
pub fn send_sgi(sgi: u32, mpidr: u64) {
    super::tlb::store_barrier(super::tlb::Scope::Broadcast);
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
    super::tlb::store_barrier(super::tlb::Scope::Broadcast);
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
