//! The kernel's composed settings (`kernel/src/settings.rs`), parsed on the host: every layer's
//! keys and bugs reach their group, none is declared twice, and the texts that list them all
//! (the unknown-key message, what `bug=` accepts) are the ones the kernel prints. Boots nothing:
//! the kernel's settings files are compiled into this test.

#[path = "../../kernel/src/workload/settings.rs"]
mod workload_settings;
/// Where `kernel/src/settings.rs` finds the workloads' group (`crate::workload::settings`).
mod workload {
    pub(crate) use super::workload_settings as settings;
}
#[path = "../../kernel/src/settings.rs"]
mod settings;

use broadside_arch::errata::Errata;
use broadside_arch::settings::ArchArgs;
use broadside_base::args::{ArgGroup, ArgSet, parse};
use broadside_base::settings::BaseArgs;
use broadside_mm::settings::{
    Bug as MmBug, Bugs, ErrataArg, FlushMode, MmArgs, TableFreeMode, UnshareMode,
};
use broadside_platform::settings::{LogLevel, PlatformArgs};
use broadside_smp::settings::{Bug as SmpBug, SmpArgs};
use broadside_sync::settings::{Bug as SyncBug, SyncArgs};
use settings::Settings;
use workload::settings::{Bug as KernelBug, Workload, WorkloadArgs};

/// A group's key names. The lists below follow the order `kernel/src/settings.rs` composes the
/// groups in (top layer down), so a new key or bug in a layer's settings file needs no edit here.
fn keys_of<G: ArgGroup>() -> impl Iterator<Item = &'static str> {
    G::KEYS.iter().map(|k| k.name)
}

/// Every key, top layer down, then `bug`.
fn all_keys() -> String {
    let keys: Vec<&str> = keys_of::<WorkloadArgs>()
        .chain(keys_of::<MmArgs>())
        .chain(keys_of::<SyncArgs>())
        .chain(keys_of::<SmpArgs>())
        .chain(keys_of::<PlatformArgs>())
        .chain(keys_of::<ArchArgs>())
        .chain(keys_of::<BaseArgs>())
        .chain(["bug"])
        .collect();
    keys.join(", ")
}

/// Every bug name, top layer down.
fn all_bugs() -> String {
    [
        WorkloadArgs::BUGS,
        MmArgs::BUGS,
        SyncArgs::BUGS,
        SmpArgs::BUGS,
        PlatformArgs::BUGS,
        ArchArgs::BUGS,
        BaseArgs::BUGS,
    ]
    .concat()
    .join(", ")
}

