//! The platform layer's kernel arguments: the log level (`log=`). A new platform setting is a
//! field and a row here.
//!
//! The arguments themselves arrive in the DTB's `/chosen/bootargs` ([`crate::dtb`]); parsing
//! them, and the contract of their errors, is [`broadside_base::args`].

use broadside_base::args::{ArgGroup, Key};
use broadside_base::{arg_enum, enum_key};

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

/// The platform layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformArgs {
    /// `log=` [info].
    pub log: LogLevel,
}

impl ArgGroup for PlatformArgs {
    const DEFAULT: PlatformArgs = PlatformArgs {
        log: LogLevel::Info,
    };

    const KEYS: &'static [Key<PlatformArgs>] = &[enum_key!("log", LogLevel, |a, v| a.log = v)];
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadside_base::args::{One, parse};

    #[test]
    fn every_level_round_trips() {
        assert_eq!(
            parse::<One<PlatformArgs>>("").unwrap().0.log,
            LogLevel::Info
        );
        let levels = [
            ("error", LogLevel::Error, log::LevelFilter::Error),
            ("warn", LogLevel::Warn, log::LevelFilter::Warn),
            ("info", LogLevel::Info, log::LevelFilter::Info),
            ("debug", LogLevel::Debug, log::LevelFilter::Debug),
            ("trace", LogLevel::Trace, log::LevelFilter::Trace),
        ];
        for (s, l, filter) in levels {
            assert_eq!(
                parse::<One<PlatformArgs>>(&format!("log={s}"))
                    .unwrap()
                    .0
                    .log,
                l
            );
            assert_eq!(l.name(), s);
            assert_eq!(l.level_filter(), filter);
        }
        assert_eq!(LogLevel::ALL.len(), levels.len());
        assert_eq!(
            parse::<One<PlatformArgs>>("log=warning")
                .unwrap_err()
                .to_string(),
            "bootargs: log=warning: one of error, warn, info, debug, trace"
        );
    }
}
