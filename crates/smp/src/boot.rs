//! Bringing secondary CPUs up: a stack pair with guard pages for each, a boot record, PSCI
//! CPU_ON, and a bounded wait that names every CPU that did not arrive.

use super::percpu::{self, CpuState};
use broadside_arch::VirtAddr;
use broadside_arch::aarch64::boot::{SecondaryBootRecord, boot_idmap_pa, secondary_entry_pa};
use broadside_arch::aarch64::{cpu, layout, mmu, psci};
use broadside_arch::pte::{Attributes, PAGE_SIZE};
use broadside_base::config::MAX_CPUS;
use broadside_memory::frame::{self, FrameKind};
use broadside_memory::kmap;
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;

/// Boot records, in the image so the identity map covers them.
struct BootRecords(UnsafeCell<[SecondaryBootRecord; MAX_CPUS]>);
// SAFETY: each record is written by the boot CPU before CPU_ON for that CPU and only read by
// that CPU afterwards.
unsafe impl Sync for BootRecords {}

static RECORDS: BootRecords = BootRecords(UnsafeCell::new(
    [SecondaryBootRecord {
        ttbr0: 0,
        ttbr1: 0,
        exception_stack_top: 0,
        kernel_stack_top: 0,
        cpu: 0,
    }; MAX_CPUS],
));

/// Why a CPU could not be started.
#[derive(Debug)]
pub enum StartError {
    /// No memory for CPU `.0`'s stacks.
    OutOfMemory(usize),
    /// PSCI CPU_ON refused CPU `.0` with this error.
    Psci(usize, smccc::psci::Error),
}

/// Maps a stack of `size` bytes starting at `bottom` (virtual), from fresh frames.
fn map_stack(bottom: VirtAddr, size: u64, cpu_index: usize) -> Result<(), StartError> {
    let order = (size / PAGE_SIZE).trailing_zeros();
    let pa =
        frame::alloc_frames(order, FrameKind::Kernel).ok_or(StartError::OutOfMemory(cpu_index))?;
    kmap::map_live(bottom, pa, size, Attributes::kernel_data())
        .map_err(|_| StartError::OutOfMemory(cpu_index))
}

/// Starts CPUs `1..mpidrs.len()` and waits up to `wait_ms` for them. Returns the CPUs that did
/// not come online.
pub fn start_secondaries(
    mpidrs: &[u64],
    wait_ms: u32,
) -> Result<heapless_list::Missing, StartError> {
    let ttbr1 = mmu::ttbr1();
    for (i, &mpidr) in mpidrs.iter().enumerate().skip(1) {
        let ((kb, kt), (eb, et)) = layout::stack_slot(i);
        map_stack(VirtAddr::new(kb), kt - kb, i)?;
        map_stack(VirtAddr::new(eb), et - eb, i)?;
        percpu::cpu(i).mpidr.store(mpidr, Ordering::Relaxed);
        percpu::cpu(i).set_state(CpuState::Booting);
        // SAFETY: CPU i has not been started, so nothing else reads its record.
        let rec = unsafe { &mut (*RECORDS.0.get())[i] };
        *rec = SecondaryBootRecord {
            ttbr0: boot_idmap_pa(),
            ttbr1,
            exception_stack_top: et,
            kernel_stack_top: kt,
            cpu: i as u64,
        };
        // The secondary reads its record with the MMU (and so its caches) off.
        let rec_va = rec as *const SecondaryBootRecord as u64;
        cpu::clean_dcache_to_poc(rec_va, core::mem::size_of::<SecondaryBootRecord>() as u64);
        psci::cpu_on(
            mpidr,
            secondary_entry_pa(),
            layout::virt_to_phys(VirtAddr::new(rec_va)).as_u64(),
        )
        .map_err(|e| StartError::Psci(i, e))?;
    }
    let freq = cpu::counter_frequency();
    let deadline = cpu::counter() + freq * wait_ms as u64 / 1000;
    while percpu::online_count() < mpidrs.len() && cpu::counter() < deadline {
        cpu::relax();
    }
    let mut missing = heapless_list::Missing::default();
    for i in 1..mpidrs.len() {
        if !percpu::cpu(i).is_online() {
            missing.push(i);
        }
    }
    Ok(missing)
}

/// A small fixed list of CPU numbers (no allocation needed on the error path).
pub mod heapless_list {
    /// CPUs that did not come online (the first 16 are named).
    #[derive(Default, Debug)]
    pub struct Missing {
        /// How many CPUs are missing.
        pub count: usize,
        /// The first 16 of them.
        pub first: [usize; 16],
    }

    impl Missing {
        /// Records that `cpu` is missing.
        pub fn push(&mut self, cpu: usize) {
            if self.count < self.first.len() {
                self.first[self.count] = cpu;
            }
            self.count += 1;
        }

        /// Whether no CPU is missing.
        pub fn is_empty(&self) -> bool {
            self.count == 0
        }

        /// The named missing CPUs (at most 16).
        pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
            self.first[..self.count.min(self.first.len())]
                .iter()
                .copied()
        }
    }
}
