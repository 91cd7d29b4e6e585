//! Every kernel argument: each layer's settings group, composed in one [`Settings`] that the
//! boot CPU parses from `/chosen/bootargs` ([`broadside_base::args::parse`]) and the workloads
//! read ([`settings`]).
//!
//! A layer's keys, their defaults and the bugs it plants are in that layer's `settings` module
//! (`docs/architecture.md`, "Kernel arguments"); this file only lists the groups, from the top
//! layer down, which is the order the unknown-key message and `bug=` list their names in.

use crate::workload::settings::{Workload, WorkloadArgs};
use broadside_arch::settings::ArchArgs;
use broadside_base::args::Planted;
use broadside_base::settings::BaseArgs;
use broadside_mm::settings::MmArgs;
use broadside_platform::settings::PlatformArgs;
use broadside_smp::settings::SmpArgs;
use broadside_sync::settings::SyncArgs;
use spin::Once;

broadside_base::arg_set! {
    /// Every layer's settings, with its default where an argument was not given.
    pub struct Settings {
        /// `workload=`, `seconds=`, stress's roles, the unshare bench's size.
        pub workload: WorkloadArgs,
        /// `flush=`, `errata=`, `tablefree=`, `unshare=`, `audit=`, `asid_bits=`, `fail_alloc=`.
        pub mm: MmArgs,
        /// The synchronisation layer's planted bugs.
        pub sync: SyncArgs,
        /// `timeout=`, `cpus_wait_ms=`.
        pub smp: SmpArgs,
        /// `log=`.
        pub platform: PlatformArgs,
        /// `hz=`.
        pub arch: ArchArgs,
        /// `seed=`, `yield_points=`, `weak=`, `pct_depth=`.
        pub base: BaseArgs,
    }
}

impl Settings {
    /// Whether the flush-coverage sanitizer runs: `audit=` if given, else on for the workloads
    /// that prove safety (`selftest`, `stress`) and off for those that measure or show.
    pub fn audit_enabled(&self) -> bool {
        self.mm.audit.unwrap_or(matches!(
            self.workload.workload,
            Workload::Selftest | Workload::Stress
        ))
    }

    /// Every planted bug of every layer (`bug=`), displayed as the comma list that reproduces
    /// them (empty when none is).
    pub fn bugs(&self) -> Planted<'_, Settings> {
        Planted(self)
    }

    /// Whether any layer plants a bug.
    pub fn any_bug(&self) -> bool {
        let mut any = false;
        broadside_base::args::ArgSet::each_planted(self, &mut |_| any = true);
        any
    }
}

static SETTINGS: Once<Settings> = Once::new();

/// Records the parsed settings (once, on the boot CPU, before anything reads them).
pub fn set(settings: Settings) -> &'static Settings {
    SETTINGS.call_once(|| settings)
}

/// The parsed settings. Panics if called before [`set`].
pub fn settings() -> &'static Settings {
    SETTINGS.get().expect("settings not parsed yet")
}

/// The parsed settings, if they have been recorded (exit paths can run before).
pub fn settings_opt() -> Option<&'static Settings> {
    SETTINGS.get()
}
