//! The kernel heap: buddy_system_allocator's `Heap` behind an IRQ-safe lock, as the global
//! allocator. It starts on a static region in .bss (the frame allocator's own free lists need a
//! heap before there are frames) and grows once by frames from the linear map at boot
//! ([`grow`]).

use crate::frame::{self, FrameKind};
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::pte::PAGE_SIZE;
use broadside_base::IrqSpinlock;
use buddy_system_allocator::Heap;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// Size of the static bootstrap heap.
const BOOT_HEAP_SIZE: usize = 4 << 20;

#[repr(C, align(4096))]
struct BootHeap([u8; BOOT_HEAP_SIZE]);
static mut BOOT_HEAP: BootHeap = BootHeap([0; BOOT_HEAP_SIZE]);

/// The global allocator.
pub struct KernelHeap(IrqSpinlock<Heap<32>>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(IrqSpinlock::new(Heap::empty()));

/// Puts the bootstrap region into the heap. Called once, first thing on the boot CPU.
pub fn init_bootstrap() {
    // SAFETY: BOOT_HEAP is handed to the heap exactly once, here, and never touched otherwise.
    unsafe {
        let start = core::ptr::addr_of_mut!(BOOT_HEAP) as usize;
        HEAP.0.lock().init(start, BOOT_HEAP_SIZE);
    }
}

/// Grows the heap by frames from the allocator: 1/16 of free memory, within 4..64 MiB, rounded
/// down to a power of two. If that allocation fails, the heap stays as it is.
pub fn grow() {
    let (free, _) = frame::stats();
    let want = (free * PAGE_SIZE / 16).clamp(4 << 20, 64 << 20);
    let order = (want / PAGE_SIZE).ilog2();
    if let Some(pa) = frame::alloc_frames(order, FrameKind::Kernel) {
        let start = phys_to_virt(pa).as_u64() as usize;
        // SAFETY: the frames were just allocated for the heap and stay with it (nothing frees
        // them); every frame the allocator hands out is RAM in the linear map, mapped RW.
        unsafe {
            HEAP.0
                .lock()
                .add_to_heap(start, start + (PAGE_SIZE << order) as usize)
        };
    }
}

/// (bytes in use, bytes managed).
pub fn stats() -> (usize, usize) {
    let h = HEAP.0.lock();
    (h.stats_alloc_actual(), h.stats_total_bytes())
}

// SAFETY: allocation and deallocation go through the locked buddy heap, which hands out
// disjoint, correctly aligned blocks.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // No store of this CPU into the block may wait in its emulated store buffer
        // (`weak=on`) past its free: the allocator writes its free lists there.
        broadside_base::weak::drain();
        // SAFETY: the caller passes a pointer this allocator returned, with its layout.
        unsafe { self.0.lock().dealloc(NonNull::new_unchecked(ptr), layout) }
    }
}
