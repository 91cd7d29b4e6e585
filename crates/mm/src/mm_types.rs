//! Data definitions that an address space refers to but whose operations sit in higher layers:
//! broadside's analogue of Linux's include/linux/mm_types.h, which defines `struct mm_struct`'s
//! neighbours apart from the code that uses them. Here that is the shared memory object and the
//! owner tag of its tables and frames: an address space lists the objects it maps
//! (`AddressSpace::objects`), the walker recognises a shared table by its tag, and
//! `crate::shared`, above the address space, the TLB layer and the gather, holds everything the
//! object does.
//!
//! Sits on nothing in the crate.

use alloc::vec::Vec;
use broadside_arch::PhysAddr;

/// Frame-metadata owner tag of a shared object's tables and frames: this bit | the object id.
pub const OBJECT_OWNER_BIT: u64 = 1 << 63;

/// A shared memory object.
pub struct SharedObject {
    /// Unique for the kernel's lifetime; tagged into its tables' and frames' owner.
    pub id: u64,
    /// Size in GiB: one level-2 table per GiB.
    pub gib: u64,
    /// The physical 2 MiB frames the blocks alias (block i maps `frames[i % len]`).
    pub(crate) frames: Vec<PhysAddr>,
    /// The object lock, holding the shared level-2 table of each GiB while any space uses it.
    pub tables: broadside_base::hint::Mutex<Vec<Option<PhysAddr>>>,
}
