//! Kernel arguments: the framework each layer declares its own settings with.
//!
//! QEMU's `-append` lands in the DTB's `/chosen/bootargs`; the boot CPU hands that string (with
//! its NUL already stripped) to [`parse`]. The grammar is space-separated `key=value` tokens, the
//! same shape Linux splits with `next_arg()` (lib/cmdline.c) and dispatches with `parse_args()`
//! (kernel/params.c). Unlike Linux, which passes unknown words on to init, broadside treats every
//! argument as a request it must honour: an unknown key, a token without `=`, an empty or
//! malformed value, a value out of range and a key given twice are all errors. A stress run whose
//! `flush=ipi` was silently dropped would measure the wrong thing and say nothing, so the design
//! contract makes the kernel print `error: bootargs: <key>=<value>: <what is accepted>` and exit
//! with code 2 instead.
//!
//! Each layer owns its settings: one struct implementing [`ArgGroup`], whose [`Key`] rows name
//! its keys, say what each accepts and store a value (built with [`int_key!`](crate::int_key),
//! [`enum_key!`](crate::enum_key) and [`on_off_key!`](crate::on_off_key); enums with
//! [`arg_enum!`](crate::arg_enum)), plus the names of the bugs it plants (`bug=`). The kernel
//! composes the groups with [`arg_set!`](crate::arg_set) into one [`ArgSet`], and one [`parse`]
//! offers each `key=value` to every group. `bug=a,b` is the one key whose value spans layers:
//! each name goes to the group that plants it.
//!
//! Parsing runs before the heap exists, so it never allocates: errors borrow the key and value
//! from the input and say what the key accepts with a `&'static str`, or, for an unknown key or a
//! bad `bug=` list, with the names of every group, listed when the error is displayed.

use core::fmt;
use core::marker::PhantomData;
use core::ops::RangeInclusive;

/// Joins `names` with `", "` after `prefix` at compile time, yielding a `&'static str`.
///
/// The accepted-value texts must be `&'static str` (no allocation while parsing) and must list
/// exactly the names the parser accepts; building them from the same name tables keeps the two
/// from drifting apart.
#[macro_export]
macro_rules! const_join {
    ($prefix:expr, $names:expr) => {{
        const PREFIX: &str = $prefix;
        const NAMES: &[&str] = $names;
        const BYTES: [u8; $crate::args::joined_len(PREFIX, NAMES)] =
            $crate::args::join_bytes(PREFIX, NAMES);
        match core::str::from_utf8(&BYTES) {
            Ok(joined) => joined,
            Err(_) => panic!("joining UTF-8 strings yields UTF-8"),
        }
    }};
}

/// Length of `prefix` followed by `names` separated by `", "` (for [`const_join!`]).
#[doc(hidden)]
pub const fn joined_len(prefix: &str, names: &[&str]) -> usize {
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
/// `joined_len(prefix, names)` (for [`const_join!`]).
#[doc(hidden)]
pub const fn join_bytes<const N: usize>(prefix: &str, names: &[&str]) -> [u8; N] {
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

/// A fieldless enum spelled on the command line by name (defined with [`arg_enum!`]).
pub trait ArgEnum: Copy + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// The spelling of every value, in declaration order.
    const NAMES: &'static [&'static str];
    /// This value's position in [`ArgEnum::ALL`].
    fn index(self) -> usize;
}

