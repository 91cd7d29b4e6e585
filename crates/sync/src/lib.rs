//! broadside's synchronisation layer: RCU (the portable engine, and the kernel's instance with
//! its IRQ discipline), the enter/close gate of address-space activation, waiting on other
//! CPUs, and the requests a waiting CPU serves. (The IRQ-safe spinlock is in the base layer, which everything uses.)
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod gate;
pub mod planted;
pub mod rcu;
#[cfg(target_arch = "aarch64")]
pub mod rcu_kernel;
pub mod requests;
pub mod settings;
#[cfg(target_arch = "aarch64")]
pub mod wait;

pub use gate::ActiveGate;
#[cfg(target_arch = "aarch64")]
pub use rcu_kernel::{call_rcu, synchronize_rcu};
