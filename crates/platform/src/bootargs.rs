//! Kernel arguments: the `/chosen/bootargs` string, parsed into typed settings.
//!
//! QEMU's `-append` lands in the DTB's `/chosen/bootargs`; the boot CPU hands that string (with
//! its NUL already stripped) to [`BootArgs::parse`]. The grammar is space-separated `key=value`
//! tokens, the same shape Linux splits with `next_arg()` (lib/cmdline.c) and dispatches with
//! `parse_args()` (kernel/params.c). Unlike Linux, which passes unknown words on to init,
//! broadside treats every argument as a request it must honour: an unknown key, a token without
//! `=`, an empty or malformed value, a value out of range and a key given twice are all errors.
//! A stress run whose `flush=ipi` was silently dropped would measure the wrong thing and say
//! nothing, so the design contract makes the kernel print
//! `error: bootargs: <key>=<value>: <what is accepted>` and exit with code 2 instead.
//!
//! Parsing runs before the heap exists, so it never allocates: errors borrow the key and value
//! from the input and carry a `&'static str` describing what the key accepts. Every key lives in
//! one row of [`SPECS`]; the help text ([`KEYS`]) and the unknown-key message are derived from
//! that table at compile time, and every enum's accepted text is derived from its variant names,
//! so a new key or value is added in exactly one place.

use broadside_arch::errata::Errata;
use core::fmt;
use core::ops::RangeInclusive;

/// Joins `names` with `", "` after `prefix` at compile time, yielding a `&'static str`.
///
/// The accepted-value texts must be `&'static str` (no allocation while parsing) and must list
/// exactly the names the parser accepts; building them from the same name tables keeps the two
/// from drifting apart.
macro_rules! const_join {
    ($prefix:expr, $names:expr) => {{
        const PREFIX: &str = $prefix;
        const NAMES: &[&str] = $names;
        const BYTES: [u8; joined_len(PREFIX, NAMES)] = join_bytes(PREFIX, NAMES);
        match core::str::from_utf8(&BYTES) {
            Ok(joined) => joined,
            Err(_) => panic!("joining UTF-8 strings yields UTF-8"),
        }
    }};
}

/// Length of `prefix` followed by `names` separated by `", "`.
const fn joined_len(prefix: &str, names: &[&str]) -> usize {
    let mut len = prefix.len();
    let mut i = 0;
    while i < names.len() {
        if i > 0 {
            len += 2;
        }
        len += names[i].len();
        i += 1;
    }
    len
}

/// The bytes of `prefix` followed by `names` separated by `", "`; `N` must be
/// `joined_len(prefix, names)`.
const fn join_bytes<const N: usize>(prefix: &str, names: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = copy_into(&mut out, 0, prefix.as_bytes());
    let mut i = 0;
    while i < names.len() {
        if i > 0 {
            at = copy_into(&mut out, at, b", ");
        }
        at = copy_into(&mut out, at, names[i].as_bytes());
        i += 1;
    }
    assert!(at == N, "join_bytes: N must equal joined_len");
    out
}

