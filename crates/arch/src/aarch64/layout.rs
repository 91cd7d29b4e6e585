//! The kernel's virtual address map (all in the TTBR1 half; TTBR0 belongs to address spaces).
//!
//! | region            | base                    | contents                                   |
//! |-------------------|-------------------------|--------------------------------------------|
//! | linear map        | `PAGE_OFFSET`           | all RAM, RW, never executable               |
//! | kernel image      | `KIMAGE_VBASE` + PA     | text RX, rodata R, data/bss RW              |
//! | stacks            | `STACKS_VBASE`          | per-CPU stacks, each above an unmapped guard |
//! | MMIO              | `MMIO_VBASE` + PA       | device memory (UART, GIC)                   |

use crate::addr::{PhysAddr, VirtAddr};

/// Base of the linear map: RAM at physical `pa` is at `PAGE_OFFSET + pa`.
pub const PAGE_OFFSET: u64 = 0xFFFF_0000_0000_0000;
/// Base of the image mapping; must match `KIMAGE_VBASE` in `linker.ld`.
pub const KIMAGE_VBASE: u64 = 0xFFFF_8000_0000_0000;
/// Base of the per-CPU stack region.
pub const STACKS_VBASE: u64 = 0xFFFF_A000_0000_0000;
/// Base of the device mappings: MMIO at physical `pa` is at `MMIO_VBASE + pa`.
pub const MMIO_VBASE: u64 = 0xFFFF_C000_0000_0000;

/// Size of a CPU's kernel stack (SP_EL0).
pub const KERNEL_STACK_SIZE: u64 = 64 * 1024;
/// Size of a CPU's exception stack (SP_EL1).
pub const EXCEPTION_STACK_SIZE: u64 = 16 * 1024;
/// Virtual space per CPU in the stack region: guard, kernel stack, guard, exception stack.
pub const STACK_SLOT_SIZE: u64 = 2 * (4096 + KERNEL_STACK_SIZE);

/// The linear-map address of physical address `pa`.
#[inline(always)]
pub const fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(PAGE_OFFSET + pa.as_u64())
}

/// The physical address behind a linear-map or image address.
#[inline(always)]
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    let va = va.as_u64();
    PhysAddr::new(if (KIMAGE_VBASE..STACKS_VBASE).contains(&va) {
        va - KIMAGE_VBASE
    } else {
        debug_assert!(
            (PAGE_OFFSET..KIMAGE_VBASE).contains(&va),
            "{va:#x} not linear"
        );
        va - PAGE_OFFSET
    })
}

/// The device-mapping address of MMIO physical address `pa`.
#[inline(always)]
pub const fn mmio_virt(pa: u64) -> u64 {
    MMIO_VBASE + pa
}

/// The (kernel stack, exception stack) slot of CPU `cpu`: `(bottom, top)` of each.
pub const fn stack_slot(cpu: usize) -> ((u64, u64), (u64, u64)) {
    let base = STACKS_VBASE + cpu as u64 * STACK_SLOT_SIZE;
    let kstack_bottom = base + 4096;
    let kstack_top = kstack_bottom + KERNEL_STACK_SIZE;
    let estack_bottom = kstack_top + 4096;
    let estack_top = estack_bottom + EXCEPTION_STACK_SIZE;
    ((kstack_bottom, kstack_top), (estack_bottom, estack_top))
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_exc_stack_guard: u8;
    static __boot_exc_stack_bottom: u8;
    static __boot_exc_stack_top: u8;
}

/// The image's sections as virtual address ranges, from the linker script.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// First byte of the image (the start of `.text`).
    pub start: u64,
    /// End of `.text` (start of `.rodata`).
    pub text_end: u64,
    /// End of `.rodata` (start of the writable data).
    pub rodata_end: u64,
    /// End of the image (`.bss` included).
    pub end: u64,
    /// The unmapped guard page below the boot CPU's kernel stack.
    pub boot_stack_guard: u64,
    /// The unmapped guard page below the boot CPU's exception stack.
    pub boot_exc_stack_guard: u64,
    /// Top of the boot CPU's exception stack.
    pub boot_exc_stack_top: u64,
}

impl ImageLayout {
    /// Reads the linker-script symbols.
    pub fn get() -> Self {
        fn addr(s: &u8) -> u64 {
            s as *const u8 as u64
        }
        // SAFETY: only the addresses of these linker-defined symbols are taken, never their
        // contents.
        unsafe {
            let layout = Self {
                start: addr(&__image_start),
                text_end: addr(&__text_end),
                rodata_end: addr(&__rodata_end),
                end: addr(&__image_end),
                boot_stack_guard: addr(&__boot_stack_guard),
                boot_exc_stack_guard: addr(&__boot_exc_stack_guard),
                boot_exc_stack_top: addr(&__boot_exc_stack_top),
            };
            debug_assert_eq!(addr(&__boot_stack_bottom), layout.boot_stack_guard + 4096);
            debug_assert_eq!(
                addr(&__boot_exc_stack_bottom),
                layout.boot_exc_stack_guard + 4096
            );
            layout
        }
    }

    /// Physical start and end of the image.
    pub fn phys_range(&self) -> (u64, u64) {
        (self.start - KIMAGE_VBASE, self.end - KIMAGE_VBASE)
    }

    /// The physical range the early tables of `boot.S` map, in the linear map too, until the
    /// kernel tables replace them: the naturally aligned 1 GiB that holds the image (and the
    /// DTB QEMU puts below an ELF image).
    pub fn early_window(&self) -> (u64, u64) {
        let start = self.phys_range().0 & !(EARLY_BLOCK - 1);
        (start, start + EARLY_BLOCK)
    }
}

/// The size of the early tables' one block.
const EARLY_BLOCK: u64 = 1 << 30;
