//! The summary line read back on the host: the typed [`Summary`] the boot tests assert on.

use crate::line::PREFIX;
use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Deserialize;
use serde_json::Value;

/// How a run ended, as the summary's `result` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResult {
    /// `"pass"`: exit code 0.
    Pass,
    /// `"fail"`: any other exit code.
    Fail,
}

/// One run's summary line, parsed. Field names are the JSON's (the design's contract).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Summary {
    /// The workload that ran (`none` when the arguments were rejected).
    pub workload: String,
    /// Pass or fail.
    pub result: RunResult,
    /// The exit code the kernel reported through semihosting.
    pub exit_code: u8,
    /// CPUs online.
    pub cpus: u64,
    /// The exception level the kernel was entered at.
    pub boot_el: u64,
    /// Whether the CPU has FEAT_TLBIRANGE.
    pub tlbi_range: bool,
    /// The `seconds=` argument.
    pub seconds: u64,
    /// The `seed=` argument.
    pub seed: u64,
    /// The `flush=` mode (absent when the arguments were rejected).
    #[serde(default)]
    pub flush: Option<String>,
    /// The `tablefree=` mode (absent when the arguments were rejected).
    #[serde(default)]
    pub tablefree: Option<String>,
    /// The planted bugs, comma-separated (absent when the arguments were rejected).
    #[serde(default)]
    pub bug: Option<String>,
    /// The CPU errata whose workarounds are in force, by name (`repeat-tlbi`, `dvmsync-ipi`;
    /// absent when the run ended before its TLB policy was fixed).
    #[serde(default)]
    pub errata: Option<Vec<String>>,
    /// The counters summed over CPUs, by name. Read them with [`Summary::counter`], which fails
    /// loudly on a name the kernel did not report.
    pub counters: BTreeMap<String, u64>,
    /// `unshare-bench`: each mode's counters and measurements, by mode name.
    #[serde(default)]
    pub modes: Option<BTreeMap<String, BTreeMap<String, u64>>>,
    /// `stress`: how the workload sized itself.
    #[serde(default)]
    pub stress: Option<Stress>,
    /// `unshare-bench`: the scenario.
    #[serde(default)]
    pub bench: Option<Bench>,
    /// Members this type does not name yet, kept as JSON.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The `stress` member: how `workload=stress` sized its regions to the free memory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Stress {
    /// Free memory found at start, in MiB.
    pub free_mib: u64,
    /// Pages in each space's page region.
    pub pages_per_space: u64,
    /// 2 MiB block slots in each space.
    pub block_slots: u64,
    /// GiB of the shared object (0 without `sharing=on`).
    pub object_gib: u64,
    /// Cycles skipped because a map ran out of memory.
    pub map_backoffs: u64,
}

/// The `bench` member: the scenario `workload=unshare-bench` ran.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Bench {
    /// Level-2 tables of the shared object (`tables=`).
    pub tables: u64,
    /// Children forked and exited (`children=`).
    pub children: u64,
    /// Tables the parent adopted after the last child (fewer than `tables` when memory is short).
    pub adopt: u64,
    /// Lockless walks the walker CPUs made.
    pub walks: u64,
    /// The CNTVCT frequency the ticks are counted at.
    pub counter_hz: u64,
}

/// Why a console log did not yield a summary.
#[derive(Debug)]
pub enum ParseError {
    /// The last non-empty line does not start with `summary: ` (it is kept here).
    NotLast(String),
    /// The line's JSON is not a [`Summary`].
    Json(serde_json::Error),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotLast(line) => {
                write!(f, "the last line is not the summary: {line:?}")
            }
            ParseError::Json(e) => write!(f, "the summary is not valid: {e}"),
        }
    }
}

impl core::error::Error for ParseError {}

impl Summary {
    /// Parses a summary's JSON object (without the `summary: ` prefix).
    pub fn from_json(json: &str) -> Result<Summary, ParseError> {
        serde_json::from_str(json).map_err(ParseError::Json)
    }

