//! The kernel's own translation tables (TTBR1): built once at boot with W^X permissions, then
//! extended only with new mappings (secondary CPUs' stacks), never changed in place, so they
//! need no TLB invalidation — only the barrier that publishes new entries to the walker.

use crate::frame::{self, FrameKind};
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::aarch64::tlb;
use broadside_arch::pte::{
    Attributes, Descriptor, DescriptorKind, ENTRIES_PER_TABLE, L2_BLOCK_SIZE, PAGE_SIZE,
    table_index,
};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::IrqSpinlock;

/// Why a kernel mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a new table.
    OutOfMemory,
    /// Something is already mapped there.
    AlreadyMapped(VirtAddr),
}

/// The kernel's TTBR1 tables.
pub struct KernelTables {
    root: PhysAddr,
}

static KERNEL_TABLES: IrqSpinlock<Option<KernelTables>> = IrqSpinlock::new(None);

fn entries(table_pa: PhysAddr) -> *mut u64 {
    phys_to_virt(table_pa).as_mut_ptr::<u64>()
}

impl KernelTables {
    /// An empty root table.
    pub fn new() -> Result<Self, MapError> {
        Ok(Self {
            root: frame::alloc_frame(FrameKind::Kernel).ok_or(MapError::OutOfMemory)?,
        })
    }

    /// Physical address of the root, for TTBR1.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)` with `attrs`, using 2 MiB blocks where both
    /// addresses are aligned and `blocks` allows. Fails rather than replacing a mapping.
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: u64,
        attrs: Attributes,
        blocks: bool,
    ) -> Result<(), MapError> {
        let mut off = 0;
        while off < size {
            let (v, p) = (va + off, pa + off);
            let use_block = blocks
                && v.is_aligned(L2_BLOCK_SIZE)
                && p.is_aligned(L2_BLOCK_SIZE)
                && size - off >= L2_BLOCK_SIZE;
            if use_block {
                self.set_leaf(v, 2, Descriptor::block(p, 2, attrs))?;
                off += L2_BLOCK_SIZE;
            } else {
                self.set_leaf(v, 3, Descriptor::page(p, attrs))?;
                off += PAGE_SIZE;
            }
        }
        Ok(())
    }

    fn set_leaf(&mut self, va: VirtAddr, level: u8, desc: Descriptor) -> Result<(), MapError> {
        let mut table = self.root;
        for l in 0..level {
            let slot = entries(table).wrapping_add(table_index(va.as_u64(), l));
            // SAFETY: `table` is a kernel table page in the linear map; `table_index` < 512.
            let cur = Descriptor::from_raw(unsafe { slot.read_volatile() });
            table = match cur.kind(l) {
                DescriptorKind::Table { next } => next,
                DescriptorKind::Invalid => {
                    let new = frame::alloc_frame(FrameKind::Kernel).ok_or(MapError::OutOfMemory)?;
                    // SAFETY: as above; the new table is zeroed and published by this store.
                    unsafe { slot.write_volatile(Descriptor::table(new).raw()) };
                    new
                }
                _ => return Err(MapError::AlreadyMapped(va)),
            };
        }
        let slot = entries(table).wrapping_add(table_index(va.as_u64(), level));
        // SAFETY: as above.
        unsafe {
            if Descriptor::from_raw(slot.read_volatile()).is_valid() {
                return Err(MapError::AlreadyMapped(va));
            }
            slot.write_volatile(desc.raw());
        }
        Ok(())
    }

    /// The descriptor that maps `va` and its level, if any (for the self-test and debugging).
    pub fn lookup(&self, va: VirtAddr) -> Option<(Descriptor, u8)> {
        let mut table = self.root;
        for level in 0..=3u8 {
            // SAFETY: kernel table pages in the linear map; index < 512.
            let d = Descriptor::from_raw(unsafe {
                entries(table)
                    .add(table_index(va.as_u64(), level))
                    .read_volatile()
            });
            match d.kind(level) {
                DescriptorKind::Table { next } => table = next,
                DescriptorKind::Invalid => return None,
                _ => return Some((d, level)),
            }
        }
        None
    }
}

const _: () = assert!(ENTRIES_PER_TABLE == 512);

/// Installs `tables` as the live kernel tables (after TTBR1 points at them).
pub fn install(tables: KernelTables) {
    *KERNEL_TABLES.lock() = Some(tables);
}

/// Maps a new range into the live kernel tables and publishes it to the table walker. The range
/// must be new: kernel mappings are never changed in place.
pub fn map_live(va: VirtAddr, pa: PhysAddr, size: u64, attrs: Attributes) -> Result<(), MapError> {
    let mut guard = KERNEL_TABLES.lock();
    let tables = guard.as_mut().expect("kernel tables not installed");
    tables.map(va, pa, size, attrs, false)?;
    tlb::publish_new_kernel_mappings();
    Ok(())
}

/// Looks `va` up in the live kernel tables.
pub fn lookup_live(va: VirtAddr) -> Option<(Descriptor, u8)> {
    KERNEL_TABLES.lock().as_ref()?.lookup(va)
}