const fn copy_into<const N: usize>(out: &mut [u8; N], at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// Defines a fieldless enum whose variants are spelled on the command line as the given
/// strings, with `name`, `from_name`, `ALL`, `NAMES` and `ACCEPTED` ("one of a, b, c").
macro_rules! arg_enum {
    (
        $(#[$meta:meta])*
        pub enum $Enum:ident {
            $($(#[$vmeta:meta])* $Variant:ident = $spelling:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $Enum {
            $($(#[$vmeta])* $Variant,)+
        }

        impl $Enum {
            /// Every value, in declaration order.
            pub const ALL: &'static [$Enum] = &[$($Enum::$Variant),+];
            /// The argument spelling of every value, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($spelling),+];
            /// What the argument accepts, for error messages.
            pub const ACCEPTED: &'static str = const_join!("one of ", $Enum::NAMES);

            /// The exact argument spelling (also used in the summary JSON).
            pub const fn name(&self) -> &'static str {
                match self {
                    $($Enum::$Variant => $spelling,)+
                }
            }

            /// The value spelled `name` on the command line, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($spelling => Some($Enum::$Variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $Enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

arg_enum! {
    /// What the kernel runs after boot (`workload=`).
    pub enum Workload {
        /// A short, narrated run of every mechanism.
        Demo = "demo",
        /// Deterministic self-tests of each layer.
        Selftest = "selftest",
        /// Walkers, touchers and mutators racing for `seconds=`.
        Stress = "stress",
        /// Measures the unshare strategies side by side.
        UnshareBench = "unshare-bench",
        /// One fixed mix of unmap, fork/exit over shared tables and protect, once per
        /// shootdown and sync strategy, as counts per operation.
        ScaleBench = "scale-bench",
        /// What each way of flushing less saves per operation against the path it replaced:
        /// permission upgrades without a flush, deferred TLB batches.
        FlushBench = "flush-bench",
    }
}

arg_enum! {
    /// The most verbose log level printed (`log=`).
    pub enum LogLevel {
        /// Errors only.
        Error = "error",
        /// Errors and warnings.
        Warn = "warn",
        /// Normal progress messages.
        Info = "info",
        /// Diagnostics.
        Debug = "debug",
        /// Everything, including per-operation traces.
        Trace = "trace",
    }
}

impl LogLevel {
    /// The `log` crate filter for this level.
    pub const fn level_filter(&self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

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
    /// A deliberately injected mistake (`bug=`), for negative controls: each should make a
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
        /// A CPU leaving idle is not ordered before its first reads (no fence in RCU's
        /// `idle_exit`): a grace period's snapshot may see it idle while it already reads what is
        /// being unpublished (caught with `weak=on`).
        RcuSnapshotEarly = "rcu-snapshot-early",
        /// The activation gate's entrant has no fence between its increment and its read of
        /// `closed`: the destroyer may read the gate drained while it gets in (caught with
        /// `weak=on`).
        GateNoFence = "gate-no-fence",
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
        /// Panic on the boot CPU once the workload starts (tests the panic path, exit 3).
        Panic = "panic",
        /// Take an unexpected data abort once the workload starts (the exception path, exit 3).
        Fault = "fault",
        /// Execute one FP/SIMD instruction once the workload starts: the soft-float kernel
        /// leaves CPACR_EL1.FPEN = 0b00, so it must trap with a named report (exit 3).
        Fp = "fp",
        /// Spin forever with IRQs masked on the last CPU (the watchdog path, exit 4).
        Hang = "hang",
        /// Spin forever with IRQs masked on the boot CPU while the others idle (the watchdog's
        /// scan must still run, from the idle CPUs' slow tick: exit 4).
        HangBoot = "hang-boot",
        /// The idle loop looks for posted work before masking IRQs, so a kick taken between the
        /// look and the `WFI` is lost (the watchdog's lost-wakeup check: exit 4).
        IdleLostWakeup = "idle-lost-wakeup",
        /// The last secondary CPU waits `cpus_wait_ms` plus a second before coming online, so
        /// the boot CPU's wait must time out and name it (the late-CPU path, exit 4).
        LateCpu = "late-cpu",
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
    pub const ACCEPTED: &'static str = const_join!(
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

impl Bug {
    const fn bit(self) -> u64 {
        1 << self as u64
    }
}

const _: () = assert!(Bug::ALL.len() <= u64::BITS as usize, "Bugs is a u64 bitset");

/// A set of injected [`Bug`]s (`bug=a,b,...`); empty by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bugs(u64);

impl Bugs {
    /// No bugs injected.
    pub const NONE: Bugs = Bugs(0);
    /// What `bug=` accepts, for error messages.
    pub const ACCEPTED: &'static str =
        const_join!("a comma-separated list of distinct names from ", Bug::NAMES);

    /// This set plus `bug`.
    pub const fn with(self, bug: Bug) -> Bugs {
        Bugs(self.0 | bug.bit())
    }

    /// The raw bitset (for keeping the set in an atomic).
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set whose raw bitset is `bits` (from [`Bugs::bits`]).
    pub const fn from_bits(bits: u64) -> Bugs {
        Bugs(bits)
    }

    /// Whether `bug` is injected.
    pub const fn has(&self, bug: Bug) -> bool {
        self.0 & bug.bit() != 0
    }

    /// Whether no bug is injected.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The injected bugs in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = Bug> + '_ {
        Bug::ALL.iter().copied().filter(|&bug| self.has(bug))
    }

    /// Parses a comma-separated list of distinct bug names; `None` if any name is unknown,
    /// empty or repeated.
    pub fn parse_list(list: &str) -> Option<Bugs> {
        let mut bugs = Bugs::NONE;
        for name in list.split(',') {
            let bug = Bug::from_name(name)?;
            if bugs.has(bug) {
                return None;
            }
            bugs = bugs.with(bug);
        }
        Some(bugs)
    }
}

/// The names joined by commas, in declaration order (empty when no bug is injected): the
/// exact `bug=` spelling that reproduces the set.
impl fmt::Display for Bugs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, bug) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(bug.name())?;
        }
        Ok(())
    }
}

/// Every kernel argument, typed, with its default where the argument was not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootArgs {
    /// `workload=` [demo].
    pub workload: Workload,
    /// `seconds=`: how long a timed workload runs, 0..=86400 [10].
    pub seconds: u32,
    /// `seed=`: seed of every pseudo-random choice, decimal or 0x-hex [1].
    pub seed: u64,
    /// `log=` [info].
    pub log: LogLevel,
    /// `timeout=`: watchdog limit in seconds, 1..=86400 [None: the kernel derives one].
    pub timeout: Option<u32>,
    /// `hz=`: timer ticks per second, 10..=10000 [1000].
    pub hz: u32,
    /// `flush=` [tlbi].
    pub flush: FlushMode,
    /// `errata=` [auto].
    pub errata: ErrataArg,
    /// `tablefree=` [rcu].
    pub tablefree: TableFreeMode,
    /// `unshare=` [sync-last].
    pub unshare: UnshareMode,
    /// `sharing=on|off`: whether address spaces share level-2 tables [off].
    pub sharing: bool,
    /// `audit=on|off`: the flush-coverage sanitizer [None: on for `selftest` and `stress`, off
    /// for the other workloads; see [`BootArgs::audit_enabled`]].
    pub audit: Option<bool>,
    /// `yield_points=on|off`: seeded `YIELD`s at the protocols' race windows, which make
    /// `seed=` choose the interleaving under `run.sh --deterministic` (which turns them on) [off].
    pub yield_points: bool,
    /// `weak=on|off`: emulated store buffers, so that a missing barrier shows under QEMU (see
    /// `broadside_base::weak`) [off].
    pub weak: bool,
    /// `pct_depth=`: with `yield_points=on`, PCT priorities with `pct_depth - 1` change points at
    /// the yield points (see `broadside_base::pct`); 0 for none, 0..=8 [3].
    pub pct_depth: u32,
    /// `bug=` [none].
    pub bugs: Bugs,
    /// `asid_bits=`: force an ASID width below the CPU's, 2..=16 [None: the CPU's width].
    pub asid_bits: Option<u8>,
    /// `walkers=`: lockless walker threads, 0..=512 [None: chosen from the CPU count].
    pub walkers: Option<u32>,
    /// `touchers=`: threads that fault pages in, 0..=512 [None: chosen from the CPU count].
    pub touchers: Option<u32>,
    /// `mutators=`: threads that unmap, remap and free, 0..=512 [None: chosen from the CPU count].
    pub mutators: Option<u32>,
    /// `fail_alloc=`: injected allocation failures per mille, 0..=1000 [0].
    pub fail_alloc_per_mille: u32,
    /// `tables=`: how many page tables the workload populates, 1..=512 [64].
    pub tables: u32,
    /// `children=`: how many child address spaces the workload creates, 1..=256 [8].
    pub children: u32,
    /// `cpus_wait_ms=`: how long the boot CPU waits for secondaries, 1..=60000 [5000].
    pub cpus_wait_ms: u32,
}

/// Why the bootargs were rejected. `Display` gives the contract's text,
/// `bootargs: <key>=<value>: <what is accepted>`; the kernel prefixes `error: ` and exits 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgError<'a> {
    /// The key as written (for a token without `=`, the whole token).
    pub key: &'a str,
    /// The value as written (empty for a token without `=`).
    pub value: &'a str,
    /// What would have been accepted.
    pub accepted: &'static str,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bootargs: {}={}: {}",
            self.key, self.value, self.accepted
        )
    }
}

/// One key: its spelling, what it accepts, and how a value is stored. `apply` returns `None`
/// when the value is not accepted; it runs at most once per key.
struct KeySpec {
    name: &'static str,
    accepted: &'static str,
    apply: fn(&mut BootArgs, &str) -> Option<()>,
}

/// A row for an unsigned decimal key whose value must lie in `min..=max`; the accepted text is
/// built from the same two literals as the range check.
macro_rules! int_key {
    ($name:literal, $min:literal ..= $max:literal, |$args:ident, $n:ident| $store:expr) => {
        KeySpec {
            name: $name,
            accepted: concat!("an integer from ", $min, " to ", $max),
            apply: |$args, value| {
                let $n = parse_decimal_in(value, $min..=$max)?;
                $store;
                Some(())
            },
        }
    };
}

/// A row for a key whose values are the spellings of an [`arg_enum!`] type.
macro_rules! enum_key {
    ($name:literal, $Enum:ident, |$args:ident, $v:ident| $store:expr) => {
        KeySpec {
            name: $name,
            accepted: $Enum::ACCEPTED,
            apply: |$args, value| {
                let $v = $Enum::from_name(value)?;
                $store;
                Some(())
            },
        }
    };
}

const ON_OFF: &str = "one of on, off";

fn parse_on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Every key, in the order help and the unknown-key message list them.
const SPECS: &[KeySpec] = &[
    enum_key!("workload", Workload, |a, v| a.workload = v),
    int_key!("seconds", 0..=86400, |a, n| a.seconds = n),
    KeySpec {
        name: "seed",
        accepted: "a decimal or 0x-prefixed hexadecimal integer below 2^64",
        apply: |a, value| {
            a.seed = parse_u64_dec_or_hex(value)?;
            Some(())
        },
    },
    enum_key!("log", LogLevel, |a, v| a.log = v),
    int_key!("timeout", 1..=86400, |a, n| a.timeout = Some(n)),
    int_key!("hz", 10..=10000, |a, n| a.hz = n),
    enum_key!("flush", FlushMode, |a, v| a.flush = v),
    KeySpec {
        name: "errata",
        accepted: ErrataArg::ACCEPTED,
        apply: |a, value| {
            a.errata = ErrataArg::parse(value)?;
            Some(())
        },
    },
    enum_key!("tablefree", TableFreeMode, |a, v| a.tablefree = v),
    enum_key!("unshare", UnshareMode, |a, v| a.unshare = v),
    KeySpec {
        name: "sharing",
        accepted: ON_OFF,
        apply: |a, value| {
            a.sharing = parse_on_off(value)?;
            Some(())
        },
    },
    KeySpec {
        name: "audit",
        accepted: ON_OFF,
        apply: |a, value| {
            a.audit = Some(parse_on_off(value)?);
            Some(())
        },
    },
    KeySpec {
        name: "yield_points",
        accepted: ON_OFF,
        apply: |a, value| {
            a.yield_points = parse_on_off(value)?;
            Some(())
        },
    },
    KeySpec {
        name: "weak",
        accepted: ON_OFF,
        apply: |a, value| {
            a.weak = parse_on_off(value)?;
            Some(())
        },
    },
    int_key!("pct_depth", 0..=8, |a, n| a.pct_depth = n),
    KeySpec {
        name: "bug",
        accepted: Bugs::ACCEPTED,
        apply: |a, value| {
            a.bugs = Bugs::parse_list(value)?;
            Some(())
        },
    },
    int_key!("asid_bits", 2..=16, |a, n| a.asid_bits = Some(n)),
    int_key!("walkers", 0..=512, |a, n| a.walkers = Some(n)),
    int_key!("touchers", 0..=512, |a, n| a.touchers = Some(n)),
    int_key!("mutators", 0..=512, |a, n| a.mutators = Some(n)),
    int_key!("fail_alloc", 0..=1000, |a, n| a.fail_alloc_per_mille = n),
    int_key!("tables", 1..=512, |a, n| a.tables = n),
    int_key!("children", 1..=256, |a, n| a.children = n),
    int_key!("cpus_wait_ms", 1..=60000, |a, n| a.cpus_wait_ms = n),
];

const _: () = assert!(SPECS.len() <= u64::BITS as usize, "seen-key set is a u64");

const fn spec_names<const N: usize>() -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = SPECS[i].name;
        i += 1;
    }
    names
}

