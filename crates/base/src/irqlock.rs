//! A spinlock that masks IRQs while held.
//!
//! spin's locks do not mask IRQs, so an interrupt handler that takes a lock its CPU already holds
//! would deadlock. Every lock an IRQ handler may take (the console, the GIC, the RCU queues) is
//! an [`IrqSpinlock`]: IRQs are masked before the lock is taken and restored after it is released.

use crate::irq::{self, IrqState};
use core::ops::{Deref, DerefMut};

/// A `spin::Mutex` that masks IRQs on the holding CPU (and relaxes with `YIELD`: see [`crate::hint`]).
pub struct IrqSpinlock<T> {
    inner: crate::hint::Mutex<T>,
}

/// Holds the lock and the IRQ state to restore when dropped.
pub struct IrqSpinlockGuard<'a, T> {
    guard: core::mem::ManuallyDrop<crate::hint::MutexGuard<'a, T>>,
    irq: IrqState,
}

impl<T> IrqSpinlock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            inner: crate::hint::Mutex::new(value),
        }
    }

    /// Takes the lock with IRQs masked. While it waits for another CPU to release it, the
    /// caller's IRQ state is back in force (IRQs unmasked, unless the caller had masked them):
    /// a CPU that waits for a lock is in no critical section of its own, so it keeps taking its
    /// tick (the RCU quiescent state, the stall watchdog) and the IPIs other CPUs wait on
    /// (shootdowns and syncs). Only the attempt to take the lock, and the holding, are masked.
    ///
    /// Why it matters: with 128 or more CPUs on a few host cores a waiter can spin for
    /// seconds on a contended lock (the frame allocator's) whose holder's vCPU thread is not
    /// running; spinning masked, it took no tick for that long and the watchdog declared it
    /// stuck, and every IPI sync waited for it too.
    pub fn lock(&self) -> IrqSpinlockGuard<'_, T> {
        loop {
            let irq = irq::save_and_mask();
            if let Some(guard) = self.inner.try_lock() {
                return IrqSpinlockGuard {
                    guard: core::mem::ManuallyDrop::new(guard),
                    irq,
                };
            }
            irq::restore(irq);
            // Test-and-test-and-set: wait reading, so the waiters do not fight over the line.
            while self.inner.is_locked() {
                crate::hint::cpu_relax();
            }
        }
    }

    /// Masks IRQs and takes the lock if it is free; restores IRQs and returns `None` if not.
    pub fn try_lock(&self) -> Option<IrqSpinlockGuard<'_, T>> {
        let irq = irq::save_and_mask();
        match self.inner.try_lock() {
            Some(g) => Some(IrqSpinlockGuard {
                guard: core::mem::ManuallyDrop::new(g),
                irq,
            }),
            None => {
                irq::restore(irq);
                None
            }
        }
    }

    /// Whether some CPU holds the lock (for diagnostics only).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    ///
    /// Only for the fatal path, when the holder will never run again (it is the panicking CPU
    /// itself, or the kernel is about to exit): the data may be mid-update.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { self.inner.force_unlock() };
    }
}

impl<T> Deref for IrqSpinlockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinlockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqSpinlockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, before IRQs are restored: the lock is
        // released while IRQs are still masked.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.guard) };
        irq::restore(self.irq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_and_releases() {
        let l = IrqSpinlock::new(1);
        {
            let mut g = l.lock();
            *g += 1;
            assert!(l.try_lock().is_none());
        }
        assert_eq!(*l.try_lock().unwrap(), 2);
    }
}
