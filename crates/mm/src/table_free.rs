//! Freeing page-table pages that lockless walkers may still be reading ([rule 2](broadside_base::rules#rule-2)), in the mode
//! `tablefree=` selects:
//!
//! - `rcu` (default): the gather's table batch goes to `call_rcu`; the tables are poisoned and
//!   freed after a grace period. No IPIs: a walker runs with IRQs masked, so every CPU reporting
//!   a quiescent state after the unhook proves no walk that saw the table is still running.
//! - `sync-each`: one IPI broadcast that waits for every CPU, per freed table (x86 before
//!   batching).
//! - `sync-batch`: one such IPI sync per batch (Linux's `tlb_remove_table_sync_one` per flush).
//!
//! A table with no batch to go into (the allocation failed) is freed at once after an IPI sync,
//! in every mode ([`free_table_now`]).
//!
//! `bug=free-tables-now` frees right after the TLB flush with no wait at all: the negative
//! control the use-after-free detectors must catch.
//!
//! Sits on `aspace` (`free_table_page`), `tlb` (`sync_all_cpus`) and `fault_inject`.

use crate::aspace::free_table_page;
use crate::fault_inject::planted;
use crate::settings::Bug;
use crate::settings::TableFreeMode;
use alloc::vec::Vec;
use broadside_arch::PhysAddr;
use core::sync::atomic::{AtomicU8, Ordering};

static MODE: AtomicU8 = AtomicU8::new(0);
/// Fixes the mode at boot (`tablefree=`), or switches it at run time (the scale bench
/// measures several in one boot). Only while no table free is in flight; tables already queued
/// for a grace period stay queued.
pub fn set_mode(mode: TableFreeMode) {
    MODE.store(
        match mode {
            TableFreeMode::Rcu => 0,
            TableFreeMode::SyncEach => 1,
            TableFreeMode::SyncBatch => 2,
        },
        Ordering::Relaxed,
    );
}

/// The mode in force (`tablefree=`, or the scale bench's current strategy).
pub fn mode() -> TableFreeMode {
    match MODE.load(Ordering::Relaxed) {
        1 => TableFreeMode::SyncEach,
        2 => TableFreeMode::SyncBatch,
        _ => TableFreeMode::Rcu,
    }
}

/// The RCU callback: frees a batch of tables after their grace period.
fn free_batch_after_gp(batch: Vec<PhysAddr>) {
    batch.into_iter().for_each(free_table_page);
}

/// Frees a batch of unhooked, already-invalidated tables (`tlb_remove_table_free`).
pub fn free_table_batch(batch: Vec<PhysAddr>) {
    if planted(Bug::FreeTablesNow) {
        batch.into_iter().for_each(free_table_page);
        return;
    }
    match mode() {
        // The callback owns the batch; queueing it allocates once (a box holding the `Vec`).
        TableFreeMode::Rcu => broadside_sync::call_rcu(move || free_batch_after_gp(batch)),
        TableFreeMode::SyncEach => {
            for pa in batch {
                crate::tlb::sync_all_cpus();
                free_table_page(pa);
            }
        }
        TableFreeMode::SyncBatch => {
            crate::tlb::sync_all_cpus();
            batch.into_iter().for_each(free_table_page);
        }
    }
}

/// Frees one table with no batch to put it in (the allocation failed): the caller has already
/// invalidated it; wait for walkers synchronously, then free (`tlb_remove_table_one`).
///
/// In every mode the wait is an IPI sync, as Linux's `tlb_remove_table_sync_one`: the caller
/// holds the space's lock (a spinlock), where waiting for a grace period is not allowed — its
/// length is other CPUs' business, and one spinning on that very lock with IRQs masked would
/// never report its quiescent state. An IPI is taken only outside a lockless walk, so once
/// every CPU has taken it no walk that saw the table is still running.
pub fn free_table_now(pa: PhysAddr) {
    if !planted(Bug::FreeTablesNow) {
        crate::tlb::sync_all_cpus();
    }
    free_table_page(pa);
}
