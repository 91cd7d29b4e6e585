//! Multiprocessing: per-CPU records, bringing secondaries up through PSCI, running work on
//! every CPU, IPIs (GIC SGIs), and the watchdog's stall rule.
pub mod percpu;
pub mod stall;
pub use percpu::{CpuState, PerCpu, cpu, online_count, online_cpus, this_cpu};

#[cfg(target_arch = "aarch64")]
pub mod boot;
#[cfg(target_arch = "aarch64")]
pub mod ipi;
#[cfg(target_arch = "aarch64")]
pub mod work;
