//! broadside's memory layer: physical frames and their metadata, the kernel heap, and the
//! kernel's own translation tables (TTBR1).
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub mod frame;
#[cfg(target_arch = "aarch64")]
pub mod heap;
#[cfg(target_arch = "aarch64")]
pub mod kmap;