/// Every key, in table order (for help output).
pub const KEYS: &[&str] = &spec_names::<{ SPECS.len() }>();

const UNKNOWN_KEY: &str = const_join!("unknown key; keys are ", KEYS);
const EXPECTED_KEY_VALUE: &str = "expected key=value";
const DUPLICATE_KEY: &str = "duplicate key; give each key once";

/// Parses an unsigned decimal integer (digits only: no sign, no separators, no whitespace)
/// and checks it against `range`; overflow of `T` is out of range.
fn parse_decimal_in<T>(text: &str, range: RangeInclusive<T>) -> Option<T>
where
    T: TryFrom<u64> + PartialOrd,
{
    let n = parse_u64_radix(text, 10)?;
    let n = T::try_from(n).ok()?;
    range.contains(&n).then_some(n)
}

/// Parses a `u64` in decimal, or in hexadecimal after `0x`/`0X`.
fn parse_u64_dec_or_hex(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => parse_u64_radix(hex, 16),
        None => parse_u64_radix(text, 10),
    }
}

/// Digits only, at least one. `u64::from_str_radix` would also take a leading `+`, which the
/// contract rejects.
fn parse_u64_radix(digits: &str, radix: u32) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.chars().try_fold(0u64, |acc, c| {
        acc.checked_mul(u64::from(radix))?
            .checked_add(u64::from(c.to_digit(radix)?))
    })
}

