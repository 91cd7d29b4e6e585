//! The mm layer's kernel arguments: how stale translations are shot down (`flush=`), which
//! errata workarounds run (`errata=`), how freed tables and unshares wait for walkers
//! (`tablefree=`, `unshare=`), the sanitizer (`audit=`), the ASID width (`asid_bits=`), injected
//! allocation failures (`fail_alloc=`), and the bugs mm plants (`bug=`, asked through
//! `fault_inject::planted`). A new mm setting is a field and a row here; its default is
//! in [`MmArgs::DEFAULT`](broadside_base::args::ArgGroup::DEFAULT).

use broadside_arch::errata::Errata;
use broadside_base::args::{ArgGroup, Flags, Key};
use broadside_base::{arg_enum, enum_key, int_key, on_off_key};
use core::fmt;

arg_enum! {
    /// How stale translations are shot down on other CPUs (`flush=`).
    pub enum FlushMode {
        /// Broadcast inner-shareable TLBI completed by `DSB ISH`; no other CPU is interrupted.
        Tlbi = "tlbi",
        /// The x86-style baseline: an IPI asks every other CPU to invalidate locally.
        Ipi = "ipi",
    }
}

arg_enum! {
    /// How freed page-table pages are kept from lockless walkers (`tablefree=`).
    pub enum TableFreeMode {
        /// Batched `call_rcu`-style deferral: tables are freed after a grace period.
        Rcu = "rcu",
        /// Baseline: an IPI sync for every freed table, then free it at once.
        SyncEach = "sync-each",
        /// Baseline: one IPI sync per gather batch, then free the batch.
        SyncBatch = "sync-batch",
    }
}

arg_enum! {
    /// How unsharing a level-2 table synchronises lockless walkers (`unshare=`).
    pub enum UnshareMode {
        /// One walker synchronisation per unshared table, whether or not other sharers remain
        /// (Linux before "mm/hugetlb: fix excessive IPI broadcasts when unsharing PMD tables").
        SyncEach = "sync-each",
        /// At most one synchronisation per gather batch, and only when a table became fully
        /// unshared (that fix; [rule 6](broadside_base::rules#rule-6)).
        SyncLast = "sync-last",
        /// No unshare synchronisation: the walker re-checks the level-1 entry it came through
        /// after grabbing a page (the alternative that commit message mentions).
        Recheck = "recheck",
    }
}

