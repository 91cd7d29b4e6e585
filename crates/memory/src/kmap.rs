//! The kernel's own translation tables (TTBR1): built once at boot with W^X permissions
//! ([`switch_to_kernel_tables`], which also hands out the devices they map), then extended only
//! with new mappings (secondary CPUs' stacks), never changed in place, so they need no TLB
//! invalidation — only the barrier that publishes new entries to the walker.

use crate::frame::{self, FrameKind};
use broadside_arch::aarch64::gic::{self, GicInitError};
use broadside_arch::aarch64::layout::{self, ImageLayout, phys_to_virt};
use broadside_arch::aarch64::{mmu, tlb};
use broadside_arch::pte::{
    Attributes, Descriptor, DescriptorKind, ENTRIES_PER_TABLE, L2_BLOCK_SIZE, PAGE_SIZE,
    table_index,
};
use broadside_arch::{PhysAddr, VirtAddr};
use broadside_base::IrqSpinlock;
use broadside_platform::console;
use broadside_platform::dtb::{MAX_GICR_REGIONS, PhysRange, PlatformInfo};

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

/// Builds the W^X kernel tables for the machine `p` describes — the linear map of all RAM, the
/// image's sections (text RX, rodata R, data RW), the boot CPU's stacks above unmapped guards,
/// the UART and the GIC as device memory — and switches the boot CPU's TTBR1 to them. From
/// then on they are the live tables ([`map_live`], [`lookup_live`]).
///
/// Once, on the boot CPU, before any CPU is online. Returns the devices now mapped, for their
/// drivers to start.
///
/// # Panics
/// On a second call, on another CPU, once a CPU is online, or if the DTB (which `p`'s strings
/// borrow) is not in RAM, where the linear map would not keep it.
pub fn switch_to_kernel_tables(p: &PlatformInfo) -> Result<MappedDevices, MapError> {
    assert!(
        broadside_base::cpu_id() == 0 && broadside_base::percpu::online_count() == 0,
        "the kernel tables are switched to on the boot CPU, before CPUs come online"
    );
    assert!(
        KERNEL_TABLES.lock().is_none(),
        "the kernel tables are switched to once"
    );
    let memory = &p.memory[..p.memory_ranges];
    assert!(
        memory
            .iter()
            .any(|r| r.base <= p.dtb.base && p.dtb.end() <= r.end()),
        "the DTB at {:#x} is not in RAM",
        p.dtb.base
    );
    let tables = build_kernel_tables(p, &ImageLayout::get())?;
    // SAFETY: this is the boot CPU and no other CPU is online (checked above), and this runs
    // once (the live tables were not yet installed). The new tables map everything the kernel
    // uses at the addresses the early tables did: the linear map of all RAM (which holds the
    // early window), the image at `KIMAGE_VBASE`, and the boot stacks (part of the image).
    unsafe { mmu::replace_kernel_tables(tables.root()) };
    *KERNEL_TABLES.lock() = Some(tables);
    Ok(MappedDevices {
        uart: Some(p.uart),
        gic: Some(p.gicd),
        gicr: p.gicr,
        gicr_regions: p.gicr_regions,
    })
}

/// Builds the W^X kernel tables: linear map, image sections, boot stacks (guards unmapped), MMIO.
fn build_kernel_tables(p: &PlatformInfo, image: &ImageLayout) -> Result<KernelTables, MapError> {
    let mut t = KernelTables::new()?;
    for r in &p.memory[..p.memory_ranges] {
        t.map(
            phys_to_virt(PhysAddr::new(r.base)),
            PhysAddr::new(r.base),
            r.size,
            Attributes::kernel_data(),
            true,
        )?;
    }
    let pa = |va: u64| PhysAddr::new(va - layout::KIMAGE_VBASE);
    let mut map_image = |start: u64, end: u64, attrs: Attributes| {
        t.map(VirtAddr::new(start), pa(start), end - start, attrs, false)
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
    let devices = [p.uart, p.gicd]
        .into_iter()
        .chain(p.gicr[..p.gicr_regions].iter().copied());
    for dev in devices {
        let base = dev.base & !(PAGE_SIZE - 1);
        let size = (dev.end() - base).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        t.map(
            VirtAddr::new(layout::mmio_virt(base)),
            PhysAddr::new(base),
            size,
            Attributes::device(),
            false,
        )?;
    }
    Ok(t)
}

/// The devices [`switch_to_kernel_tables`] mapped, each to be started once. There is only ever
/// one of these, so holding it proves that their registers are mapped as device memory and
/// that no other code drives them.
#[derive(Debug)]
pub struct MappedDevices {
    uart: Option<PhysRange>,
    gic: Option<PhysRange>,
    gicr: [PhysRange; MAX_GICR_REGIONS],
    gicr_regions: usize,
}

impl MappedDevices {
    /// Makes the PL011 the console (until now, output went through semihosting).
    ///
    /// # Panics
    /// If the console was started already.
    pub fn start_console(&mut self) {
        let uart = self.uart.take().expect("the console is started once");
        // SAFETY: the UART's page is mapped as device memory at `mmio_virt` by the live kernel
        // tables, and this is the only place it is handed to a driver (taken out of the one
        // `MappedDevices`).
        unsafe { console::init(layout::mmio_virt(uart.base)) };
    }

    /// Initialises the GICv3 for CPUs with `mpidrs` (by logical number): the distributor and
    /// every redistributor region the DTB named.
    ///
    /// # Panics
    /// If the GIC was started already.
    pub fn start_gic(&mut self, mpidrs: &[u64]) -> Result<(), GicInitError> {
        let gicd = self.gic.take().expect("the GIC is started once");
        let mut regions = [(0u64, 0u64); MAX_GICR_REGIONS];
        for (slot, r) in regions.iter_mut().zip(&self.gicr[..self.gicr_regions]) {
            *slot = (layout::mmio_virt(r.base), r.size);
        }
        // SAFETY: the distributor and every redistributor region are mapped as device memory
        // at `mmio_virt` by the live kernel tables, and this is the only call (taken out of the
        // one `MappedDevices`), before any other function of the GIC driver.
        unsafe {
            gic::init(
                layout::mmio_virt(gicd.base),
                &regions[..self.gicr_regions],
                mpidrs,
            )
        }
    }
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