impl BootArgs {
    /// Whether the flush-coverage sanitizer runs: `audit=` if given, else on for the workloads
    /// that prove safety (`selftest`, `stress`) and off for those that measure or show.
    pub fn audit_enabled(&self) -> bool {
        self.audit.unwrap_or(matches!(
            self.workload,
            Workload::Selftest | Workload::Stress
        ))
    }

    /// The settings when no argument is given.
    pub const DEFAULT: BootArgs = BootArgs {
        workload: Workload::Demo,
        seconds: 10,
        seed: 1,
        log: LogLevel::Info,
        timeout: None,
        hz: 1000,
        flush: FlushMode::Tlbi,
        errata: ErrataArg::Auto,
        tablefree: TableFreeMode::Rcu,
        unshare: UnshareMode::SyncLast,
        sharing: false,
        audit: None,
        yield_points: false,
        weak: false,
        pct_depth: 3,
        bugs: Bugs::NONE,
        asid_bits: None,
        walkers: None,
        touchers: None,
        mutators: None,
        fail_alloc_per_mille: 0,
        tables: 64,
        children: 8,
        cpus_wait_ms: 5000,
    };

    /// Parses a bootargs string: tokens separated by ASCII whitespace, each `key=value`
    /// (split at the first `=`). Keys not given keep their [`BootArgs::DEFAULT`] values.
    ///
    /// Tokens are checked left to right and the first bad one is reported; for each token the
    /// checks run in this order: has `=`, known key, not seen before, value accepted.
    pub fn parse(bootargs: &str) -> Result<BootArgs, ArgError<'_>> {
        let mut args = BootArgs::DEFAULT;
        let mut seen: u64 = 0;
        for token in bootargs.split_ascii_whitespace() {
            let Some((key, value)) = token.split_once('=') else {
                return Err(ArgError {
                    key: token,
                    value: "",
                    accepted: EXPECTED_KEY_VALUE,
                });
            };
            let error = |accepted| ArgError {
                key,
                value,
                accepted,
            };
            let Some(index) = SPECS.iter().position(|spec| spec.name == key) else {
                return Err(error(UNKNOWN_KEY));
            };
            let bit = 1u64 << index;
            if seen & bit != 0 {
                return Err(error(DUPLICATE_KEY));
            }
            seen |= bit;
            let spec = &SPECS[index];
            (spec.apply)(&mut args, value).ok_or(error(spec.accepted))?;
        }
        Ok(args)
    }
}