/// Defines a fieldless enum whose variants are spelled on the command line as the given
/// strings, with `name`, `from_name`, `ALL`, `NAMES` and `ACCEPTED` ("one of a, b, c"), and
/// [`ArgEnum`].
#[macro_export]
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
            pub const ACCEPTED: &'static str = $crate::const_join!("one of ", $Enum::NAMES);

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

        impl $crate::args::ArgEnum for $Enum {
            const ALL: &'static [Self] = $Enum::ALL;
            const NAMES: &'static [&'static str] = $Enum::NAMES;
            #[inline(always)]
            fn index(self) -> usize {
                self as usize
            }
        }

        impl core::fmt::Display for $Enum {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// A set of values of an [`ArgEnum`] (at most 64 of them), such as the bugs a layer plants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags<E>(u64, PhantomData<E>);

impl<E: ArgEnum> Flags<E> {
    /// Checked where a set of `E` is first named (through [`Flags::NONE`]), at compile time.
    const FITS: () = assert!(E::ALL.len() <= u64::BITS as usize, "Flags is a u64 bitset");

    /// The empty set.
    pub const NONE: Flags<E> = {
        let () = Self::FITS;
        Flags(0, PhantomData)
    };

    #[inline(always)]
    const fn bit(index: usize) -> u64 {
        1 << index
    }

    /// This set plus `e`.
    pub fn with(self, e: E) -> Flags<E> {
        Flags(self.0 | Self::bit(e.index()), PhantomData)
    }

    /// The raw bitset (for keeping the set in an atomic).
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set whose raw bitset is `bits` (from [`Flags::bits`]).
    pub const fn from_bits(bits: u64) -> Flags<E> {
        Flags(bits, PhantomData)
    }

    /// Whether `e` is in the set.
    #[inline(always)]
    pub fn has(&self, e: E) -> bool {
        self.0 & Self::bit(e.index()) != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The members in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = E> + '_ {
        E::ALL.iter().copied().filter(|&e| self.has(e))
    }

    /// Adds `E::ALL[index]`; false if it was already in (for [`ArgGroup::plant`]).
    pub fn insert_index(&mut self, index: usize) -> bool {
        let bit = Self::bit(index);
        let new = self.0 & bit == 0;
        self.0 |= bit;
        new
    }

    /// Whether `E::ALL[index]` is in the set (for [`ArgGroup::planted`]).
    pub fn has_index(&self, index: usize) -> bool {
        self.0 & Self::bit(index) != 0
    }

    /// Parses a comma-separated list of distinct names; `None` if any name is unknown, empty
    /// or repeated.
    pub fn parse_list(list: &str) -> Option<Flags<E>> {
        let mut set = Flags::NONE;
        for name in list.split(',') {
            let index = E::NAMES.iter().position(|n| *n == name)?;
            if !set.insert_index(index) {
                return None;
            }
        }
        Some(set)
    }
}

/// The names joined by commas, in declaration order (empty for the empty set): the spelling
/// that reproduces the set.
impl<E: ArgEnum> fmt::Display for Flags<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, index) in (0..E::ALL.len()).filter(|&i| self.has_index(i)).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(E::NAMES[index])?;
        }
        Ok(())
    }
}

/// One key of a settings group `S`: its spelling, what it accepts, and how a value is stored.
/// `apply` returns `None` when the value is not accepted; it runs at most once per key.
pub struct Key<S> {
    /// The key as written before `=`.
    pub name: &'static str,
    /// What the key accepts, for the error message.
    pub accepted: &'static str,
    /// Stores a value into the settings; `None` if the value is not accepted.
    pub apply: fn(&mut S, &str) -> Option<()>,
}

/// A row for an unsigned decimal key whose value must lie in `min..=max`; the accepted text is
/// built from the same two literals as the range check.
#[macro_export]
macro_rules! int_key {
    ($name:literal, $min:literal ..= $max:literal, |$args:ident, $n:ident| $store:expr) => {
        $crate::args::Key {
            name: $name,
            accepted: concat!("an integer from ", $min, " to ", $max),
            apply: |$args, value| {
                let $n = $crate::args::parse_decimal_in(value, $min..=$max)?;
                $store;
                Some(())
            },
        }
    };
}

