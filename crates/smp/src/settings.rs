//! The multiprocessing layer's kernel arguments: the watchdog's limit (`timeout=`), how long the
//! boot CPU waits for secondaries (`cpus_wait_ms=`), and the bug it plants (`bug=`). A new smp
//! setting is a field and a row here.

use broadside_base::args::{ArgGroup, Flags, Key};
use broadside_base::{arg_enum, int_key};

arg_enum! {
    /// A mistake the multiprocessing layer plants (`bug=`), for negative controls.
    pub enum Bug {
        /// The idle loop looks for posted work before masking IRQs, so a kick taken between the
        /// look and the `WFI` is lost (the watchdog's lost-wakeup check: exit 4).
        IdleLostWakeup = "idle-lost-wakeup",
    }
}

/// The multiprocessing layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmpArgs {
    /// `timeout=`: watchdog limit in seconds, 1..=86400 [None: the kernel derives one from the
    /// workload].
    pub timeout: Option<u32>,
    /// `cpus_wait_ms=`: how long the boot CPU waits for secondaries, 1..=60000 [5000].
    pub cpus_wait_ms: u32,
    /// The smp bugs of `bug=` [none].
    pub bugs: Flags<Bug>,
}

impl ArgGroup for SmpArgs {
    const DEFAULT: SmpArgs = SmpArgs {
        timeout: None,
        cpus_wait_ms: 5000,
        bugs: Flags::NONE,
    };

    const KEYS: &'static [Key<SmpArgs>] = &[
        int_key!("timeout", 1..=86400, |a, n| a.timeout = Some(n)),
        int_key!("cpus_wait_ms", 1..=60000, |a, n| a.cpus_wait_ms = n),
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

    fn parse_ok(s: &str) -> SmpArgs {
        parse::<One<SmpArgs>>(s)
            .unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
            .0
    }

    fn error_text(s: &str) -> String {
        parse::<One<SmpArgs>>(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(parse_ok(""), SmpArgs::DEFAULT);
        assert_eq!(SmpArgs::DEFAULT.timeout, None);
        assert_eq!(SmpArgs::DEFAULT.cpus_wait_ms, 5000);
        assert_eq!(
            parse_ok("timeout=120 cpus_wait_ms=60000 bug=idle-lost-wakeup"),
            SmpArgs {
                timeout: Some(120),
                cpus_wait_ms: 60000,
                bugs: Flags::NONE.with(Bug::IdleLostWakeup),
            }
        );
    }

    #[test]
    fn integer_keys_accept_both_bounds_and_reject_just_outside() {
        for (key, min, max) in [("timeout", 1u64, 86400u64), ("cpus_wait_ms", 1, 60000)] {
            for n in [min, max] {
                let args = parse_ok(&format!("{key}={n}"));
                let got = match key {
                    "timeout" => args.timeout.map(u64::from),
                    _ => Some(args.cpus_wait_ms.into()),
                };
                assert_eq!(got, Some(n), "{key}={n}");
            }
            for n in [min - 1, max + 1] {
                assert_eq!(
                    error_text(&format!("{key}={n}")),
                    format!("bootargs: {key}={n}: an integer from {min} to {max}")
                );
            }
        }
    }
}
