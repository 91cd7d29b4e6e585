//! broadside's platform layer: what the machine is (DTB), how to talk (PL011 console and
//! logging), what the user asked for (boot arguments), the facts of this boot, and the ways out.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

#[cfg(target_arch = "aarch64")]
pub mod boot_info;
pub mod bootargs;
#[cfg(target_arch = "aarch64")]
pub mod console;
pub mod dtb;
#[cfg(target_arch = "aarch64")]
pub mod exit;
#[cfg(target_arch = "aarch64")]
pub mod pl011;
