//! The unshare synchronisation mode (`unshare=`): after a shared table is unshared, whether
//! lockless walkers that may still be inside it are waited for (`sync-each`, `sync-last`) or
//! re-check the entries they came through (`recheck`). It is about walkers and RCU, not about
//! sharing itself: the gather asks it when it flushes unshared tables, the walker when it
//! starts a walk, and `shared` documents the modes.
//!
//! Sits on `fault_inject` (for `bug=unshare-no-sync`) alone.

use crate::fault_inject;
use crate::settings::{Bug, UnshareMode};
use core::sync::atomic::{AtomicU8, Ordering};

static MODE: AtomicU8 = AtomicU8::new(1);

/// Fixes the unshare mode at boot (`unshare=`), or switches it at run time (the benches
/// measure all three in one boot). Only while no unshare is in flight. `bug=unshare-no-sync`
/// is asked of [`fault_inject::planted`] where it acts.
pub fn set_mode(mode: UnshareMode) {
    MODE.store(
        match mode {
            UnshareMode::SyncEach => 0,
            UnshareMode::SyncLast => 1,
            UnshareMode::Recheck => 2,
        },
        Ordering::Relaxed,
    );
}

/// The unshare mode in force (`unshare=`).
pub fn unshare_mode() -> UnshareMode {
    match MODE.load(Ordering::Relaxed) {
        0 => UnshareMode::SyncEach,
        2 => UnshareMode::Recheck,
        _ => UnshareMode::SyncLast,
    }
}

/// Whether a full unshare must be followed by a walker sync (`sync-last` without the bug).
pub fn sync_after_full_unshare() -> bool {
    unshare_mode() == UnshareMode::SyncLast && !fault_inject::planted(Bug::UnshareNoSync)
}

/// Whether lockless walkers re-check the upper-level entries they came through (`recheck`).
pub fn walker_rechecks_upper() -> bool {
    unshare_mode() == UnshareMode::Recheck && !fault_inject::planted(Bug::UnshareNoSync)
}