/// A row for a key whose values are the spellings of an [`arg_enum!`] type.
#[macro_export]
macro_rules! enum_key {
    ($name:literal, $Enum:ident, |$args:ident, $v:ident| $store:expr) => {
        $crate::args::Key {
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

/// A row for a key that is `on` or `off`.
#[macro_export]
macro_rules! on_off_key {
    ($name:literal, |$args:ident, $v:ident| $store:expr) => {
        $crate::args::Key {
            name: $name,
            accepted: $crate::args::ON_OFF,
            apply: |$args, value| {
                let $v = $crate::args::parse_on_off(value)?;
                $store;
                Some(())
            },
        }
    };
}

/// What an `on`/`off` key accepts.
pub const ON_OFF: &str = "one of on, off";

/// `on` or `off`.
pub fn parse_on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Parses an unsigned decimal integer (digits only: no sign, no separators, no whitespace)
/// and checks it against `range`; overflow of `T` is out of range.
pub fn parse_decimal_in<T>(text: &str, range: RangeInclusive<T>) -> Option<T>
where
    T: TryFrom<u64> + PartialOrd,
{
    let n = parse_u64_radix(text, 10)?;
    let n = T::try_from(n).ok()?;
    range.contains(&n).then_some(n)
}

/// Parses a `u64` in decimal, or in hexadecimal after `0x`/`0X`.
pub fn parse_u64_dec_or_hex(text: &str) -> Option<u64> {
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

/// One layer's settings: its keys, their defaults, and the bugs it plants (`bug=`).
pub trait ArgGroup: Sized + 'static {
    /// The settings when no argument is given.
    const DEFAULT: Self;
    /// This group's keys, in the order the unknown-key message lists them.
    const KEYS: &'static [Key<Self>];
    /// The names of the bugs this group plants, in the order `bug=` lists them.
    const BUGS: &'static [&'static str] = &[];

    /// Plants `BUGS[index]`; false if it already was.
    fn plant(&mut self, index: usize) -> bool {
        let _ = index;
        false
    }

    /// Whether `BUGS[index]` is planted.
    fn planted(&self, index: usize) -> bool {
        let _ = index;
        false
    }
}

/// The key whose value is a list of bug names, each planted by the group that owns it.
pub const BUG_KEY: &str = "bug";

/// Every group's settings together (defined with [`arg_set!`]), in a fixed group order: the
/// order keys and bugs are listed in.
pub trait ArgSet: Sized {
    /// Every group's defaults.
    const DEFAULT: Self;
    /// Whether some group has `key`, or `key` is [`BUG_KEY`] and some group plants bugs.
    fn has_key(key: &str) -> bool {
        let mut found = false;
        if key == BUG_KEY {
            Self::each_bug(&mut |_| found = true);
        } else {
            Self::each_key(&mut |name| found |= name == key);
        }
        found
    }
    /// Calls `f` with every group's key names, in order ([`BUG_KEY`] not among them).
    fn each_key(f: &mut dyn FnMut(&'static str));
    /// Calls `f` with every group's bug names, in order.
    fn each_bug(f: &mut dyn FnMut(&'static str));
    /// Offers `key=value` to the groups: `None` if none has `key`, else whether the value was
    /// accepted (`Err` with what is).
    fn apply(&mut self, key: &str, value: &str) -> Option<Result<(), &'static str>>;
    /// Plants the bug `name`: `None` if no group has it, `Some(false)` if it already was.
    fn plant(&mut self, name: &str) -> Option<bool>;
    /// Calls `f` with the name of every planted bug, in order.
    fn each_planted(&self, f: &mut dyn FnMut(&'static str));
}

/// Offers `key=value` to one group (for [`arg_set!`]).
#[doc(hidden)]
pub fn apply_to<G: ArgGroup>(
    group: &mut G,
    key: &str,
    value: &str,
) -> Option<Result<(), &'static str>> {
    let spec = G::KEYS.iter().find(|spec| spec.name == key)?;
    Some((spec.apply)(group, value).ok_or(spec.accepted))
}

/// Plants the bug `name` in one group, if it is the group's (for [`arg_set!`]).
#[doc(hidden)]
pub fn plant_in<G: ArgGroup>(group: &mut G, name: &str) -> Option<bool> {
    let index = G::BUGS.iter().position(|b| *b == name)?;
    Some(group.plant(index))
}

/// Calls `f` with the names of the bugs planted in one group (for [`arg_set!`]).
#[doc(hidden)]
pub fn each_planted_in<G: ArgGroup>(group: &G, f: &mut dyn FnMut(&'static str)) {
    for (index, name) in G::BUGS.iter().enumerate() {
        if group.planted(index) {
            f(name);
        }
    }
}

/// Defines a struct holding one field per [`ArgGroup`], and its [`ArgSet`]: keys and bugs are
/// listed in field order.
#[macro_export]
macro_rules! arg_set {
    (
        $(#[$meta:meta])*
        $vis:vis struct $Set:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident: $Group:ty,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis struct $Set {
            $($(#[$fmeta])* $fvis $field: $Group,)+
        }

        impl $crate::args::ArgSet for $Set {
            const DEFAULT: Self = $Set {
                $($field: <$Group as $crate::args::ArgGroup>::DEFAULT,)+
            };

            fn each_key(f: &mut dyn FnMut(&'static str)) {
                $(for key in <$Group as $crate::args::ArgGroup>::KEYS {
                    f(key.name);
                })+
            }

            fn each_bug(f: &mut dyn FnMut(&'static str)) {
                $(for name in <$Group as $crate::args::ArgGroup>::BUGS {
                    f(name);
                })+
            }

            fn apply(&mut self, key: &str, value: &str) -> Option<Result<(), &'static str>> {
                $(if let Some(r) = $crate::args::apply_to(&mut self.$field, key, value) {
                    return Some(r);
                })+
                None
            }

            fn plant(&mut self, name: &str) -> Option<bool> {
                $(if let Some(r) = $crate::args::plant_in(&mut self.$field, name) {
                    return Some(r);
                })+
                None
            }

            fn each_planted(&self, f: &mut dyn FnMut(&'static str)) {
                $($crate::args::each_planted_in(&self.$field, f);)+
            }
        }
    };
}

/// One group on its own as an [`ArgSet`] (a layer's host tests parse its own keys with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct One<G>(pub G);

impl<G: ArgGroup> ArgSet for One<G> {
    const DEFAULT: Self = One(G::DEFAULT);
    fn each_key(f: &mut dyn FnMut(&'static str)) {
        for key in G::KEYS {
            f(key.name);
        }
    }
    fn each_bug(f: &mut dyn FnMut(&'static str)) {
        for name in G::BUGS {
            f(name);
        }
    }
    fn apply(&mut self, key: &str, value: &str) -> Option<Result<(), &'static str>> {
        apply_to(&mut self.0, key, value)
    }
    fn plant(&mut self, name: &str) -> Option<bool> {
        plant_in(&mut self.0, name)
    }
    fn each_planted(&self, f: &mut dyn FnMut(&'static str)) {
        each_planted_in(&self.0, f);
    }
}

/// What a rejected token's key would have accepted.
#[derive(Clone, Copy)]
pub enum Accepted {
    /// A fixed text.
    Text(&'static str),
    /// Any key: the text lists every key of every group (the first function), then `bug` if
    /// any group plants bugs (the second lists them).
    Keys(
        fn(&mut dyn FnMut(&'static str)),
        fn(&mut dyn FnMut(&'static str)),
    ),
    /// A list of bug names: the text lists every bug of every group.
    Bugs(fn(&mut dyn FnMut(&'static str))),
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", format_args!("{self}"))
    }
}

/// Writes `names` after `prefix`, separated by `", "`.
fn write_list(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    each: fn(&mut dyn FnMut(&'static str)),
    last: Option<&str>,
) -> fmt::Result {
    f.write_str(prefix)?;
    let mut first = true;
    let mut result = Ok(());
    let mut write = |name: &str| {
        if result.is_ok() {
            result = if first {
                f.write_str(name)
            } else {
                f.write_str(", ").and_then(|()| f.write_str(name))
            };
        }
        first = false;
    };
    each(&mut write);
    if let Some(name) = last {
        write(name);
    }
    result
}

/// What an unknown key's error says before the list of keys.
pub const UNKNOWN_KEY: &str = "unknown key; keys are ";
/// What a bad `bug=` list's error says before the list of bug names.
pub const BUG_LIST: &str = "a comma-separated list of distinct names from ";
/// What a token without `=` is told.
pub const EXPECTED_KEY_VALUE: &str = "expected key=value";
/// What a key given twice is told.
pub const DUPLICATE_KEY: &str = "duplicate key; give each key once";

impl fmt::Display for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Accepted::Text(text) => f.write_str(text),
            Accepted::Keys(keys, bugs) => {
                let mut any_bug = false;
                bugs(&mut |_| any_bug = true);
                write_list(f, UNKNOWN_KEY, keys, any_bug.then_some(BUG_KEY))
            }
            Accepted::Bugs(each) => write_list(f, BUG_LIST, each, None),
        }
    }
}

/// Why the bootargs were rejected. `Display` gives the contract's text,
/// `bootargs: <key>=<value>: <what is accepted>`; the kernel prefixes `error: ` and exits 2.
#[derive(Clone, Copy, Debug)]
pub struct ArgError<'a> {
    /// The key as written (for a token without `=`, the whole token).
    pub key: &'a str,
    /// The value as written (empty for a token without `=`).
    pub value: &'a str,
    /// What would have been accepted.
    pub accepted: Accepted,
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

/// Parses a bootargs string: tokens separated by ASCII whitespace, each `key=value` (split at the
/// first `=`). Keys not given keep their [`ArgSet::DEFAULT`] values.
///
/// Tokens are checked left to right and the first bad one is reported; for each token the checks
/// run in this order: has `=`, known key, not seen before, value accepted.
pub fn parse<S: ArgSet>(bootargs: &str) -> Result<S, ArgError<'_>> {
    let mut set = S::DEFAULT;
    for (seen, token) in bootargs.split_ascii_whitespace().enumerate() {
        let Some((key, value)) = token.split_once('=') else {
            return Err(ArgError {
                key: token,
                value: "",
                accepted: Accepted::Text(EXPECTED_KEY_VALUE),
            });
        };
        let error = |accepted| ArgError {
            key,
            value,
            accepted,
        };
        if !S::has_key(key) {
            return Err(error(Accepted::Keys(S::each_key, S::each_bug)));
        }
        // Every earlier token was a known key with an accepted value: one with the same key
        // makes this one a duplicate (reported before the value is judged).
        let duplicate = bootargs
            .split_ascii_whitespace()
            .take(seen)
            .any(|t| t.split_once('=').is_some_and(|(k, _)| k == key));
        if duplicate {
            return Err(error(Accepted::Text(DUPLICATE_KEY)));
        }
        if key == BUG_KEY {
            for name in value.split(',') {
                if set.plant(name) != Some(true) {
                    return Err(error(Accepted::Bugs(S::each_bug)));
                }
            }
        } else if let Some(Err(accepted)) = set.apply(key, value) {
            return Err(error(Accepted::Text(accepted)));
        }
    }
    Ok(set)
}

/// The planted bugs of `set`, displayed as their names joined by commas in group order (empty
/// when none is planted): the `bug=` spelling that reproduces them.
pub struct Planted<'a, S>(pub &'a S);

impl<S: ArgSet> fmt::Display for Planted<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut result = Ok(());
        self.0.each_planted(&mut |name| {
            if result.is_ok() {
                result = if first {
                    f.write_str(name)
                } else {
                    f.write_str(",").and_then(|()| f.write_str(name))
                };
            }
            first = false;
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    crate::arg_enum! {
        /// A test mode.
        pub enum Mode {
            /// First.
            Fast = "fast",
            /// Second.
            SlowAndSure = "slow-and-sure",
        }
    }

    crate::arg_enum! {
        /// Test bugs of the lower group.
        pub enum LowBug {
            /// One.
            Alpha = "alpha",
            /// Two.
            Beta = "beta",
        }
    }

    crate::arg_enum! {
        /// Test bugs of the upper group.
        pub enum HighBug {
            /// One.
            Gamma = "gamma",
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct High {
        mode: Mode,
        count: u32,
        bugs: Flags<HighBug>,
    }

    impl ArgGroup for High {
        const DEFAULT: High = High {
            mode: Mode::Fast,
            count: 10,
            bugs: Flags::NONE,
        };
        const KEYS: &'static [Key<High>] = &[
            crate::enum_key!("mode", Mode, |a, v| a.mode = v),
            crate::int_key!("count", 0..=86400, |a, n| a.count = n),
        ];
        const BUGS: &'static [&'static str] = HighBug::NAMES;
        fn plant(&mut self, index: usize) -> bool {
            self.bugs.insert_index(index)
        }
        fn planted(&self, index: usize) -> bool {
            self.bugs.has_index(index)
        }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Low {
        on: bool,
        limit: Option<u8>,
        bugs: Flags<LowBug>,
    }

    impl ArgGroup for Low {
        const DEFAULT: Low = Low {
            on: false,
            limit: None,
            bugs: Flags::NONE,
        };
        const KEYS: &'static [Key<Low>] = &[
            crate::on_off_key!("on", |a, v| a.on = v),
            crate::int_key!("limit", 2..=16, |a, n| a.limit = Some(n)),
        ];
        const BUGS: &'static [&'static str] = LowBug::NAMES;
        fn plant(&mut self, index: usize) -> bool {
            self.bugs.insert_index(index)
        }
        fn planted(&self, index: usize) -> bool {
            self.bugs.has_index(index)
        }
    }

    crate::arg_set! {
        /// Two test groups, the higher first.
        struct Both {
            high: High,
            low: Low,
        }
    }

    fn parse_ok(s: &str) -> Both {
        parse::<Both>(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }

    fn error_text(s: &str) -> String {
        match parse::<Both>(s) {
            Ok(args) => panic!("{s:?} accepted as {args:?}"),
            Err(e) => e.to_string(),
        }
    }

    const ALL_KEYS: &str = "mode, count, on, limit, bug";
    const ALL_BUGS: &str = "gamma, alpha, beta";

    #[test]
    fn const_join_and_arg_enum_texts() {
        assert_eq!(Mode::ACCEPTED, "one of fast, slow-and-sure");
        assert_eq!(const_join!("x: ", &["a", "b", "c"]), "x: a, b, c");
        assert_eq!(const_join!("none", &[]), "none");
        assert_eq!(Mode::SlowAndSure.name(), "slow-and-sure");
        assert_eq!(Mode::SlowAndSure.to_string(), "slow-and-sure");
        assert_eq!(Mode::from_name("fast"), Some(Mode::Fast));
        assert_eq!(Mode::from_name("Fast"), None);
        assert_eq!(<Mode as ArgEnum>::ALL, Mode::ALL);
        assert_eq!(Mode::SlowAndSure.index(), 1);
        assert_eq!(LowBug::ACCEPTED, "one of alpha, beta");
        assert_eq!(LowBug::from_name("beta"), Some(LowBug::Beta));
        assert_eq!(HighBug::ACCEPTED, "one of gamma");
        assert_eq!(HighBug::from_name("gamma"), Some(HighBug::Gamma));
    }

    #[test]
    fn empty_and_whitespace_only_input_give_defaults() {
        for s in ["", " ", "   ", "\t", "\n", " \t \n "] {
            assert_eq!(parse_ok(s), Both::DEFAULT, "{s:?}");
        }
    }

    #[test]
    fn every_group_gets_its_keys() {
        assert_eq!(
            parse_ok("  \tmode=slow-and-sure   limit=16\t\ton=on count=0 bug=beta,gamma \n"),
            Both {
                high: High {
                    mode: Mode::SlowAndSure,
                    count: 0,
                    bugs: Flags::NONE.with(HighBug::Gamma),
                },
                low: Low {
                    on: true,
                    limit: Some(16),
                    bugs: Flags::NONE.with(LowBug::Beta),
                },
            }
        );
    }

    #[test]
    fn unknown_key_lists_every_key_of_every_group_then_bug() {
        for token in ["bogus=1", "=5", "Mode=fast", "mod=fast"] {
            let key = token.split_once('=').unwrap().0;
            let value = token.split_once('=').unwrap().1;
            assert_eq!(
                error_text(token),
                format!("bootargs: {key}={value}: unknown key; keys are {ALL_KEYS}")
            );
        }
        // A set whose groups plant no bugs has no `bug` key.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        struct Plain;
        impl ArgGroup for Plain {
            const DEFAULT: Plain = Plain;
            const KEYS: &'static [Key<Plain>] = &[Key {
                name: "only",
                accepted: "anything",
                apply: |_, _| Some(()),
            }];
        }
        let e = parse::<One<Plain>>("bug=x").unwrap_err();
        assert_eq!(e.to_string(), "bootargs: bug=x: unknown key; keys are only");
    }

    #[test]
    fn token_without_equals_is_rejected_with_empty_value() {
        assert_eq!(
            error_text("count=5 verbose"),
            "bootargs: verbose=: expected key=value"
        );
        let e = parse::<Both>("  quiet ").unwrap_err();
        assert_eq!((e.key, e.value), ("quiet", ""));
        assert_eq!(e.accepted.to_string(), "expected key=value");
    }

    #[test]
    fn duplicate_key_is_rejected_even_with_the_same_value() {
        assert_eq!(
            error_text("count=5 count=5"),
            "bootargs: count=5: duplicate key; give each key once"
        );
        assert_eq!(
            error_text("on=on limit=3 on=off"),
            "bootargs: on=off: duplicate key; give each key once"
        );
        // A duplicate is reported before its value is judged.
        assert_eq!(
            error_text("limit=3 limit=0"),
            "bootargs: limit=0: duplicate key; give each key once"
        );
        assert_eq!(
            error_text("bug=alpha bug=beta"),
            "bootargs: bug=beta: duplicate key; give each key once"
        );
        // ... and after the key is known.
        assert_eq!(
            error_text("count=5 bogus=1 count=5"),
            format!("bootargs: bogus=1: unknown key; keys are {ALL_KEYS}")
        );
    }

    #[test]
    fn first_bad_token_is_reported() {
        assert_eq!(
            error_text("limit=1 count=abc bogus"),
            "bootargs: limit=1: an integer from 2 to 16"
        );
    }

    #[test]
    fn empty_value_is_rejected_with_what_the_key_accepts() {
        assert_eq!(
            error_text("count="),
            "bootargs: count=: an integer from 0 to 86400"
        );
        assert_eq!(error_text("on="), "bootargs: on=: one of on, off");
        assert_eq!(
            error_text("mode="),
            "bootargs: mode=: one of fast, slow-and-sure"
        );
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
                error_text(&format!("count={value}")),
                format!("bootargs: count={value}: an integer from 0 to 86400")
            );
        }
        // Leading zeros are still decimal, not octal.
        assert_eq!(parse_ok("count=010").high.count, 10);
        // 2^8 + 5 must not wrap to 5 in the u8 field.
        assert_eq!(
            error_text("limit=261"),
            "bootargs: limit=261: an integer from 2 to 16"
        );
    }

    #[test]
    fn bug_lists_go_to_the_groups_that_own_them() {
        let set = parse_ok("bug=beta,gamma,alpha");
        assert_eq!(
            set.low.bugs.iter().collect::<Vec<_>>(),
            [LowBug::Alpha, LowBug::Beta]
        );
        assert!(set.high.bugs.has(HighBug::Gamma));
        // Displayed in group order, then declaration order.
        assert_eq!(Planted(&set).to_string(), "gamma,alpha,beta");
        assert_eq!(Planted(&Both::DEFAULT).to_string(), "");
        assert_eq!(set.low.bugs.to_string(), "alpha,beta");
        assert_eq!(Flags::<LowBug>::NONE.to_string(), "");
        for value in [
            "",
            "nope",
            "alpha,nope",
            "alpha,",
            ",alpha",
            "alpha,,beta",
            "alpha,alpha",
            "Alpha",
        ] {
            assert_eq!(
                error_text(&format!("bug={value}")),
                format!("bootargs: bug={value}: {BUG_LIST}{ALL_BUGS}")
            );
        }
    }

    #[test]
    fn error_borrows_key_and_value_from_the_input() {
        let input = String::from("mode=fast limit=1");
        let e = parse::<Both>(&input).unwrap_err();
        let range = input.as_bytes().as_ptr_range();
        assert!(range.contains(&e.key.as_ptr()));
        assert!(range.contains(&e.value.as_ptr()));
        assert_eq!((e.key, e.value), ("limit", "1"));
        assert_eq!(e.accepted.to_string(), "an integer from 2 to 16");
    }

    proptest! {
        #[test]
        fn any_key_value_parses_or_names_that_key_and_value(
            key in prop_oneof![
                prop::sample::select(&["mode", "count", "on", "limit", "bug"][..]).prop_map(String::from),
                "[!-<>-~]{0,10}",
            ],
            value in prop_oneof![
                prop::sample::select(&["fast", "slow-and-sure", "on", "off", "alpha", "gamma,beta", "0x1f", "-1"][..]).prop_map(String::from),
                any::<u64>().prop_map(|n| n.to_string()),
                "[!-~]{0,12}",
            ],
        ) {
            let token = format!("{key}={value}");
            match parse::<Both>(&token) {
                Ok(_) => prop_assert!(ALL_KEYS.split(", ").any(|k| k == key)),
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
        fn integer_keys_match_a_range_model(n in prop_oneof![any::<u64>(), 0u64..70_000]) {
            for text in [n.to_string(), format!("0x{n:x}")] {
                let in_model = (0..=86400).contains(&n) && !text.starts_with("0x");
                match parse::<Both>(&format!("count={text}")) {
                    Ok(set) => {
                        prop_assert!(in_model, "count={} accepted", text);
                        prop_assert_eq!(u64::from(set.high.count), n);
                    }
                    Err(e) => {
                        prop_assert!(!in_model, "count={} rejected: {}", text, e);
                        prop_assert_eq!((e.key, e.value), ("count", text.as_str()));
                    }
                }
            }
        }

        #[test]
        fn arbitrary_input_never_panics_and_errors_borrow_from_it(input in "\\PC{0,40}|[ a-z=_,0-9\t-]{0,60}") {
            if let Err(e) = parse::<Both>(&input) {
                let range = input.as_bytes().as_ptr_range();
                prop_assert!(e.key.is_empty() || range.contains(&e.key.as_ptr()));
                prop_assert!(!e.accepted.to_string().is_empty());
                let shown = format!("{}={}", e.key, e.value);
                prop_assert!(input.contains(&shown) || (e.value.is_empty() && input.contains(e.key)));
            }
        }

        #[test]
        fn flag_lists_match_a_set_model(picks in prop::collection::vec(0usize..2, 1..4)) {
            let list: Vec<&str> = picks.iter().map(|&i| LowBug::NAMES[i]).collect();
            let mut distinct = picks.clone();
            distinct.sort_unstable();
            distinct.dedup();
            match Flags::<LowBug>::parse_list(&list.join(",")) {
                Some(set) => {
                    prop_assert_eq!(distinct.len(), picks.len());
                    let got: Vec<LowBug> = set.iter().collect();
                    let want: Vec<LowBug> = distinct.iter().map(|&i| LowBug::ALL[i]).collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert_eq!(Flags::parse_list(&set.to_string()), Some(set));
                }
                None => prop_assert!(distinct.len() < picks.len()),
            }
        }
    }
}