impl Default for BootArgs {
    fn default() -> Self {
        BootArgs::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> BootArgs {
        BootArgs::parse(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }

    fn error_text(s: &str) -> String {
        match BootArgs::parse(s) {
            Ok(args) => panic!("{s:?} accepted as {args:?}"),
            Err(e) => e.to_string(),
        }
    }

    const ALL_KEYS: &str = "workload, seconds, seed, log, timeout, hz, flush, errata, \
                            tablefree, unshare, sharing, audit, yield_points, weak, pct_depth, bug, \
                            asid_bits, walkers, \
                            touchers, mutators, \
                            fail_alloc, tables, children, cpus_wait_ms";

    #[test]
    fn empty_input_gives_every_default() {
        let args = parse("");
        assert_eq!(args, BootArgs::default());
        assert_eq!(args.workload, Workload::Demo);
        assert_eq!(args.seconds, 10);
        assert_eq!(args.seed, 1);
        assert_eq!(args.log, LogLevel::Info);
        assert_eq!(args.timeout, None);
        assert_eq!(args.hz, 1000);
        assert_eq!(args.flush, FlushMode::Tlbi);
        assert_eq!(args.tablefree, TableFreeMode::Rcu);
        assert_eq!(args.unshare, UnshareMode::SyncLast);
        assert!(!args.sharing);
        assert!(args.bugs.is_empty());
        assert_eq!(args.asid_bits, None);
        assert_eq!(args.walkers, None);
        assert_eq!(args.touchers, None);
        assert_eq!(args.mutators, None);
        assert_eq!(args.fail_alloc_per_mille, 0);
        assert_eq!(args.tables, 64);
        assert_eq!(args.children, 8);
        assert_eq!(args.cpus_wait_ms, 5000);
    }

    #[test]
    fn keys_lists_every_key_in_table_order() {
        assert_eq!(KEYS.join(", "), ALL_KEYS);
        let mut distinct = KEYS.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            KEYS.len(),
            "a repeated row would be unreachable"
        );
        assert_eq!(UNKNOWN_KEY, format!("unknown key; keys are {ALL_KEYS}"));
    }

    #[test]
    fn whitespace_only_input_gives_defaults() {
        for s in [" ", "   ", "\t", "\n", " \t \n "] {
            assert_eq!(parse(s), BootArgs::DEFAULT, "{s:?}");
        }
    }

    #[test]
    fn repeated_leading_and_trailing_whitespace_is_skipped() {
        let args = parse("  \tseconds=3   seed=7\t\tlog=debug \n");
        assert_eq!(args.seconds, 3);
        assert_eq!(args.seed, 7);
        assert_eq!(args.log, LogLevel::Debug);
        assert_eq!(
            args,
            BootArgs {
                seconds: 3,
                seed: 7,
                log: LogLevel::Debug,
                ..BootArgs::DEFAULT
            }
        );
    }

    #[test]
    fn audit_is_on_where_safety_is_proved_unless_told_otherwise() {
        for (args, on) in [
            ("", false),
            ("workload=selftest", true),
            ("workload=stress", true),
            ("workload=unshare-bench", false),
            ("workload=stress audit=off", false),
            ("workload=unshare-bench audit=on", true),
        ] {
            assert_eq!(parse(args).audit_enabled(), on, "{args:?}");
        }
        assert_eq!(
            error_text("audit=yes"),
            "bootargs: audit=yes: one of on, off"
        );
    }

    #[test]
    fn every_key_at_once() {
        let args = parse(
            "workload=stress seconds=60 seed=0xdeadBEEF log=trace timeout=120 hz=250 \
             flush=ipi errata=dvmsync-ipi,repeat-tlbi tablefree=sync-batch unshare=recheck \
             sharing=on audit=off \
             yield_points=on weak=on pct_depth=5 \
             bug=leaf-only-flush,skip-tlbi asid_bits=8 walkers=3 touchers=0 mutators=256 \
             fail_alloc=5 tables=512 children=1 cpus_wait_ms=60000",
        );
        assert_eq!(
            args,
            BootArgs {
                workload: Workload::Stress,
                seconds: 60,
                seed: 0xdead_beef,
                log: LogLevel::Trace,
                timeout: Some(120),
                hz: 250,
                flush: FlushMode::Ipi,
                errata: ErrataArg::Forced(Errata {
                    repeat_tlbi: true,
                    dvmsync_ipi: true,
                }),
                tablefree: TableFreeMode::SyncBatch,
                unshare: UnshareMode::Recheck,
                sharing: true,
                audit: Some(false),
                yield_points: true,
                weak: true,
                pct_depth: 5,
                bugs: Bugs::NONE.with(Bug::SkipTlbi).with(Bug::LeafOnlyFlush),
                asid_bits: Some(8),
                walkers: Some(3),
                touchers: Some(0),
                mutators: Some(256),
                fail_alloc_per_mille: 5,
                tables: 512,
                children: 1,
                cpus_wait_ms: 60000,
            }
        );
    }

    #[test]
    fn every_enum_spelling_round_trips() {
        let workloads = [
            ("demo", Workload::Demo),
            ("selftest", Workload::Selftest),
            ("stress", Workload::Stress),
            ("unshare-bench", Workload::UnshareBench),
            ("scale-bench", Workload::ScaleBench),
            ("flush-bench", Workload::FlushBench),
        ];
        for (s, w) in workloads {
            assert_eq!(parse(&format!("workload={s}")).workload, w);
            assert_eq!(w.name(), s);
        }
        assert_eq!(Workload::ALL.len(), workloads.len());

        let levels = [
            ("error", LogLevel::Error, log::LevelFilter::Error),
            ("warn", LogLevel::Warn, log::LevelFilter::Warn),
            ("info", LogLevel::Info, log::LevelFilter::Info),
            ("debug", LogLevel::Debug, log::LevelFilter::Debug),
            ("trace", LogLevel::Trace, log::LevelFilter::Trace),
        ];
        for (s, l, filter) in levels {
            assert_eq!(parse(&format!("log={s}")).log, l);
            assert_eq!(l.name(), s);
            assert_eq!(l.level_filter(), filter);
        }
        assert_eq!(LogLevel::ALL.len(), levels.len());

        let flushes = [("tlbi", FlushMode::Tlbi), ("ipi", FlushMode::Ipi)];
        for (s, m) in flushes {
            assert_eq!(parse(&format!("flush={s}")).flush, m);
            assert_eq!(m.name(), s);
        }
        assert_eq!(FlushMode::ALL.len(), flushes.len());

        let frees = [
            ("rcu", TableFreeMode::Rcu),
            ("sync-each", TableFreeMode::SyncEach),
            ("sync-batch", TableFreeMode::SyncBatch),
        ];
        for (s, m) in frees {
            assert_eq!(parse(&format!("tablefree={s}")).tablefree, m);
            assert_eq!(m.name(), s);
        }
        assert_eq!(TableFreeMode::ALL.len(), frees.len());

        let unshares = [
            ("sync-each", UnshareMode::SyncEach),
            ("sync-last", UnshareMode::SyncLast),
            ("recheck", UnshareMode::Recheck),
        ];
        for (s, m) in unshares {
            assert_eq!(parse(&format!("unshare={s}")).unshare, m);
            assert_eq!(m.name(), s);
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(UnshareMode::ALL.len(), unshares.len());

        assert!(parse("sharing=on").sharing);
        assert!(!parse("sharing=off").sharing);
        assert!(parse("yield_points=on").yield_points);
        assert!(!parse("yield_points=off").yield_points);
        assert!(!parse("").yield_points, "off unless asked for");
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
            ("rcu-snapshot-early", Bug::RcuSnapshotEarly),
            ("gate-no-fence", Bug::GateNoFence),
            ("walker-pin-dying", Bug::WalkerPinDying),
            ("walker-no-recheck", Bug::WalkerNoRecheck),
            ("walker-no-backout", Bug::WalkerNoBackout),
            ("erratum-no-repeat", Bug::ErratumNoRepeat),
            ("erratum-no-dvmsync", Bug::ErratumNoDvmsync),
            ("panic", Bug::Panic),
            ("fault", Bug::Fault),
            ("fp", Bug::Fp),
            ("hang", Bug::Hang),
            ("hang-boot", Bug::HangBoot),
            ("idle-lost-wakeup", Bug::IdleLostWakeup),
            ("late-cpu", Bug::LateCpu),
        ];
        assert_eq!(Bug::ALL.len(), bugs.len());
        for (s, bug) in bugs {
            let set = parse(&format!("bug={s}")).bugs;
            assert_eq!(bug.name(), s);
            assert!(!set.is_empty());
            assert_eq!(set.iter().collect::<Vec<_>>(), [bug]);
            for other in Bug::ALL {
                assert_eq!(set.has(*other), *other == bug);
            }
            assert_eq!(set.to_string(), s);
        }
    }

    #[test]
    fn bug_list_displays_in_declaration_order() {
        let set = parse("bug=unshare-no-sync,skip-tlbi,walker-irqs-on").bugs;
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Bug::SkipTlbi, Bug::WalkerIrqsOn, Bug::UnshareNoSync]
        );
        assert_eq!(set.to_string(), "skip-tlbi,walker-irqs-on,unshare-no-sync");
        assert_eq!(Bugs::NONE.to_string(), "");
        assert_eq!(Bugs::NONE.iter().count(), 0);
    }

    #[test]
    fn integer_keys_accept_both_bounds_and_reject_just_outside() {
        // (key, min, max, what the error says)
        let cases = [
            ("seconds", 0, 86400),
            ("timeout", 1, 86400),
            ("hz", 10, 10000),
            ("asid_bits", 2, 16),
            ("walkers", 0, 512),
            ("touchers", 0, 512),
            ("mutators", 0, 512),
            ("fail_alloc", 0, 1000),
            ("tables", 1, 512),
            ("children", 1, 256),
            ("cpus_wait_ms", 1, 60000),
        ];
        for (key, min, max) in cases {
            for n in [min, max] {
                let args = parse(&format!("{key}={n}"));
                assert_eq!(int_field(&args, key), Some(n), "{key}={n}");
            }
            let accepted = format!("an integer from {min} to {max}");
            let outside = [Some(max + 1), min.checked_sub(1)];
            for n in outside.into_iter().flatten() {
                assert_eq!(
                    error_text(&format!("{key}={n}")),
                    format!("bootargs: {key}={n}: {accepted}")
                );
            }
        }
    }

    /// The integer a key set, as u64 (`None` if the key is an unset optional).
    fn int_field(args: &BootArgs, key: &str) -> Option<u64> {
        match key {
            "seconds" => Some(args.seconds.into()),
            "seed" => Some(args.seed),
            "timeout" => args.timeout.map(u64::from),
            "hz" => Some(args.hz.into()),
            "asid_bits" => args.asid_bits.map(u64::from),
            "walkers" => args.walkers.map(u64::from),
            "touchers" => args.touchers.map(u64::from),
            "mutators" => args.mutators.map(u64::from),
            "fail_alloc" => Some(args.fail_alloc_per_mille.into()),
            "tables" => Some(args.tables.into()),
            "children" => Some(args.children.into()),
            "cpus_wait_ms" => Some(args.cpus_wait_ms.into()),
            _ => panic!("{key} is not an integer key"),
        }
    }

    #[test]
    fn malformed_integers_are_rejected_with_the_range() {
        for value in [
            "",
            "abc",
            "+5",
            "-5",
            "-0",
            "5x",
            "x5",
            "1_000",
            "1.0",
            "0x10",
            "5\u{0}",
            "٣",
            "99999999999999999999999",
        ] {
            assert_eq!(
                error_text(&format!("seconds={value}")),
                format!("bootargs: seconds={value}: an integer from 0 to 86400")
            );
        }
        assert_eq!(
            error_text("seconds=abc"),
            "bootargs: seconds=abc: an integer from 0 to 86400"
        );
        // Leading zeros are still decimal, not octal.
        assert_eq!(parse("seconds=010").seconds, 10);
        // 2^32 + 5 must not wrap to 5 in the u32 field.
        assert_eq!(
            error_text("walkers=4294967301"),
            "bootargs: walkers=4294967301: an integer from 0 to 512"
        );
    }

    #[test]
    fn seed_accepts_decimal_and_hex_across_u64() {
        assert_eq!(parse("seed=0").seed, 0);
        assert_eq!(parse("seed=18446744073709551615").seed, u64::MAX);
        assert_eq!(parse("seed=0xffffffffffffffff").seed, u64::MAX);
        assert_eq!(parse("seed=0XAbC").seed, 0xabc);
        assert_eq!(parse("seed=0x0").seed, 0);
        assert_eq!(parse("seed=12345").seed, 12345);
        let accepted = "a decimal or 0x-prefixed hexadecimal integer below 2^64";
        for value in [
            "",
            "0x",
            "x10",
            "0x-1",
            "0x+1",
            "+1",
            "-1",
            "0xg",
            "12ab",
            "0b101",
            "18446744073709551616",
            "0x10000000000000000",
        ] {
            assert_eq!(
                error_text(&format!("seed={value}")),
                format!("bootargs: seed={value}: {accepted}")
            );
        }
    }

    #[test]
    fn bad_enum_values_list_the_accepted_spellings() {
        let cases = [
            (
                "workload=Demo",
                "bootargs: workload=Demo: one of demo, selftest, stress, unshare-bench, scale-bench, flush-bench",
            ),
            (
                "log=warning",
                "bootargs: log=warning: one of error, warn, info, debug, trace",
            ),
            ("flush=", "bootargs: flush=: one of tlbi, ipi"),
            (
                "tablefree=sync",
                "bootargs: tablefree=sync: one of rcu, sync-each, sync-batch",
            ),
            (
                "unshare=sync_last",
                "bootargs: unshare=sync_last: one of sync-each, sync-last, recheck",
            ),
            ("sharing=1", "bootargs: sharing=1: one of on, off"),
            ("sharing=ON", "bootargs: sharing=ON: one of on, off"),
            ("yield_points=1", "bootargs: yield_points=1: one of on, off"),
        ];
        for (input, expected) in cases {
            assert_eq!(error_text(input), expected, "{input:?}");
        }
        assert_eq!(
            error_text("unshare=recheck,sync-last"),
            "bootargs: unshare=recheck,sync-last: one of sync-each, sync-last, recheck"
        );
    }

    #[test]
    fn bad_bug_lists_name_every_bug() {
        let accepted = "a comma-separated list of distinct names from skip-tlbi, local-tlbi, \
                        leaf-only-flush, free-tables-now, walker-irqs-on, unshare-no-sync, \
                        map-dying, last-sharer-narrow-flush, protect-wide-stride, \
                        spurious-no-local-tlbi, downgrade-as-upgrade, batch-drain-other-cpu, \
                        batch-pending-ignored, \
                        map-object-no-undo, unshare-flush-late, gather-no-local-batch, \
                        wrong-asid, no-dsb, narrow-range, rollover-skip-flush, \
                        tlbi-before-store-barrier, global-user-leaf, bbm-skip, flush-no-dmb, \
                        activate-no-dsb, rcu-snapshot-early, gate-no-fence, walker-pin-dying, \
                        walker-no-recheck, walker-no-backout, erratum-no-repeat, \
                        erratum-no-dvmsync, panic, fault, fp, hang, hang-boot, \
                        idle-lost-wakeup, late-cpu";
        for value in [
            "",
            "nope",
            "skip-tlbi,nope",
            "skip-tlbi,",
            ",skip-tlbi",
            "skip-tlbi,,local-tlbi",
            "skip-tlbi,skip-tlbi",
            "Skip-TLBI",
        ] {
            assert_eq!(
                error_text(&format!("bug={value}")),
                format!("bootargs: bug={value}: {accepted}")
            );
        }
    }

    #[test]
    fn errata_auto_none_or_a_list() {
        let forced = |repeat_tlbi, dvmsync_ipi| {
            ErrataArg::Forced(Errata {
                repeat_tlbi,
                dvmsync_ipi,
            })
        };
        assert_eq!(parse("").errata, ErrataArg::Auto);
        for (value, want) in [
            ("auto", ErrataArg::Auto),
            ("none", forced(false, false)),
            ("repeat-tlbi", forced(true, false)),
            ("dvmsync-ipi", forced(false, true)),
            ("repeat-tlbi,dvmsync-ipi", forced(true, true)),
            ("dvmsync-ipi,repeat-tlbi", forced(true, true)),
        ] {
            let got = parse(&format!("errata={value}")).errata;
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

    #[test]
    fn unknown_key_lists_every_key() {
        assert_eq!(
            error_text("bogus=1"),
            format!("bootargs: bogus=1: unknown key; keys are {ALL_KEYS}")
        );
        assert_eq!(
            error_text("=5"),
            format!("bootargs: =5: unknown key; keys are {ALL_KEYS}")
        );
        // Keys are case-sensitive and not prefix-matched.
        assert_eq!(
            error_text("Seconds=1"),
            format!("bootargs: Seconds=1: unknown key; keys are {ALL_KEYS}")
        );
        assert_eq!(
            error_text("sec=1"),
            format!("bootargs: sec=1: unknown key; keys are {ALL_KEYS}")
        );
    }

    #[test]
    fn token_without_equals_is_rejected_with_empty_value() {
        assert_eq!(
            error_text("seconds=5 verbose"),
            "bootargs: verbose=: expected key=value"
        );
        assert_eq!(
            error_text("seconds"),
            "bootargs: seconds=: expected key=value"
        );
        let e = BootArgs::parse("  quiet ").unwrap_err();
        assert_eq!(
            e,
            ArgError {
                key: "quiet",
                value: "",
                accepted: "expected key=value"
            }
        );
    }

    #[test]
    fn empty_value_is_rejected_with_what_the_key_accepts() {
        assert_eq!(
            error_text("seconds="),
            "bootargs: seconds=: an integer from 0 to 86400"
        );
        assert_eq!(error_text("sharing="), "bootargs: sharing=: one of on, off");
    }

    #[test]
    fn value_is_everything_after_the_first_equals() {
        let e = BootArgs::parse("seed=1=2").unwrap_err();
        assert_eq!((e.key, e.value), ("seed", "1=2"));
    }

    #[test]
    fn duplicate_key_is_rejected_even_with_the_same_value() {
        assert_eq!(
            error_text("seconds=5 seconds=5"),
            "bootargs: seconds=5: duplicate key; give each key once"
        );
        assert_eq!(
            error_text("log=info hz=100 log=debug"),
            "bootargs: log=debug: duplicate key; give each key once"
        );
        // A duplicate is reported before its value is judged.
        assert_eq!(
            error_text("tables=1 tables=0"),
            "bootargs: tables=0: duplicate key; give each key once"
        );
    }

    #[test]
    fn first_bad_token_is_reported() {
        assert_eq!(
            error_text("hz=5 seconds=abc bogus"),
            "bootargs: hz=5: an integer from 10 to 10000"
        );
    }

    #[test]
    fn error_borrows_key_and_value_from_the_input() {
        let input = String::from("workload=stress children=0");
        let e = BootArgs::parse(&input).unwrap_err();
        let range = input.as_bytes().as_ptr_range();
        assert!(range.contains(&e.key.as_ptr()));
        assert!(range.contains(&e.value.as_ptr()));
        assert_eq!((e.key, e.value), ("children", "0"));
        assert_eq!(e.accepted, "an integer from 1 to 256");
    }

    /// `args` with the field(s) that `key` sets put back to their defaults.
    fn with_default_for(key: &str, args: BootArgs) -> BootArgs {
        let d = BootArgs::DEFAULT;
        match key {
            "workload" => BootArgs {
                workload: d.workload,
                ..args
            },
            "seconds" => BootArgs {
                seconds: d.seconds,
                ..args
            },
            "seed" => BootArgs {
                seed: d.seed,
                ..args
            },
            "log" => BootArgs { log: d.log, ..args },
            "timeout" => BootArgs {
                timeout: d.timeout,
                ..args
            },
            "hz" => BootArgs { hz: d.hz, ..args },
            "flush" => BootArgs {
                flush: d.flush,
                ..args
            },
            "tablefree" => BootArgs {
                tablefree: d.tablefree,
                ..args
            },
            "unshare" => BootArgs {
                unshare: d.unshare,
                ..args
            },
            "sharing" => BootArgs {
                sharing: d.sharing,
                ..args
            },
            "audit" => BootArgs {
                audit: d.audit,
                ..args
            },
            "yield_points" => BootArgs {
                yield_points: d.yield_points,
                ..args
            },
            "weak" => BootArgs {
                weak: d.weak,
                ..args
            },
            "pct_depth" => BootArgs {
                pct_depth: d.pct_depth,
                ..args
            },
            "bug" => BootArgs {
                bugs: d.bugs,
                ..args
            },
            "asid_bits" => BootArgs {
                asid_bits: d.asid_bits,
                ..args
            },
            "walkers" => BootArgs {
                walkers: d.walkers,
                ..args
            },
            "touchers" => BootArgs {
                touchers: d.touchers,
                ..args
            },
            "mutators" => BootArgs {
                mutators: d.mutators,
                ..args
            },
            "fail_alloc" => BootArgs {
                fail_alloc_per_mille: d.fail_alloc_per_mille,
                ..args
            },
            "tables" => BootArgs {
                tables: d.tables,
                ..args
            },
            "children" => BootArgs {
                children: d.children,
                ..args
            },
            "cpus_wait_ms" => BootArgs {
                cpus_wait_ms: d.cpus_wait_ms,
                ..args
            },
            _ => panic!("{key} is not a key"),
        }
    }

    /// A value for `key`: often a valid spelling or a boundary integer, otherwise junk that
    /// may still contain `=` or `,`.
    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                [
                    Workload::NAMES,
                    LogLevel::NAMES,
                    FlushMode::NAMES,
                    TableFreeMode::NAMES,
                    UnshareMode::NAMES,
                    Bug::NAMES,
                    &["on", "off", "0x", "0x1f", "-1", "+1"],
                ]
                .concat()
            )
            .prop_map(String::from),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..100_000).prop_map(|n| n.to_string()),
            "[!-~]{0,12}",
        ]
    }

    proptest! {
        #[test]
        fn any_key_value_parses_or_names_that_key_and_value(
            key in prop_oneof![prop::sample::select(KEYS).prop_map(String::from), "[!-<>-~]{0,10}"],
            value in value_strategy(),
        ) {
            let token = format!("{key}={value}");
            match BootArgs::parse(&token) {
                Ok(args) => {
                    prop_assert!(KEYS.contains(&key.as_str()));
                    // The key's row stores into its own field and no other.
                    prop_assert_eq!(with_default_for(&key, args), BootArgs::DEFAULT);
                }
                Err(e) => {
                    prop_assert_eq!(e.key, key.as_str());
                    prop_assert_eq!(e.value, value.as_str());
                    prop_assert_eq!(
                        e.to_string(),
                        format!("bootargs: {}={}: {}", key, value, e.accepted)
                    );
                }
            }
        }

        #[test]
        fn integer_keys_match_a_range_model(
            index in 0usize..12,
            n in prop_oneof![any::<u64>(), 0u64..70_000],
        ) {
            let (key, min, max) = [
                ("seconds", 0, 86400),
                ("timeout", 1, 86400),
                ("hz", 10, 10000),
                ("asid_bits", 2, 16),
                ("walkers", 0, 512),
                ("touchers", 0, 512),
                ("mutators", 0, 512),
                ("fail_alloc", 0, 1000),
                ("tables", 1, 512),
                ("children", 1, 256),
                ("cpus_wait_ms", 1, 60000),
                ("seed", 0, u64::MAX),
            ][index];
            for text in [n.to_string(), format!("0x{n:x}")] {
                let hex = text.starts_with("0x");
                let token = format!("{key}={text}");
                let result = BootArgs::parse(&token);
                let in_model = (min..=max).contains(&n) && (!hex || key == "seed");
                match result {
                    Ok(args) => {
                        prop_assert!(in_model, "{}={} accepted", key, text);
                        prop_assert_eq!(int_field(&args, key), Some(n));
                    }
                    Err(e) => {
                        prop_assert!(!in_model, "{}={} rejected: {}", key, text, e);
                        prop_assert_eq!((e.key, e.value), (key, text.as_str()));
                    }
                }
            }
        }

        #[test]
        fn arbitrary_input_never_panics_and_errors_borrow_from_it(input in "\\PC{0,40}|[ a-z=_,0-9\t-]{0,60}") {
            if let Err(e) = BootArgs::parse(&input) {
                let range = input.as_bytes().as_ptr_range();
                prop_assert!(e.key.is_empty() || range.contains(&e.key.as_ptr()));
                prop_assert!(!e.accepted.is_empty());
                let shown = format!("{}={}", e.key, e.value);
                prop_assert!(input.contains(&shown) || (e.value.is_empty() && input.contains(e.key)));
            }
        }

        #[test]
        fn bug_lists_match_a_set_model(picks in prop::collection::vec(0usize..6, 1..8)) {
            let list: Vec<&str> = picks.iter().map(|&i| Bug::NAMES[i]).collect();
            let mut distinct = picks.clone();
            distinct.sort_unstable();
            distinct.dedup();
            match Bugs::parse_list(&list.join(",")) {
                Some(bugs) => {
                    prop_assert_eq!(distinct.len(), picks.len());
                    let got: Vec<Bug> = bugs.iter().collect();
                    let want: Vec<Bug> = distinct.iter().map(|&i| Bug::ALL[i]).collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(Bugs::parse_list(&bugs.to_string()), Some(bugs));
                }
                None => prop_assert!(distinct.len() < picks.len()),
            }
        }
    }
}