fn parse_ok(s: &str) -> Settings {
    parse::<Settings>(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
}

fn error_text(s: &str) -> String {
    match parse::<Settings>(s) {
        Ok(args) => panic!("{s:?} accepted as {args:?}"),
        Err(e) => e.to_string(),
    }
}

fn names(each: fn(&mut dyn FnMut(&'static str))) -> Vec<&'static str> {
    let mut out = Vec::new();
    each(&mut |name| out.push(name));
    out
}

#[test]
fn no_key_or_bug_is_declared_by_two_layers() {
    for list in [names(Settings::each_key), names(Settings::each_bug)] {
        let mut distinct = list.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            list.len(),
            "a repeated name is unreachable: {list:?}"
        );
    }
    assert!(!names(Settings::each_key).contains(&"bug"));
}

#[test]
fn unknown_key_lists_every_key_of_every_layer() {
    let all_keys = all_keys();
    assert_eq!(names(Settings::each_key).join(", ") + ", bug", all_keys);
    // Today's keys, by layer from the top down.
    assert!(all_keys.starts_with(
        "workload, seconds, sharing, walkers, touchers, mutators, tables, children, flush, \
         errata, tablefree, unshare, audit, asid_bits, fail_alloc,"
    ));
    for token in ["bogus=1", "=5", "Seconds=1", "sec=1"] {
        let (key, value) = token.split_once('=').unwrap();
        assert_eq!(
            error_text(token),
            format!("bootargs: {key}={value}: unknown key; keys are {all_keys}")
        );
    }
}

#[test]
fn bad_bug_lists_name_every_bug_of_every_layer() {
    let all_bugs = all_bugs();
    assert_eq!(names(Settings::each_bug).join(", "), all_bugs);
    assert!(all_bugs.starts_with("panic, fault, fp, hang, hang-boot, late-cpu, skip-tlbi, "));
    for value in [
        "",
        "nope",
        "skip-tlbi,nope",
        "skip-tlbi,skip-tlbi",
        "Skip-TLBI",
    ] {
        assert_eq!(
            error_text(&format!("bug={value}")),
            format!(
                "bootargs: bug={value}: a comma-separated list of distinct names from {all_bugs}"
            )
        );
    }
}

#[test]
fn empty_input_gives_every_default() {
    let args = parse_ok("");
    assert_eq!(args, Settings::DEFAULT);
    assert_eq!(args.workload.workload, Workload::Demo);
    assert_eq!(args.workload.seconds, 10);
    assert_eq!(args.base.seed, 1);
    assert_eq!(args.platform.log, LogLevel::Info);
    assert_eq!(args.smp.timeout, None);
    assert_eq!(args.arch.hz, 1000);
    assert_eq!(args.mm.flush, FlushMode::Tlbi);
    assert!(!args.any_bug());
    assert_eq!(args.bugs().to_string(), "");
}

#[test]
fn every_key_at_once_reaches_its_layer() {
    let args = parse_ok(
        "workload=stress seconds=60 seed=0xdeadBEEF log=trace timeout=120 hz=250 \
         flush=ipi errata=dvmsync-ipi,repeat-tlbi tablefree=sync-batch unshare=recheck \
         sharing=on audit=off yield_points=on weak=on pct_depth=5 \
         bug=leaf-only-flush,skip-tlbi,gate-no-fence,idle-lost-wakeup,late-cpu asid_bits=8 \
         walkers=3 touchers=0 mutators=256 fail_alloc=5 tables=512 children=1 \
         cpus_wait_ms=60000",
    );
    let w = args.workload;
    assert_eq!(w.workload, Workload::Stress);
    assert_eq!((w.seconds, w.sharing), (60, true));
    assert_eq!(
        (w.walkers, w.touchers, w.mutators),
        (Some(3), Some(0), Some(256))
    );
    assert_eq!((w.tables, w.children), (512, 1));
    assert_eq!(w.bugs.iter().collect::<Vec<_>>(), [KernelBug::LateCpu]);
    let m = args.mm;
    assert_eq!(m.flush, FlushMode::Ipi);
    assert_eq!(
        m.errata,
        ErrataArg::Forced(Errata {
            repeat_tlbi: true,
            dvmsync_ipi: true
        })
    );
    assert_eq!(m.tablefree, TableFreeMode::SyncBatch);
    assert_eq!(m.unshare, UnshareMode::Recheck);
    assert_eq!(m.audit, Some(false));
    assert_eq!((m.asid_bits, m.fail_alloc_per_mille), (Some(8), 5));
    assert_eq!(
        m.bugs,
        Bugs::NONE.with(MmBug::SkipTlbi).with(MmBug::LeafOnlyFlush)
    );
    assert!(args.sync.bugs.has(SyncBug::GateNoFence));
    assert!(args.smp.bugs.has(SmpBug::IdleLostWakeup));
    assert_eq!(
        (args.smp.timeout, args.smp.cpus_wait_ms),
        (Some(120), 60000)
    );
    assert_eq!(args.platform.log, LogLevel::Trace);
    assert_eq!(args.arch.hz, 250);
    let b = args.base;
    assert_eq!(
        (b.seed, b.yield_points, b.weak, b.pct_depth),
        (0xdead_beef, true, true, 5)
    );
    // The summary's "bug": by layer, top down, each layer's in its declaration order.
    assert_eq!(
        args.bugs().to_string(),
        "late-cpu,skip-tlbi,leaf-only-flush,gate-no-fence,idle-lost-wakeup"
    );
    assert!(args.any_bug());
}

#[test]
fn a_single_bug_displays_as_given() {
    for name in all_bugs().split(", ") {
        let args = parse_ok(&format!("bug={name}"));
        assert_eq!(args.bugs().to_string(), name);
        assert!(args.any_bug());
    }
}

#[test]
fn duplicates_are_caught_across_layers() {
    assert_eq!(
        error_text("log=info hz=100 log=debug"),
        "bootargs: log=debug: duplicate key; give each key once"
    );
    assert_eq!(
        error_text("bug=panic bug=skip-tlbi"),
        "bootargs: bug=skip-tlbi: duplicate key; give each key once"
    );
    assert_eq!(
        error_text("hz=5 seconds=abc bogus"),
        "bootargs: hz=5: an integer from 10 to 10000"
    );
}

#[test]
fn error_texts_the_boot_tests_expect() {
    assert_eq!(
        error_text("seconds=abc"),
        "bootargs: seconds=abc: an integer from 0 to 86400"
    );
    assert_eq!(
        error_text("flush=bogus"),
        "bootargs: flush=bogus: one of tlbi, ipi"
    );
    assert_eq!(
        error_text("workload=Demo"),
        "bootargs: workload=Demo: one of demo, selftest, stress, unshare-bench, scale-bench, \
         flush-bench"
    );
    assert_eq!(
        error_text("workload=stress children=0"),
        "bootargs: children=0: an integer from 1 to 256"
    );
    assert_eq!(error_text("sharing="), "bootargs: sharing=: one of on, off");
    assert_eq!(
        error_text("seconds=5 verbose"),
        "bootargs: verbose=: expected key=value"
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
        assert_eq!(parse_ok(args).audit_enabled(), on, "{args:?}");
    }
}

#[test]
fn the_parsed_settings_are_kept_once() {
    assert!(settings::settings_opt().is_none());
    let first = settings::set(parse_ok("seed=7"));
    assert_eq!(first.base.seed, 7);
    settings::set(parse_ok("seed=8"));
    assert_eq!(settings::settings().base.seed, 7);
}

#[test]
fn workload_integer_keys_accept_both_bounds_and_reject_just_outside() {
    for (key, min, max) in [
        ("seconds", 0u64, 86400u64),
        ("walkers", 0, 512),
        ("touchers", 0, 512),
        ("mutators", 0, 512),
        ("tables", 1, 512),
        ("children", 1, 256),
    ] {
        for n in [min, max] {
            let w = parse_ok(&format!("{key}={n}")).workload;
            let got = match key {
                "seconds" => Some(w.seconds),
                "walkers" => w.walkers,
                "touchers" => w.touchers,
                "mutators" => w.mutators,
                "tables" => Some(w.tables),
                _ => Some(w.children),
            };
            assert_eq!(got.map(u64::from), Some(n), "{key}={n}");
        }
        for n in [Some(max + 1), min.checked_sub(1)].into_iter().flatten() {
            assert_eq!(
                error_text(&format!("{key}={n}")),
                format!("bootargs: {key}={n}: an integer from {min} to {max}")
            );
        }
    }
    // 2^32 + 5 must not wrap to 5 in the u32 field.
    assert_eq!(
        error_text("walkers=4294967301"),
        "bootargs: walkers=4294967301: an integer from 0 to 512"
    );
}

#[test]
fn every_workload_spelling_round_trips() {
    let workloads = [
        ("demo", Workload::Demo),
        ("selftest", Workload::Selftest),
        ("stress", Workload::Stress),
        ("unshare-bench", Workload::UnshareBench),
        ("scale-bench", Workload::ScaleBench),
        ("flush-bench", Workload::FlushBench),
    ];
    for (s, w) in workloads {
        assert_eq!(parse_ok(&format!("workload={s}")).workload.workload, w);
        assert_eq!(w.name(), s);
    }
    assert_eq!(Workload::ALL.len(), workloads.len());
    assert!(parse_ok("sharing=on").workload.sharing);
    assert!(!parse_ok("sharing=off").workload.sharing);
}
