//! broadside's platform layer: what the machine is (DTB), how to talk (PL011 console and
//! logging), its own kernel arguments (`log=`; the parser is `broadside_base::args`), the facts of this boot, and the ways out.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub mod boot_info;
#[cfg(target_arch = "aarch64")]
pub mod console;
pub mod dtb;
#[cfg(target_arch = "aarch64")]
pub mod exit;
#[cfg(target_arch = "aarch64")]
pub mod pl011;
pub mod settings;