    /// Parses the summary of a console log, whose last non-empty line must be the summary line
    /// (the contract: nothing is printed after it).
    pub fn from_log(log: &str) -> Result<Summary, ParseError> {
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        match last.strip_prefix(PREFIX) {
            Some(json) => Summary::from_json(json),
            None => Err(ParseError::NotLast(last.to_owned())),
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.result == RunResult::Pass
    }

    /// The counter `name`. Panics, naming it, if the kernel did not report it: a check on a
    /// counter that does not exist must fail, not compare against zero.
    #[track_caller]
    pub fn counter(&self, name: &str) -> u64 {
        match self.counters.get(name) {
            Some(v) => *v,
            None => panic!("the summary has no counter {name:?}"),
        }
    }

    /// The measurements of `unshare-bench` mode `mode`. Panics if the summary has no such mode.
    #[track_caller]
    pub fn mode(&self, mode: &str) -> &BTreeMap<String, u64> {
        match self.modes.as_ref().and_then(|m| m.get(mode)) {
            Some(m) => m,
            None => panic!("the summary has no mode {mode:?}"),
        }
    }

    /// The value `name` of `unshare-bench` mode `mode`. Panics if either is missing.
    #[track_caller]
    pub fn mode_counter(&self, mode: &str, name: &str) -> u64 {
        match self.mode(mode).get(name) {
            Some(v) => *v,
            None => panic!("the summary's mode {mode:?} has no {name:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Header, write_summary};
    use alloc::string::ToString;

    fn header<'a>(bug: &'a dyn fmt::Display) -> Header<'a> {
        Header {
            workload: "unshare-bench",
            passed: false,
            exit_code: 1,
            cpus: 8,
            boot_el: 2,
            tlbi_range: true,
            seconds: 10,
            seed: u64::MAX,
            flush: Some("tlbi"),
            tablefree: Some("sync-batch"),
            bug: Some(bug),
            errata: Some(&["repeat-tlbi", "dvmsync-ipi"]),
        }
    }

    /// The kernel's writer and the host's parser agree, field by field.
    #[test]
    fn the_writers_output_parses_to_the_same_values() {
        let counters = [("tlbi_ops", 123), ("ipis_sent", 0), ("dsb_ish", u64::MAX)];
        let extra = concat!(
            r#""modes":{"sync-each":{"ipis_sent":896,"table_syncs":128},"recheck":{"ipis_sent":0}},"#,
            r#""bench":{"tables":16,"children":8,"adopt":16,"walks":9,"counter_hz":62500000},"#,
            r#""stress":{"free_mib":900,"pages_per_space":2048,"block_slots":4,"object_gib":0,"map_backoffs":3},"#,
            r#""future":[1,2]"#
        );
        let mut log = String::from("boot banner\nsome line\n");
        write_summary(&mut log, &header(&"skip-tlbi,hang"), counters, Some(extra)).unwrap();
        assert!(log.ends_with("}\n"));

        let s = Summary::from_log(&log).unwrap();
        assert_eq!(s.workload, "unshare-bench");
        assert_eq!(s.result, RunResult::Fail);
        assert!(!s.passed());
        assert_eq!(
            (
                s.exit_code,
                s.cpus,
                s.boot_el,
                s.tlbi_range,
                s.seconds,
                s.seed
            ),
            (1, 8, 2, true, 10, u64::MAX)
        );
        assert_eq!(s.flush.as_deref(), Some("tlbi"));
        assert_eq!(s.tablefree.as_deref(), Some("sync-batch"));
        assert_eq!(s.bug.as_deref(), Some("skip-tlbi,hang"));
        assert_eq!(
            s.errata.as_deref(),
            Some(&["repeat-tlbi".to_string(), "dvmsync-ipi".to_string()][..])
        );
        assert!(log.contains(r#""errata":["repeat-tlbi","dvmsync-ipi"],"counters""#));
        assert_eq!(
            s.counters,
            counters.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        );
        assert_eq!(s.counter("dsb_ish"), u64::MAX);
        assert_eq!(s.mode_counter("sync-each", "table_syncs"), 128);
        assert_eq!(s.modes.as_ref().unwrap().len(), 2);
        let bench = s.bench.as_ref().unwrap();
        assert_eq!(
            (bench.tables, bench.adopt, bench.counter_hz),
            (16, 16, 62500000)
        );
        assert_eq!(s.stress.as_ref().unwrap().map_backoffs, 3);
        assert_eq!(s.other["future"], serde_json::json!([1, 2]));
    }

    /// The summary of a run whose arguments were rejected has no arguments to report.
    #[test]
    fn a_minimal_summary_parses() {
        let h = Header {
            workload: "none",
            passed: false,
            exit_code: 2,
            cpus: 1,
            boot_el: 1,
            tlbi_range: false,
            seconds: 0,
            seed: 0,
            flush: None,
            tablefree: None,
            bug: None,
            errata: None,
        };
        let mut log = String::from("error: bootargs: bogus=1: unknown key\n");
        write_summary(&mut log, &h, [], None).unwrap();
        assert_eq!(
            log.lines().last().unwrap(),
            r#"summary: {"workload":"none","result":"fail","exit_code":2,"cpus":1,"boot_el":1,"tlbi_range":false,"seconds":0,"seed":0,"counters":{}}"#
        );
        let s = Summary::from_log(&log).unwrap();
        assert_eq!(
            (s.exit_code, s.flush, s.bug, s.modes, s.errata),
            (2, None, None, None, None)
        );
        assert!(s.counters.is_empty());
    }

    #[test]
    fn the_summary_must_be_the_last_line() {
        let err = Summary::from_log("summary: {}\nQEMU: terminating\n").unwrap_err();
        assert!(matches!(err, ParseError::NotLast(ref l) if l == "QEMU: terminating"));
        assert!(matches!(Summary::from_log(""), Err(ParseError::NotLast(_))));
        assert!(matches!(
            Summary::from_log("summary: {\"workload\":\"x\"}\n"),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    #[should_panic(expected = "no counter \"nope\"")]
    fn a_missing_counter_fails_loudly() {
        let mut log = String::new();
        write_summary(&mut log, &header(&""), [("a", 1)], None).unwrap();
        Summary::from_log(&log).unwrap().counter("nope");
    }
}
