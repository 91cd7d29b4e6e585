//! Stale *restrictive* entries: what a CPU's TLB may still hold after a permission upgrade
//! that issued no TLBI, so that an access the new entry allows may still take a permission
//! fault there (a spurious fault).
//!
//! An upgrade owes no invalidation (the old entry allows less than the new one, so using it
//! can only fault, and the fault handler fixes that locally: Linux's
//! `flush_tlb_fix_spurious_fault`, and the write-fault path of "arm64, tlbflush: don't TLBI
//! broadcast if page reused in write fault"). QEMU never shows such a fault: its TLB re-walks
//! the tables on any permission miss. This model says where hardware may fault, so the
//! kernel's fault path is exercised where it would be, and a handler that does not invalidate
//! is seen to loop. It is not an obligation: nothing waits for these entries to go.
//!
//! An entry is recorded on every CPU that may have cached the old one, and is forgotten on a
//! CPU when a TLBI that reaches that CPU hits it (its ASID and page; any kind: a leaf is hit
//! by every form). It is forgotten at issue, not completion: the model decides when a fault
//! is possible, and an entry one barrier early or late changes only which access faults.
//! Bounded: each CPU keeps the newest [`PER_CPU`] entries; an older one dropped means fewer
//! spurious faults modelled, never a wrong verdict.

use super::mask::CpuMask;
use super::rules::{Entries, Invalidation, Scope, Tag, asid_matches, hit_range, kind_matches};
use alloc::vec::Vec;
use broadside_base::hint::QuietMutex as Mutex;
use core::sync::atomic::{AtomicU64, Ordering};

/// Entries kept per CPU.
pub const PER_CPU: usize = 32;

/// What the old entry allowed: the accesses that may still fault through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldAccess {
    /// A read went through it (its Access flag was set).
    pub read: bool,
    /// An EL1 write went through it.
    pub write: bool,
}

/// One restrictive entry a CPU may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Restrictive {
    asid: u16,
    /// The leaf's first VA and size.
    va: u64,
    size: u64,
    level: u8,
    old: OldAccess,
}

impl Restrictive {
    fn entries(&self) -> Entries {
        Entries {
            tag: Tag::Asid(self.asid),
            start: self.va,
            end: self.va + self.size,
            level: self.level,
            leaf_size: self.size,
            walk_cache_required: false,
        }
    }
}

/// Every CPU's stale restrictive entries.
pub struct StalePermissions {
    cpus: Vec<Mutex<Vec<Restrictive>>>,
    /// CPUs whose list may be non-empty (a bit per CPU): a broadcast TLBI visits only them, so
    /// that with none held (nearly always) it costs one load per 64 CPUs, not a lock per CPU.
    nonempty: Vec<AtomicU64>,
    recorded: AtomicU64,
    dropped: AtomicU64,
}