arg_enum! {
    /// A mistake the mm layer plants (`bug=`), for negative controls: each should make a
    /// detector fire.
    pub enum Bug {
        /// Omit the TLBI after unhooking entries.
        SkipTlbi = "skip-tlbi",
        /// Use a local (non-broadcast) TLBI where an inner-shareable one is required.
        LocalTlbi = "local-tlbi",
        /// Use a leaf-only TLBI after freeing tables, leaving walk caches stale.
        LeafOnlyFlush = "leaf-only-flush",
        /// Free table pages without waiting for a grace period.
        FreeTablesNow = "free-tables-now",
        /// Run the lockless walker with IRQs unmasked, so a tick no longer proves quiescence.
        WalkerIrqsOn = "walker-irqs-on",
        /// Skip the walker synchronisation when the last sharer unshares a table.
        UnshareNoSync = "unshare-no-sync",
        /// Let a mapping into a space whose destroy has begun go ahead (the teardown race: destroy
        /// then tears down a shared table it does not own).
        MapDying = "map-dying",
        /// The last sharer frees a full shared level-2 table but flushes one page of its 1 GiB.
        LastSharerNarrowFlush = "last-sharer-narrow-flush",
        /// `protect` flushes a range of mixed pages and blocks with the largest leaf's stride and
        /// level hint.
        ProtectWideStride = "protect-wide-stride",
        /// The spurious-permission-fault handler retries without invalidating the stale entry
        /// locally: the access faults again, forever (a fault loop).
        SpuriousNoLocalTlbi = "spurious-no-local-tlbi",
        /// `protect` takes every change for a permission upgrade and issues no TLBI, so a
        /// downgrade (read-write to read-only) is never flushed.
        DowngradeAsUpgrade = "downgrade-as-upgrade",
        /// An unmap that finds another CPU's deferred TLB batch pending on its space completes
        /// it with a `DSB ISH` of its own, which completes only its own TLBIs (Linux
        /// 4b634918384c's bug).
        BatchDrainOtherCpu = "batch-drain-other-cpu",
        /// An unmap or `protect` ignores another CPU's deferred TLB batch pending on its space,
        /// and returns while that batch's TLBIs are not yet complete.
        BatchPendingIgnored = "batch-pending-ignored",
        /// A space records one batch owner, not every CPU with a batch pending on it: a second
        /// batch overwrites the first's record, and completing clears it, so an unmap returns
        /// while the first batch's TLBIs are still incomplete (found by an 8-CPU stress run).
        BatchOwnerOverwritten = "batch-owner-overwritten",
        /// A `map_object` that runs out of memory half-way leaves its shared tables hooked.
        MapObjectNoUndo = "map-object-no-undo",
        /// Unshare without flushing under the object lock (the flush happens late, in `finish`).
        UnshareFlushLate = "unshare-flush-late",
        /// The gather has no embedded page batch: with every batch allocation failing it cannot
        /// make progress (`fail_alloc=1000` then hangs the mutator).
        GatherNoLocalBatch = "gather-no-local-batch",
        /// Range and page TLBIs name another ASID than the space's (one bit flipped).
        WrongAsid = "wrong-asid",
        /// TLBIs are issued but not completed by a `DSB` before the frames are freed (a later
        /// barrier completes them, too late).
        NoDsb = "no-dsb",
        /// A range flush stops one page short of the range's end.
        NarrowRange = "narrow-range",
        /// A CPU switches address space after an ASID rollover without the local full flush the
        /// rollover owes it (the ASID allocator's `flush_local_tlb` ignored).
        RolloverSkipFlush = "rollover-skip-flush",
        /// The store barrier (`DSB ISHST`) comes after the TLBIs instead of before them: a walk
        /// between may cache the cleared entry again.
        TlbiBeforeStoreBarrier = "tlbi-before-store-barrier",
        /// User pages are mapped without nG (global), and so survive the ASID flushes of the
        /// teardown.
        GlobalUserLeaf = "global-user-leaf",
        /// A page migration writes the new output address over the valid entry in place, with
        /// no break-before-make.
        BbmSkip = "bbm-skip",
        /// The flush reads the space's ASID and CPU set with no `DMB ISH` after its table stores:
        /// the reads may be satisfied before the stores are visible (caught with `weak=on`).
        FlushNoDmb = "flush-no-dmb",
        /// An activation loads TTBR0 and walks with no `DSB ISH` after publishing its CPU in the
        /// space's `cpus_ever` (caught with `weak=on`).
        ActivateNoDsb = "activate-no-dsb",
        /// The lockless walker pins a frame even when its count is already zero (being freed).
        WalkerPinDying = "walker-pin-dying",
        /// The lockless walker does not re-check the entries after its pin.
        WalkerNoRecheck = "walker-no-recheck",
        /// The lockless walker re-checks after its pin but goes on when an entry changed.
        WalkerNoBackout = "walker-no-backout",
        /// With erratum 4118414 in force (`errata=repeat-tlbi`, or a CPU that has it), skip its
        /// workaround: broadcast TLBIs are completed by one `DSB ISH` with no repeat after it.
        ErratumNoRepeat = "erratum-no-repeat",
        /// With erratum 4193714 in force (`errata=dvmsync-ipi`), skip its workaround: no IPI
        /// to the CPUs running the space after a broadcast completion.
        ErratumNoDvmsync = "erratum-no-dvmsync",
    }
}

arg_enum! {
    /// A CPU erratum whose workaround `errata=` can force on (see [`broadside_arch::errata`],
    /// which detects them from MIDR_EL1 and spells them the same).
    pub enum Erratum {
        /// Erratum 4118414 (CVE-2025-10263): one `TLBI VALE1IS, XZR; DSB ISH` after each
        /// completing `DSB ISH`.
        RepeatTlbi = "repeat-tlbi",
        /// Erratum 4193714: after each completion, an IPI to the CPUs running the space, waited
        /// for.
        DvmsyncIpi = "dvmsync-ipi",
    }
}

/// `errata=`: which errata workarounds run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ErrataArg {
    /// `auto`: those of the boot CPU's MIDR_EL1.
    #[default]
    Auto,
    /// `none`, or a list: exactly these, whatever the CPU.
    Forced(Errata),
}

