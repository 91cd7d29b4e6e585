//! Physical frames: the buddy allocator over the DTB's memory (minus the image, the DTB and what
//! QEMU placed below the image), and a metadata entry per frame.
//!
//! Frame metadata is the analogue of Linux's `struct page`: a reference count (0 = free; the
//! lockless walker pins with increment-if-not-zero), what the frame is used for, and the
//! identity later layers check (owning space, table level, generation, share count).

use broadside_arch::PhysAddr;
use broadside_arch::aarch64::layout::phys_to_virt;
use broadside_arch::pte::PAGE_SIZE;
use broadside_base::IrqSpinlock;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Once;

/// What a frame is used for (`FrameMeta::kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FrameKind {
    /// In the allocator.
    Free = 0,
    /// Kernel-internal use (heap, stacks, kernel tables, metadata).
    Kernel = 1,
    /// An address-space data page.
    Data = 2,
    /// An address-space page-table page.
    Table = 3,
    /// A shared-object 2 MiB frame.
    Shared = 4,
}

/// Per-frame metadata.
#[repr(C)]
#[derive(Debug)]
pub struct FrameMeta {
    /// References; 0 while free. Walkers pin with increment-if-not-zero.
    pub refcount: AtomicU32,
    /// A `FrameKind`.
    pub kind: AtomicU32,
    /// The address space that owns the frame (tables, data), 0 if none.
    pub owner: AtomicU64,
    /// Bumped every time the frame is allocated; data pages are stamped with it, tables carry
    /// it so a walker can tell a reused table from the one it started in.
    pub generation: AtomicU64,
    /// For tables: the level (0..=3). For shared level-2 tables: extra sharers in bits 31:8.
    pub level_and_share: AtomicU32,
    /// Bumped (through the emulated store buffer with `weak=on`, after the clear it follows)
    /// each time an entry mapping this frame as a private data page is cleared: a lockless
    /// walker that reads it before and after its pin knows whether the page was unmapped in
    /// between, and so whether its re-check must have failed (rule 4's own check).
    pub unmaps: AtomicU32,
}

impl FrameMeta {
    const fn new() -> Self {
        Self {
            refcount: AtomicU32::new(0),
            kind: AtomicU32::new(FrameKind::Free as u32),
            owner: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            level_and_share: AtomicU32::new(0),
            unmaps: AtomicU32::new(0),
        }
    }

    /// Takes a reference if the frame is live (count > 0): Linux's `folio_try_get`.
    pub fn try_get(&self) -> bool {
        let mut c = self.refcount.load(Ordering::Relaxed);
        loop {
            if c == 0 {
                return false;
            }
            match self.refcount.compare_exchange_weak(
                c,
                c + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => c = now,
            }
        }
    }

    /// Drops a reference; returns true if it was the last.
    ///
    /// A reference dropped from a count already 0 (a pin taken on a frame being freed, then
    /// dropped) is counted as a double free (`double_free_detected`) and returns false: the
    /// frame is not freed a second time.
    pub fn put(&self) -> bool {
        let old = self.refcount.fetch_sub(1, Ordering::Release);
        if old == 0 {
            self.refcount.fetch_add(1, Ordering::Relaxed);
            broadside_base::stats::detected(broadside_base::stats::Counter::DoubleFreeDetected);
            return false;
        }
        if old == 1 {
            core::sync::atomic::fence(Ordering::Acquire);
            true
        } else {
            false
        }
    }

    /// The frame's [`FrameKind`], as its number.
    pub fn kind(&self) -> u32 {
        self.kind.load(Ordering::Relaxed)
    }
}

struct Frames {
    /// Frame numbers of the first frame covered by `meta` and how many.
    first_pfn: u64,
    meta: &'static [FrameMeta],
}

static ALLOCATOR: IrqSpinlock<buddy_system_allocator::FrameAllocator<32>> =
    IrqSpinlock::new(buddy_system_allocator::FrameAllocator::new());
static FRAMES: Once<Frames> = Once::new();
static FREE_FRAMES: AtomicU64 = AtomicU64::new(0);
static TOTAL_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Gives `[start, end)` (physical, page-aligned inwards) to the allocator.
pub fn add_range(start: PhysAddr, end: PhysAddr) {
    let s = start.as_u64().div_ceil(PAGE_SIZE);
    let e = end.as_u64() / PAGE_SIZE;
    if e > s {
        ALLOCATOR.lock().add_frame(s as usize, e as usize);
        FREE_FRAMES.fetch_add(e - s, Ordering::Relaxed);
        TOTAL_FRAMES.fetch_add(e - s, Ordering::Relaxed);
    }
}

/// Creates the metadata array for physical memory `[ram_start, ram_end)`, in frames taken from
/// the allocator (which must already hold enough in the early-mapped range).
pub fn init_metadata(ram_start: PhysAddr, ram_end: PhysAddr) {
    let first_pfn = ram_start.as_u64() / PAGE_SIZE;
    let count = (ram_end - ram_start).div_ceil(PAGE_SIZE) as usize;
    let bytes = (count * core::mem::size_of::<FrameMeta>()) as u64;
    let frames = bytes.div_ceil(PAGE_SIZE) as usize;
    let pfn = ALLOCATOR
        .lock()
        .alloc(frames)
        .expect("no memory for frame metadata");
    FREE_FRAMES.fetch_sub(frames.next_power_of_two() as u64, Ordering::Relaxed);
    let va = phys_to_virt(PhysAddr::new(pfn as u64 * PAGE_SIZE)).as_mut_ptr::<FrameMeta>();
    for i in 0..count {
        // SAFETY: the frames were just allocated for this array and are mapped in the linear map;
        // each slot is written once before the slice is formed.
        unsafe { va.add(i).write(FrameMeta::new()) };
    }
    // SAFETY: `count` initialised entries at `va`, never freed.
    let meta = unsafe { core::slice::from_raw_parts(va, count) };
    FRAMES.call_once(|| Frames { first_pfn, meta });
}