impl StalePermissions {
    /// An empty model for `cpus` CPUs.
    pub fn new(cpus: usize) -> Self {
        Self {
            cpus: (0..cpus)
                .map(|_| Mutex::new(Vec::with_capacity(PER_CPU)))
                .collect(),
            nonempty: (0..cpus.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A leaf of `size` bytes at `va` (level `level`) under `asid` was upgraded in place, with
    /// no invalidation, from an entry that allowed `old`: each CPU of `cpus` may still hold
    /// the old entry.
    pub fn upgrade(&self, cpus: CpuMask, asid: u16, va: u64, level: u8, size: u64, old: OldAccess) {
        let r = Restrictive {
            asid,
            va: va & !(size - 1),
            size,
            level,
            old,
        };
        for cpu in cpus.iter().filter(|&c| c < self.cpus.len()) {
            let mut held = self.cpus[cpu].lock();
            // A newer upgrade of the same leaf replaces the older record (the TLB holds at
            // most one of them; either faults).
            held.retain(|h| !(h.asid == asid && h.va == r.va));
            if held.len() == PER_CPU {
                held.remove(0);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            held.push(r);
            self.nonempty[cpu / 64].fetch_or(1 << (cpu % 64), Ordering::Relaxed);
            self.recorded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `cpu` issued `inv`: the entries it hits go from every CPU it reaches.
    pub fn invalidate(&self, cpu: usize, inv: &Invalidation) {
        let forget = |c: usize| {
            let Some(held) = self.cpus.get(c) else { return };
            let mut held = held.lock();
            held.retain(|h| {
                let e = h.entries();
                !(asid_matches(inv, e.tag) && kind_matches(inv, &e) && hit_range(inv, &e).is_some())
            });
            if held.is_empty() {
                // Under the list's lock: an `upgrade` that refills it sets the bit after this.
                self.nonempty[c / 64].fetch_and(!(1 << (c % 64)), Ordering::Relaxed);
            }
        };
        let holds = |c: usize| {
            self.nonempty
                .get(c / 64)
                .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (c % 64)) != 0)
        };
        match inv.scope {
            Scope::Local(_) => {
                if holds(cpu) {
                    forget(cpu);
                }
            }
            Scope::InnerShareable => {
                for (w, word) in self.nonempty.iter().enumerate() {
                    let mut bits = word.load(Ordering::Relaxed);
                    while bits != 0 {
                        forget(w * 64 + bits.trailing_zeros() as usize);
                        bits &= bits - 1;
                    }
                }
            }
        }
    }

    /// Whether an access by `cpu` to `va` under `asid` (a write if `write`, else a read) may
    /// take a permission fault through an entry this model says `cpu` may still hold.
    pub fn faults(&self, cpu: usize, asid: u16, va: u64, write: bool) -> bool {
        let held_any = self
            .nonempty
            .get(cpu / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (cpu % 64)) != 0);
        held_any
            && self.cpus.get(cpu).is_some_and(|held| {
                held.lock().iter().any(|h| {
                    h.asid == asid
                        && (h.va..h.va + h.size).contains(&va)
                        && !(if write { h.old.write } else { h.old.read })
                })
            })
    }

    /// Entries recorded (one per CPU per upgraded leaf) and dropped for room.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.recorded.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sanitizer::rules::decode;
    use broadside_arch::tlbi::{TlbiOp, tlbi_asid_operand, tlbi_vaddr};

    const RO: OldAccess = OldAccess {
        read: true,
        write: false,
    };
    const PAGE: u64 = 4096;
    const BLOCK: u64 = 2 << 20;

    fn cpus(list: &[usize]) -> CpuMask {
        list.iter()
            .fold(CpuMask::EMPTY, |m, &c| m.or(CpuMask::single(c)))
    }

    fn vale1(va: u64, asid: u16, level: Option<u8>, scope: Scope) -> Invalidation {
        decode(
            TlbiOp::Vale1 {
                operand: tlbi_vaddr(va, asid, level),
            },
            scope,
        )
    }

    #[test]
    fn an_upgrade_faults_writes_on_the_cpus_that_held_it_until_their_local_flush() {
        let m = StalePermissions::new(4);
        m.upgrade(cpus(&[1, 2]), 7, 0x4000_1000, 3, PAGE, RO);
        assert!(m.faults(1, 7, 0x4000_1008, true));
        assert!(m.faults(2, 7, 0x4000_1000, true));
        assert!(!m.faults(1, 7, 0x4000_1000, false), "reads were allowed");
        assert!(!m.faults(3, 7, 0x4000_1000, true), "CPU 3 never held it");
        assert!(!m.faults(1, 8, 0x4000_1000, true), "another ASID");
        assert!(!m.faults(1, 7, 0x4000_2000, true), "another page");
        // CPU 1's local flush of the page: CPU 1 only.
        m.invalidate(1, &vale1(0x4000_1000, 7, Some(3), Scope::Local(1)));
        assert!(!m.faults(1, 7, 0x4000_1000, true));
        assert!(m.faults(2, 7, 0x4000_1000, true));
        // Another CPU's local flush reaches nobody else.
        m.invalidate(3, &vale1(0x4000_1000, 7, Some(3), Scope::Local(3)));
        assert!(m.faults(2, 7, 0x4000_1000, true));
        // A broadcast reaches every CPU.
        m.invalidate(0, &vale1(0x4000_1000, 7, None, Scope::InnerShareable));
        assert!(!m.faults(2, 7, 0x4000_1000, true));
    }

    #[test]
    fn a_block_is_one_entry_hit_by_any_page_inside_it_at_its_level() {
        let m = StalePermissions::new(2);
        m.upgrade(cpus(&[0]), 3, 0x4020_0000, 2, BLOCK, RO);
        assert!(m.faults(0, 3, 0x4020_0000 + BLOCK - 8, true));
        // A level-3 hint names the wrong level: the block stays.
        m.invalidate(0, &vale1(0x4030_0000, 3, Some(3), Scope::Local(0)));
        assert!(m.faults(0, 3, 0x4020_0000, true));
        m.invalidate(0, &vale1(0x4030_0000, 3, Some(2), Scope::Local(0)));
        assert!(!m.faults(0, 3, 0x4020_0000, true));
    }

    #[test]
    fn an_asid_flush_or_the_wrong_asid() {
        let m = StalePermissions::new(2);
        m.upgrade(cpus(&[0, 1]), 5, 0x1000, 3, PAGE, RO);
        m.invalidate(0, &vale1(0x1000, 6, None, Scope::InnerShareable));
        assert!(m.faults(0, 5, 0x1000, true), "another ASID's flush");
        let aside = decode(
            TlbiOp::Aside1 {
                operand: tlbi_asid_operand(5),
            },
            Scope::InnerShareable,
        );
        m.invalidate(1, &aside);
        assert!(!m.faults(0, 5, 0x1000, true) && !m.faults(1, 5, 0x1000, true));
        m.upgrade(cpus(&[0]), 5, 0x1000, 3, PAGE, RO);
        m.invalidate(0, &decode(TlbiOp::Vmalle1, Scope::Local(0)));
        assert!(!m.faults(0, 5, 0x1000, true), "the rollover's local flush");
    }

    #[test]
    fn bounded_per_cpu_dropping_the_oldest() {
        let m = StalePermissions::new(1);
        for k in 0..(PER_CPU as u64 + 3) {
            m.upgrade(cpus(&[0]), 1, k * PAGE, 3, PAGE, RO);
        }
        assert_eq!(m.counts(), (PER_CPU as u64 + 3, 3));
        assert!(!m.faults(0, 1, 0, true), "the oldest went");
        assert!(m.faults(0, 1, (PER_CPU as u64 + 2) * PAGE, true));
        // The same leaf upgraded again is one record.
        m.upgrade(cpus(&[0]), 1, (PER_CPU as u64 + 2) * PAGE, 3, PAGE, RO);
        assert_eq!(m.cpus[0].lock().len(), PER_CPU);
    }
}
