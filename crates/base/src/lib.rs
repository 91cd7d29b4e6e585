//! broadside's base layer: what every other layer shares, and nothing that needs them.
//!
//! - [`cpu_id`] and [`percpu`]: which CPU this is, and the per-CPU records (state, role, ticks,
//!   heartbeat) that the watchdog, the workloads and the GDB helpers read.
//! - [`irq`] and [`IrqSpinlock`]: IRQ masking and the IRQ-safe lock built on it.
//! - [`stats`]: the event counters published in the `summary:` line.
//! - [`ExitCode`]: the exit codes of the design's contract.
//! - [`rules`]: the six rules the TLB and table-freeing code keeps, cited by number everywhere.
//! - [`hint`]: the spin-wait hint (`YIELD`) and the seeded yield points of deterministic runs.
//! - [`events`]: the numbered events of a deterministic run, where a debugger can stop.
//! - [`pct`]: priority schedules with change points at the yield points (PCT).
//! - [`weak`]: emulated store buffers (`weak=on`), so a missing barrier shows under QEMU.
//! - [`args`]: the kernel-argument framework every layer declares its settings with, and the
//!   parser; [`settings`]: this layer's own (`seed=`, `yield_points=`, `weak=`, `pct_depth=`).
//! - [`config`] and [`rng`]: the CPU limit, and the seeded generator behind `seed=`.
//!
//! The DAIF and TPIDR accesses are compiled only for the kernel (`target_arch = "aarch64"`);
//! on the host they have stand-ins, so the layers above test their logic there.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod args;
pub mod config;
pub mod events;
pub mod exit_code;
pub mod hint;
pub mod irq;
pub mod irqlock;
pub mod pct;
pub mod percpu;
pub mod rng;
pub mod rules;
pub mod settings;
pub mod stats;
pub mod weak;

pub use exit_code::ExitCode;
pub use irqlock::{IrqSpinlock, IrqSpinlockGuard};

/// The logical index of the CPU running this code (TPIDR_EL1, set at each CPU's entry; 0 on the
/// host).
#[inline(always)]
pub fn cpu_id() -> usize {
    #[cfg(target_arch = "aarch64")]
    {
        let id: u64;
        // SAFETY: reads a register that each CPU sets once at entry.
        unsafe {
            core::arch::asm!("mrs {}, tpidr_el1", out(reg) id, options(nomem, nostack, preserves_flags))
        };
        id as usize
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        0
    }
}
