//! Synchronisation: an IRQ-safe spinlock and RCU.
pub mod irqlock;
pub mod rcu;

pub use irqlock::{IrqSpinlock, IrqSpinlockGuard};