impl ErrataArg {
    /// What `errata=` accepts, for error messages.
    pub const ACCEPTED: &'static str = broadside_base::const_join!(
        "auto, none, or a comma-separated list of distinct names from ",
        Erratum::NAMES
    );

    /// Parses `auto`, `none` or a comma-separated list of distinct erratum names.
    pub fn parse(value: &str) -> Option<ErrataArg> {
        match value {
            "auto" => return Some(ErrataArg::Auto),
            "none" => return Some(ErrataArg::Forced(Errata::NONE)),
            _ => {}
        }
        let mut set = Errata::NONE;
        for name in value.split(',') {
            let flag = match Erratum::from_name(name)? {
                Erratum::RepeatTlbi => &mut set.repeat_tlbi,
                Erratum::DvmsyncIpi => &mut set.dvmsync_ipi,
            };
            if *flag {
                return None;
            }
            *flag = true;
        }
        Some(ErrataArg::Forced(set))
    }

    /// The errata in force on a CPU whose MIDR_EL1 is `midr`.
    pub fn resolve(self, midr: u64) -> Errata {
        match self {
            ErrataArg::Auto => Errata::from_midr(midr),
            ErrataArg::Forced(set) => set,
        }
    }
}

/// The spelling that reproduces it: `auto`, `none`, or the names joined by commas.
impl fmt::Display for ErrataArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrataArg::Auto => f.write_str("auto"),
            ErrataArg::Forced(set) if !set.any() => f.write_str("none"),
            ErrataArg::Forced(set) => {
                for (i, name) in set.names().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(name)?;
                }
                Ok(())
            }
        }
    }
}

/// A set of mm [`Bug`]s (`bug=a,b,...`); empty by default.
pub type Bugs = Flags<Bug>;

/// The mm layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmArgs {
    /// `flush=` [tlbi].
    pub flush: FlushMode,
    /// `errata=` [auto].
    pub errata: ErrataArg,
    /// `tablefree=` [rcu].
    pub tablefree: TableFreeMode,
    /// `unshare=` [sync-last].
    pub unshare: UnshareMode,
    /// `audit=on|off`: the flush-coverage sanitizer [None: the workload decides (on for
    /// `selftest` and `stress`, off for the others)].
    pub audit: Option<bool>,
    /// `asid_bits=`: force an ASID width below the CPU's, 2..=16 [None: the CPU's width].
    pub asid_bits: Option<u8>,
    /// `fail_alloc=`: injected allocation failures per mille, 0..=1000 [0].
    pub fail_alloc_per_mille: u32,
    /// The mm bugs of `bug=` [none].
    pub bugs: Bugs,
}

impl ArgGroup for MmArgs {
    const DEFAULT: MmArgs = MmArgs {
        flush: FlushMode::Tlbi,
        errata: ErrataArg::Auto,
        tablefree: TableFreeMode::Rcu,
        unshare: UnshareMode::SyncLast,
        audit: None,
        asid_bits: None,
        fail_alloc_per_mille: 0,
        bugs: Bugs::NONE,
    };

