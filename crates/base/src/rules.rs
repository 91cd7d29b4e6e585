//! The six rules broadside's TLB and page-table-freeing code keeps, defined once here and cited
//! by number everywhere else ("rule 5"). They are Linux's arm64 and mm rules, stated for this
//! kernel; the comments at each site say how that site keeps its rule, and docs/checks.md says which
//! detector checks it.
//!
//! # Rule 1
//! **Unhook, then invalidate, then free.** No data page and no table page goes back to the
//! allocator before an invalidation of every VA through which it was reachable has *completed*:
//! a broadcast `TLBI ...IS` followed by `DSB ISH` on the issuing CPU (or, for a space only ever
//! active on this CPU, a local TLBI and `DSB NSH`). Linux: `tlb_flush_mmu` runs
//! `tlb_flush_mmu_tlbonly` before `tlb_batch_pages_flush`. Kept by `mm::gather`.
//!
//! # Rule 2
//! **A freed table page also waits for lockless walkers.** After its invalidation it waits for
//! an RCU grace period (`tablefree=rcu`) or, in the x86-style baselines, for an IPI that every
//! CPU acknowledged (`sync-each`, `sync-batch`): a software walker may still be reading it.
//! Linux: `tlb_remove_table` with `CONFIG_MMU_GATHER_RCU_TABLE_FREE`. Kept by `mm::table_free`
//! and `sync::rcu`.
//!
//! # Rule 3
//! **A lockless walk runs with IRQs masked** from its first read of the root to its last
//! re-check. That window is its RCU read-side critical section (the sched-RCU flavour), so a
//! timer interrupt that a CPU takes proves it was outside every walk: a quiescent state. Linux:
//! `gup_fast` runs under `local_irq_save`. Kept by `mm::walker`; `bug=walker-irqs-on` breaks it.
//!
//! # Rule 4
//! **A walker that grabs a page re-checks the path.** It takes a reference only if the count is
//! not zero, then re-reads the entries it came through and backs out if any changed. Linux:
//! `try_grab_folio_fast` and the `pmd_val(pmd) != pmd_val(*pmdp)` / `pte_val(pte) !=
//! pte_val(ptep_get(ptep))` checks in `gup_fast_pte_range`. Kept by `mm::walker`.
//!
//! # Rule 5
//! **When tables went away, the invalidation covers walk caches.** A flush after freeing or
//! unsharing a table uses `VAE1IS` / `RVAE1IS` (or a whole-ASID flush), never the leaf-only
//! `VALE1IS` / `RVALE1IS`: a walk cache may hold the parent entry that pointed at the table.
//! Linux: `tlb_flush` passes `tlb->freed_tables` so arm64's `__flush_tlb_range` drops its
//! last-level hint. QEMU does not model walk caches, so the kernel checks this itself
//! (`leaf_only_flush_detected`); `bug=leaf-only-flush` breaks it.
//!
//! # Rule 6
//! **Unsharing a shared level-2 table.** The caller's range is flushed (walk caches included).
//! If the table became fully unshared — the caller was the last *other* sharer, so one space now
//! owns it alone and may install unrelated mappings in it — lockless walkers are synchronised
//! with before the lock that protects sharing is dropped; if it did not, no synchronisation is
//! needed. Linux: "mm/hugetlb: fix excessive IPI broadcasts when unsharing PMD tables using
//! mmu_gather" (`tlb_unshare_pmd_ptdesc`, `tlb_flush_unshared_tables`). Kept by `mm::shared`
//! and `mm::gather`; `bug=unshare-no-sync` and `bug=unshare-flush-late` break it.
