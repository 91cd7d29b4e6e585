//! The architecture layer's kernel arguments: the timer's tick rate (`hz=`, for
//! `aarch64::timer`). A new arch setting is a field and a row here.

use broadside_base::args::{ArgGroup, Key};
use broadside_base::int_key;

/// The architecture layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchArgs {
    /// `hz=`: timer ticks per second, 10..=10000 [1000].
    pub hz: u32,
}

impl ArgGroup for ArchArgs {
    const DEFAULT: ArchArgs = ArchArgs { hz: 1000 };

    const KEYS: &'static [Key<ArchArgs>] = &[int_key!("hz", 10..=10000, |a, n| a.hz = n)];
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadside_base::args::{One, parse};

    #[test]
    fn hz_accepts_its_range() {
        let hz = |s: &str| {
            parse::<One<ArchArgs>>(s)
                .map(|a| a.0.hz)
                .map_err(|e| e.to_string())
        };
        assert_eq!(hz("").unwrap(), 1000);
        assert_eq!(hz("hz=10").unwrap(), 10);
        assert_eq!(hz("hz=10000").unwrap(), 10000);
        for bad in ["hz=9", "hz=10001", "hz=", "hz=1e3"] {
            let value = &bad[3..];
            assert_eq!(
                hz(bad).unwrap_err(),
                format!("bootargs: hz={value}: an integer from 10 to 10000")
            );
        }
    }
}