    const KEYS: &'static [Key<MmArgs>] = &[
        enum_key!("flush", FlushMode, |a, v| a.flush = v),
        Key {
            name: "errata",
            accepted: ErrataArg::ACCEPTED,
            apply: |a, value| {
                a.errata = ErrataArg::parse(value)?;
                Some(())
            },
        },
        enum_key!("tablefree", TableFreeMode, |a, v| a.tablefree = v),
        enum_key!("unshare", UnshareMode, |a, v| a.unshare = v),
        on_off_key!("audit", |a, v| a.audit = Some(v)),
        int_key!("asid_bits", 2..=16, |a, n| a.asid_bits = Some(n)),
        int_key!("fail_alloc", 0..=1000, |a, n| a.fail_alloc_per_mille = n),
    ];

    const BUGS: &'static [&'static str] = Bug::NAMES;

    fn plant(&mut self, index: usize) -> bool {
        self.bugs.insert_index(index)
    }

    fn planted(&self, index: usize) -> bool {
        self.bugs.has_index(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadside_base::args::{One, parse};

    fn parse_ok(s: &str) -> MmArgs {
        parse::<One<MmArgs>>(s)
            .unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
            .0
    }

    fn error_text(s: &str) -> String {
        match parse::<One<MmArgs>>(s) {
            Ok(args) => panic!("{s:?} accepted as {args:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let args = parse_ok("");
        assert_eq!(args, MmArgs::DEFAULT);
        assert_eq!(args.flush, FlushMode::Tlbi);
        assert_eq!(args.errata, ErrataArg::Auto);
        assert_eq!(args.tablefree, TableFreeMode::Rcu);
        assert_eq!(args.unshare, UnshareMode::SyncLast);
        assert_eq!(args.audit, None);
        assert_eq!(args.asid_bits, None);
        assert_eq!(args.fail_alloc_per_mille, 0);
        assert!(args.bugs.is_empty());
    }

    #[test]
    fn every_key_at_once() {
        assert_eq!(
            parse_ok(
                "flush=ipi errata=dvmsync-ipi,repeat-tlbi tablefree=sync-batch unshare=recheck \
                 audit=off bug=leaf-only-flush,skip-tlbi asid_bits=8 fail_alloc=5"
            ),
            MmArgs {
                flush: FlushMode::Ipi,
                errata: ErrataArg::Forced(Errata {
                    repeat_tlbi: true,
                    dvmsync_ipi: true,
                }),
                tablefree: TableFreeMode::SyncBatch,
                unshare: UnshareMode::Recheck,
                audit: Some(false),
                asid_bits: Some(8),
                fail_alloc_per_mille: 5,
                bugs: Bugs::NONE.with(Bug::SkipTlbi).with(Bug::LeafOnlyFlush),
            }
        );
        assert_eq!(parse_ok("audit=on").audit, Some(true));
        assert_eq!(
            error_text("audit=yes"),
            "bootargs: audit=yes: one of on, off"
        );
    }

    #[test]
    fn every_enum_spelling_round_trips() {
        let flushes = [("tlbi", FlushMode::Tlbi), ("ipi", FlushMode::Ipi)];
        for (s, m) in flushes {
            assert_eq!(parse_ok(&format!("flush={s}")).flush, m);
            assert_eq!(m.name(), s);
        }
        assert_eq!(FlushMode::ALL.len(), flushes.len());
        let frees = [
            ("rcu", TableFreeMode::Rcu),
            ("sync-each", TableFreeMode::SyncEach),
            ("sync-batch", TableFreeMode::SyncBatch),
        ];
        for (s, m) in frees {
            assert_eq!(parse_ok(&format!("tablefree={s}")).tablefree, m);
            assert_eq!(m.name(), s);
        }
        assert_eq!(TableFreeMode::ALL.len(), frees.len());
        let unshares = [
            ("sync-each", UnshareMode::SyncEach),
            ("sync-last", UnshareMode::SyncLast),
            ("recheck", UnshareMode::Recheck),
        ];
        for (s, m) in unshares {
            assert_eq!(parse_ok(&format!("unshare={s}")).unshare, m);
            assert_eq!(m.name(), s);
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(UnshareMode::ALL.len(), unshares.len());
    }

    #[test]
    fn bad_enum_values_list_the_accepted_spellings() {
        for (input, expected) in [
            ("flush=", "bootargs: flush=: one of tlbi, ipi"),
            (
                "tablefree=sync",
                "bootargs: tablefree=sync: one of rcu, sync-each, sync-batch",
            ),
            (
                "unshare=sync_last",
                "bootargs: unshare=sync_last: one of sync-each, sync-last, recheck",
            ),
            (
                "unshare=recheck,sync-last",
                "bootargs: unshare=recheck,sync-last: one of sync-each, sync-last, recheck",
            ),
        ] {
            assert_eq!(error_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn integer_keys_accept_both_bounds_and_reject_just_outside() {
        for (key, min, max) in [("asid_bits", 2u64, 16u64), ("fail_alloc", 0, 1000)] {
            for n in [min, max] {
                let args = parse_ok(&format!("{key}={n}"));
                let got = match key {
                    "asid_bits" => args.asid_bits.map(u64::from),
                    _ => Some(args.fail_alloc_per_mille.into()),
                };
                assert_eq!(got, Some(n), "{key}={n}");
            }
            for n in [Some(max + 1), min.checked_sub(1)].into_iter().flatten() {
                assert_eq!(
                    error_text(&format!("{key}={n}")),
                    format!("bootargs: {key}={n}: an integer from {min} to {max}")
                );
            }
        }
    }

    #[test]
    fn every_bug_name_parses_alone() {
        let bugs = [
            ("skip-tlbi", Bug::SkipTlbi),
            ("local-tlbi", Bug::LocalTlbi),
            ("leaf-only-flush", Bug::LeafOnlyFlush),
            ("free-tables-now", Bug::FreeTablesNow),
            ("walker-irqs-on", Bug::WalkerIrqsOn),
            ("unshare-no-sync", Bug::UnshareNoSync),
            ("map-dying", Bug::MapDying),
            ("last-sharer-narrow-flush", Bug::LastSharerNarrowFlush),
            ("protect-wide-stride", Bug::ProtectWideStride),
            ("spurious-no-local-tlbi", Bug::SpuriousNoLocalTlbi),
            ("downgrade-as-upgrade", Bug::DowngradeAsUpgrade),
            ("batch-drain-other-cpu", Bug::BatchDrainOtherCpu),
            ("batch-pending-ignored", Bug::BatchPendingIgnored),
            ("batch-owner-overwritten", Bug::BatchOwnerOverwritten),
            ("map-object-no-undo", Bug::MapObjectNoUndo),
            ("unshare-flush-late", Bug::UnshareFlushLate),
            ("gather-no-local-batch", Bug::GatherNoLocalBatch),
            ("wrong-asid", Bug::WrongAsid),
            ("no-dsb", Bug::NoDsb),
            ("narrow-range", Bug::NarrowRange),
            ("rollover-skip-flush", Bug::RolloverSkipFlush),
            ("tlbi-before-store-barrier", Bug::TlbiBeforeStoreBarrier),
            ("global-user-leaf", Bug::GlobalUserLeaf),
            ("bbm-skip", Bug::BbmSkip),
            ("flush-no-dmb", Bug::FlushNoDmb),
            ("activate-no-dsb", Bug::ActivateNoDsb),
            ("walker-pin-dying", Bug::WalkerPinDying),
            ("walker-no-recheck", Bug::WalkerNoRecheck),
            ("walker-no-backout", Bug::WalkerNoBackout),
            ("erratum-no-repeat", Bug::ErratumNoRepeat),
            ("erratum-no-dvmsync", Bug::ErratumNoDvmsync),
        ];
        assert_eq!(Bug::ALL.len(), bugs.len());
        for (s, bug) in bugs {
            let set = parse_ok(&format!("bug={s}")).bugs;
            assert_eq!(bug.name(), s);
            assert_eq!(set.iter().collect::<Vec<_>>(), [bug]);
            for other in Bug::ALL {
                assert_eq!(set.has(*other), *other == bug);
            }
            assert_eq!(set.to_string(), s);
        }
        let set = parse_ok("bug=unshare-no-sync,skip-tlbi,walker-irqs-on").bugs;
        assert_eq!(set.to_string(), "skip-tlbi,walker-irqs-on,unshare-no-sync");
    }

    #[test]
    fn errata_auto_none_or_a_list() {
        let forced = |repeat_tlbi, dvmsync_ipi| {
            ErrataArg::Forced(Errata {
                repeat_tlbi,
                dvmsync_ipi,
            })
        };
        for (value, want) in [
            ("auto", ErrataArg::Auto),
            ("none", forced(false, false)),
            ("repeat-tlbi", forced(true, false)),
            ("dvmsync-ipi", forced(false, true)),
            ("repeat-tlbi,dvmsync-ipi", forced(true, true)),
            ("dvmsync-ipi,repeat-tlbi", forced(true, true)),
        ] {
            let got = parse_ok(&format!("errata={value}")).errata;
            assert_eq!(got, want, "{value}");
            // Its display reproduces it (a list in declaration order).
            assert_eq!(ErrataArg::parse(&got.to_string()), Some(got), "{value}");
        }
        assert_eq!(forced(true, true).to_string(), "repeat-tlbi,dvmsync-ipi");
        assert_eq!(forced(false, false).to_string(), "none");
        // The names are the arch layer's (which detects them and names them in the summary).
        assert_eq!(Erratum::NAMES, Errata::NAMES);
        // auto follows the CPU; a forced set ignores it.
        const NEOVERSE_N1: u64 = 0x414f_d0c1;
        const MAX: u64 = 0x000f_0510;
        assert!(ErrataArg::Auto.resolve(NEOVERSE_N1).repeat_tlbi);
        assert_eq!(ErrataArg::Auto.resolve(MAX), Errata::NONE);
        assert_eq!(forced(false, false).resolve(NEOVERSE_N1), Errata::NONE);
        assert_eq!(
            forced(true, false).resolve(MAX),
            Errata::from_midr(NEOVERSE_N1)
        );
    }

    #[test]
    fn bad_errata_say_what_is_accepted() {
        let accepted = "auto, none, or a comma-separated list of distinct names from \
                        repeat-tlbi, dvmsync-ipi";
        assert_eq!(ErrataArg::ACCEPTED, accepted);
        for value in [
            "",
            "on",
            "all",
            "repeat",
            "repeat-tlbi,",
            ",repeat-tlbi",
            "repeat-tlbi,repeat-tlbi",
            "repeat-tlbi,none",
            "none,repeat-tlbi",
            "auto,dvmsync-ipi",
            "Repeat-TLBI",
        ] {
            assert_eq!(
                error_text(&format!("errata={value}")),
                format!("bootargs: errata={value}: {accepted}")
            );
        }
    }
}
