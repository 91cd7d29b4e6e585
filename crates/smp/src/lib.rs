//! broadside's multiprocessing layer: bringing secondaries up through PSCI, running work on
//! every CPU, IPI numbers (GIC SGIs), and the watchdog with its stall rule. The per-CPU records
//! themselves are in the base layer; they are re-exported here.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod settings;
pub mod stall;
pub use broadside_base::percpu::{
    self, CpuState, PerCpu, cpu, online_count, online_cpus, this_cpu,
};

#[cfg(target_arch = "aarch64")]
pub mod boot;
#[cfg(target_arch = "aarch64")]
pub mod ipi;
#[cfg(target_arch = "aarch64")]
pub mod watchdog;
#[cfg(target_arch = "aarch64")]
pub mod work;