/// The metadata of the frame at physical address `pa`.
pub fn meta(pa: PhysAddr) -> &'static FrameMeta {
    let f = FRAMES.get().expect("frame metadata not initialised");
    &f.meta[(pa.as_u64() / PAGE_SIZE - f.first_pfn) as usize]
}

/// Whether `pa` has a metadata entry (is RAM broadside manages).
pub fn is_ram(pa: PhysAddr) -> bool {
    FRAMES.get().is_some_and(|f| {
        let pfn = pa.as_u64() / PAGE_SIZE;
        pfn >= f.first_pfn && pfn < f.first_pfn + f.meta.len() as u64
    })
}

/// Reads word `index` (of the 512 in a 4 KiB page) of the RAM page at `pa` through the linear
/// map, as Linux's `READ_ONCE`: what checks use to look at a page's contents (a data page's
/// stamp and write counter, a new frame's zeroes) without a reference to it.
///
/// # Panics
/// If `pa` is not the start of a page of RAM with a metadata entry, or `index` is not below 512.
pub fn read_word(pa: PhysAddr, index: usize) -> u64 {
    assert!(
        pa.is_aligned(PAGE_SIZE) && is_ram(pa) && index < WORDS_PER_PAGE,
        "read_word({pa:#x}, {index}): not a word of a RAM page"
    );
    let word = phys_to_virt(pa).as_ptr::<u64>().wrapping_add(index);
    // SAFETY: RAM that has frame metadata is in the linear map (normal memory, readable, never
    // unmapped), and `word` is an aligned u64 inside the page. A volatile, aligned 64-bit load
    // is single-copy atomic: it sees a concurrent writer's old or new value, never a torn one,
    // and creates no reference that could alias the page's owner's.
    unsafe { word.read_volatile() }
}

/// u64 words in a 4 KiB page.
const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;

/// Allocates `1 << order` contiguous, naturally aligned frames of `kind`, zeroed, with a
/// reference count of 1 on the first. Returns the physical address.
pub fn alloc_frames(order: u32, kind: FrameKind) -> Option<PhysAddr> {
    let count = 1usize << order;
    let pfn = ALLOCATOR
        .lock()
        .alloc_aligned(core::alloc::Layout::from_size_align(count, count).ok()?)?;
    FREE_FRAMES.fetch_sub(count as u64, Ordering::Relaxed);
    let pa = PhysAddr::new(pfn as u64 * PAGE_SIZE);
    // SAFETY: freshly allocated frames, mapped in the linear map, owned by the caller now.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(pa).as_mut_ptr::<u8>(),
            0,
            count * PAGE_SIZE as usize,
        )
    };
    if FRAMES.get().is_some() {
        let m = meta(pa);
        m.generation.fetch_add(1, Ordering::Relaxed);
        m.owner.store(0, Ordering::Relaxed);
        m.level_and_share.store(0, Ordering::Relaxed);
        m.kind.store(kind as u32, Ordering::Relaxed);
        m.refcount.store(1, Ordering::Release);
    }
    Some(pa)
}

/// Allocates one zeroed frame.
pub fn alloc_frame(kind: FrameKind) -> Option<PhysAddr> {
    alloc_frames(0, kind)
}

/// Returns `1 << order` frames at `pa` to the allocator. The caller has made sure nothing can
/// reach them any more ([rules 1](broadside_base::rules#rule-1) and [2](broadside_base::rules#rule-2) of the design for address-space frames).
///
/// A frame already free is not freed again: counted as a double free (`double_free_detected`).
pub fn free_frames(pa: PhysAddr, order: u32) {
    let count = 1usize << order;
    // No store of this CPU to these frames may wait in its emulated store buffer (`weak=on`)
    // past their return to the allocator: the next owner zeroes them.
    broadside_base::weak::drain();
    if FRAMES.get().is_some() {
        let m = meta(pa);
        if m.kind() == FrameKind::Free as u32 {
            broadside_base::stats::detected(broadside_base::stats::Counter::DoubleFreeDetected);
            return;
        }
        m.refcount.store(0, Ordering::Release);
        m.kind.store(FrameKind::Free as u32, Ordering::Relaxed);
    }
    ALLOCATOR
        .lock()
        .dealloc((pa.as_u64() / PAGE_SIZE) as usize, count);
    FREE_FRAMES.fetch_add(count as u64, Ordering::Relaxed);
}

/// Frees one frame.
pub fn free_frame(pa: PhysAddr) {
    free_frames(pa, 0)
}

/// Free and total frame counts.
pub fn stats() -> (u64, u64) {
    (
        FREE_FRAMES.load(Ordering::Relaxed),
        TOTAL_FRAMES.load(Ordering::Relaxed),
    )
}
