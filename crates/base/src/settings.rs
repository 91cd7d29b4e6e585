//! The base layer's kernel arguments: the seed, and what deterministic runs and the weak-memory
//! emulation need (`yield_points=`, `weak=`, `pct_depth=`). A new base setting is a field and a
//! row here; the kernel passes the value to the module that uses it.

use crate::args::{ArgGroup, Key, parse_u64_dec_or_hex};
use crate::{int_key, on_off_key};

/// The base layer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseArgs {
    /// `seed=`: seed of every pseudo-random choice, decimal or 0x-hex [1].
    pub seed: u64,
    /// `yield_points=on|off`: seeded `YIELD`s at the protocols' race windows, which make
    /// `seed=` choose the interleaving under `run.sh --deterministic` (which turns them on) [off].
    pub yield_points: bool,
    /// `weak=on|off`: emulated store buffers, so that a missing barrier shows under QEMU (see
    /// [`crate::weak`]) [off].
    pub weak: bool,
    /// `pct_depth=`: with `yield_points=on`, PCT priorities with `pct_depth - 1` change points at
    /// the yield points (see [`crate::pct`]); 0 for none, 0..=8 [3].
    pub pct_depth: u32,
}

impl ArgGroup for BaseArgs {
    const DEFAULT: BaseArgs = BaseArgs {
        seed: 1,
        yield_points: false,
        weak: false,
        pct_depth: 3,
    };

    const KEYS: &'static [Key<BaseArgs>] = &[
        Key {
            name: "seed",
            accepted: "a decimal or 0x-prefixed hexadecimal integer below 2^64",
            apply: |a, value| {
                a.seed = parse_u64_dec_or_hex(value)?;
                Some(())
            },
        },
        on_off_key!("yield_points", |a, v| a.yield_points = v),
        on_off_key!("weak", |a, v| a.weak = v),
        int_key!("pct_depth", 0..=8, |a, n| a.pct_depth = n),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{One, parse};

    fn parse_ok(s: &str) -> BaseArgs {
        parse::<One<BaseArgs>>(s)
            .unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
            .0
    }

    fn error_text(s: &str) -> String {
        match parse::<One<BaseArgs>>(s) {
            Ok(args) => panic!("{s:?} accepted as {args:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let args = parse_ok("");
        assert_eq!(args, BaseArgs::DEFAULT);
        assert_eq!(args.seed, 1);
        assert!(!args.yield_points, "off unless asked for");
        assert!(!args.weak);
        assert_eq!(args.pct_depth, 3);
    }

    #[test]
    fn every_key_at_once() {
        assert_eq!(
            parse_ok("seed=0xdeadBEEF yield_points=on weak=on pct_depth=5"),
            BaseArgs {
                seed: 0xdead_beef,
                yield_points: true,
                weak: true,
                pct_depth: 5,
            }
        );
        assert!(!parse_ok("yield_points=off").yield_points);
    }

    #[test]
    fn seed_accepts_decimal_and_hex_across_u64() {
        assert_eq!(parse_ok("seed=0").seed, 0);
        assert_eq!(parse_ok("seed=18446744073709551615").seed, u64::MAX);
        assert_eq!(parse_ok("seed=0xffffffffffffffff").seed, u64::MAX);
        assert_eq!(parse_ok("seed=0XAbC").seed, 0xabc);
        assert_eq!(parse_ok("seed=0x0").seed, 0);
        assert_eq!(parse_ok("seed=12345").seed, 12345);
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
        let e = parse::<One<BaseArgs>>("seed=1=2").unwrap_err();
        assert_eq!((e.key, e.value), ("seed", "1=2"));
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        assert_eq!(
            error_text("yield_points=1"),
            "bootargs: yield_points=1: one of on, off"
        );
        assert_eq!(error_text("weak=ON"), "bootargs: weak=ON: one of on, off");
        assert_eq!(
            error_text("pct_depth=9"),
            "bootargs: pct_depth=9: an integer from 0 to 8"
        );
    }
}
