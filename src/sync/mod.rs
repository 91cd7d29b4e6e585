//! Synchronisation: an IRQ-safe spinlock, RCU (the portable engine, and the kernel's
//! instance with its IRQ discipline), and the enter/close gate of address-space activation.
pub mod gate;
pub mod irqlock;
pub mod rcu;
#[cfg(target_arch = "aarch64")]
pub mod rcu_kernel;

pub use gate::ActiveGate;
pub use irqlock::{IrqSpinlock, IrqSpinlockGuard};
#[cfg(target_arch = "aarch64")]
pub use rcu_kernel::{call_rcu, synchronize_rcu};
