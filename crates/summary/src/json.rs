//! A no-allocation JSON object writer for the one-line `summary:` report.
//!
//! The design contract makes the last line the kernel prints `summary: ` followed by one JSON
//! object, which `scripts/stress.sh`, `scripts/bench.sh` and CI parse. That line is written at
//! exit, possibly after a panic or a watchdog expiry, when the heap may be exhausted or its lock
//! held, so this writer streams straight into any [`core::fmt::Write`] (the console) and never
//! allocates. It plays the role Linux's `seq_buf`/`printk` formatting plays for its text
//! reports, restricted to RFC 8259 JSON: no spaces, no newlines, keys and strings escaped.
//!
//! Commas are inserted automatically. A nested object borrows its parent's writer mutably, so
//! the borrow checker forbids writing to the parent until the child is closed; a child (or the
//! top-level object) is closed by [`JsonObject::finish`], or by dropping it, so an early `?`
//! return still leaves balanced braces behind.

use core::fmt::{self, Write};

/// An open JSON object being written to `W`. Dropping it writes the closing `}` (even after a
/// write error, so a partial line still ends balanced where the writer allows); call
/// [`finish`](JsonObject::finish) instead to see whether that write failed.
pub struct JsonObject<'w, W: Write + ?Sized> {
    out: &'w mut W,
    has_members: bool,
    closed: bool,
}

impl<'w, W: Write + ?Sized> JsonObject<'w, W> {
    /// Starts an object by writing `{`.
    pub fn new(out: &'w mut W) -> Result<Self, fmt::Error> {
        out.write_char('{')?;
        Ok(JsonObject {
            out,
            has_members: false,
            closed: false,
        })
    }

    /// Continues an object whose braces are written by someone else: members only, with the
    /// same commas and escaping, and no `{` now or `}` at the end. For a workload's own
    /// members, rendered ahead of time and spliced into the summary by [`Self::raw_members`].
    pub fn members(out: &'w mut W) -> Self {
        JsonObject {
            out,
            has_members: false,
            closed: true,
        }
    }

    /// Writes `"key":value` with `value` an unsigned integer.
    pub fn u64(&mut self, key: &str, value: u64) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        write!(self.out, "{value}")?;
        Ok(self)
    }

    /// Writes `"key":value` with `value` a signed integer.
    pub fn i64(&mut self, key: &str, value: i64) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        write!(self.out, "{value}")?;
        Ok(self)
    }

    /// Writes `"key":true` or `"key":false`.
    pub fn bool(&mut self, key: &str, value: bool) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        self.out.write_str(if value { "true" } else { "false" })?;
        Ok(self)
    }

    /// Writes `"key":"value"`, escaping `value`.
    pub fn str(&mut self, key: &str, value: &str) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        write_json_string(self.out, value)?;
        Ok(self)
    }

    /// Writes `"key":"…"` where the string is `value`'s `Display` output, escaped. Lets a value
    /// such as a set of names be rendered without first formatting it into a buffer.
    pub fn display(
        &mut self,
        key: &str,
        value: impl fmt::Display,
    ) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        self.out.write_char('"')?;
        write!(EscapeJson(&mut *self.out), "{value}")?;
        self.out.write_char('"')?;
        Ok(self)
    }

    /// Writes `"key":["a","b",...]`, each string escaped.
    pub fn str_array<'s>(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = &'s str>,
    ) -> Result<&mut Self, fmt::Error> {
        self.key(key)?;
        self.out.write_char('[')?;
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.write_char(',')?;
            }
            write_json_string(self.out, v)?;
        }
        self.out.write_char(']')?;
        Ok(self)
    }

    /// Writes `"key":{` and returns the nested object; this object can be written to again
    /// once the nested one is finished or dropped.
    pub fn object(&mut self, key: &str) -> Result<JsonObject<'_, W>, fmt::Error> {
        self.key(key)?;
        JsonObject::new(&mut *self.out)
    }

    /// Closes the object with `}`.
    pub fn finish(mut self) -> fmt::Result {
        self.close()
    }

    fn close(&mut self) -> fmt::Result {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.out.write_char('}')
    }

    /// Appends `members`, already-rendered JSON members (`"a":1,"b":{...}`, no braces), as
    /// they are. For a section a workload rendered ahead of time, such as the bench's `modes`.
    pub fn raw_members(&mut self, members: &str) -> Result<&mut Self, fmt::Error> {
        if members.is_empty() {
            return Ok(self);
        }
        if self.has_members {
            self.out.write_char(',')?;
        }
        self.has_members = true;
        self.out.write_str(members)?;
        Ok(self)
    }

    /// Writes the separator (if any member precedes) and `"key":`.
    fn key(&mut self, key: &str) -> fmt::Result {
        if self.has_members {
            self.out.write_char(',')?;
        }
        self.has_members = true;
        write_json_string(self.out, key)?;
        self.out.write_char(':')
    }
}

impl<W: Write + ?Sized> Drop for JsonObject<'_, W> {
    fn drop(&mut self) {
        // Nobody can observe an error here; `finish` exists for callers that want to.
        let _ = self.close();
    }
}

/// Writes `s` as a quoted JSON string.
fn write_json_string<W: Write + ?Sized>(out: &mut W, s: &str) -> fmt::Result {
    out.write_char('"')?;
    EscapeJson(&mut *out).write_str(s)?;
    out.write_char('"')
}

/// A writer adapter that escapes what passes through for use inside a JSON string: `"` and `\`
/// get a backslash, and the control characters U+0000..=U+001F (which RFC 8259 forbids raw)
/// become `\u00XX`. Everything else, including non-ASCII, is valid JSON as is.
struct EscapeJson<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for EscapeJson<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Copy unescaped runs in one call; the console writer pays per call, not per byte.
        let mut run_start = 0;
        for (i, byte) in s.bytes().enumerate() {
            // Bytes of multi-byte UTF-8 sequences are all >= 0x80, so testing bytes is exact.
            if byte >= 0x20 && byte != b'"' && byte != b'\\' {
                continue;
            }
            self.0.write_str(&s[run_start..i])?;
            match byte {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                control => write!(self.0, "\\u{control:04x}")?,
            }
            run_start = i + 1;
        }
        self.0.write_str(&s[run_start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Runs `build` on a fresh top-level object and returns what was written.
    fn render(build: impl FnOnce(&mut JsonObject<'_, String>) -> fmt::Result) -> String {
        let mut out = String::new();
        let mut obj = JsonObject::new(&mut out).unwrap();
        build(&mut obj).unwrap();
        obj.finish().unwrap();
        out
    }

    #[test]
    fn members_write_no_braces_and_splice_into_an_object() {
        let mut members = String::new();
        {
            let mut m = JsonObject::members(&mut members);
            let mut modes = m.object("modes").unwrap();
            modes.object("tlbi").unwrap().u64("ops", 3).unwrap();
            modes.object("ipi").unwrap().u64("ops", 4).unwrap();
            modes.finish().unwrap();
            m.u64("rounds", 8).unwrap();
        }
        assert_eq!(
            members,
            r#""modes":{"tlbi":{"ops":3},"ipi":{"ops":4}},"rounds":8"#
        );
        let out = render(|o| {
            o.u64("cpus", 4)?.raw_members(&members)?;
            Ok(())
        });
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["modes"]["ipi"]["ops"], 4);
        assert_eq!(v["rounds"], 8);
        assert_eq!(JsonObject::members(&mut String::new()).finish(), Ok(()));
    }

    #[test]
    fn empty_object() {
        assert_eq!(render(|_| Ok(())), "{}");
    }

    #[test]
    fn scalars_with_commas_and_no_whitespace() {
        let out = render(|o| {
            o.str("workload", "stress")?
                .str("result", "pass")?
                .u64("cpus", 4)?
                .u64("max", u64::MAX)?
                .i64("min", i64::MIN)?
                .i64("neg", -1)?
                .bool("tlbi_range", true)?
                .bool("off", false)?;
            Ok(())
        });
        assert_eq!(
            out,
            r#"{"workload":"stress","result":"pass","cpus":4,"max":18446744073709551615,"min":-9223372036854775808,"neg":-1,"tlbi_range":true,"off":false}"#
        );
    }

    #[test]
    fn nested_objects_close_in_order() {
        let out = render(|o| {
            o.str("workload", "bench")?;
            let mut counters = o.object("counters")?;
            counters.u64("tlbi_ops", 123)?.u64("ipis_sent", 0)?;
            counters.finish()?;
            let mut modes = o.object("modes")?;
            let mut tlbi = modes.object("tlbi")?;
            tlbi.u64("ns", 5)?;
            tlbi.finish()?;
            modes.object("ipi")?.finish()?;
            modes.finish()?;
            o.u64("seed", 1)?;
            Ok(())
        });
        assert_eq!(
            out,
            r#"{"workload":"bench","counters":{"tlbi_ops":123,"ipis_sent":0},"modes":{"tlbi":{"ns":5},"ipi":{}},"seed":1}"#
        );
    }

    #[test]
    fn dropping_an_object_closes_it_once() {
        let mut out = String::new();
        {
            let mut top = JsonObject::new(&mut out).unwrap();
            {
                let mut child = top.object("c").unwrap();
                child.u64("a", 1).unwrap();
            }
            top.u64("b", 2).unwrap();
        }
        assert_eq!(out, r#"{"c":{"a":1},"b":2}"#);
    }

    #[test]
    fn strings_and_keys_are_escaped() {
        let out = render(|o| {
            o.str("quote\"key", "a\"b\\c")?
                .str("controls", "\u{0}\t\n\r\u{1b}\u{1f} ")?
                .str("unicode", "é→𝄞\u{7f}\u{2028}")?
                .str("", "")?;
            Ok(())
        });
        assert_eq!(
            out,
            "{\"quote\\\"key\":\"a\\\"b\\\\c\",\
             \"controls\":\"\\u0000\\u0009\\u000a\\u000d\\u001b\\u001f \",\
             \"unicode\":\"é→𝄞\u{7f}\u{2028}\",\"\":\"\"}"
        );
    }

    #[test]
    fn display_values_are_escaped_like_strings() {
        struct Names;
        impl fmt::Display for Names {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("skip-tlbi,")?;
                // Several pieces, so the escaper sees more than one `write_str`.
                let (count, newline) = (7, '\n');
                write!(f, "{count}\"{newline}")
            }
        }
        let out = render(|o| {
            o.display("bug", Names)?.display("n", 42)?;
            Ok(())
        });
        assert_eq!(out, r#"{"bug":"skip-tlbi,7\"\u000a","n":"42"}"#);
    }

    /// Accepts `budget` bytes, then fails every write.
    struct FailAfter {
        out: String,
        budget: usize,
    }

    impl Write for FailAfter {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if s.len() > self.budget {
                return Err(fmt::Error);
            }
            self.budget -= s.len();
            self.out.push_str(s);
            Ok(())
        }
    }

    #[test]
    fn writer_errors_propagate_from_every_method() {
        let full = r#"{"a":1,"b":{"c":true}}"#;
        for budget in 0..full.len() {
            let mut w = FailAfter {
                out: String::new(),
                budget,
            };
            let result = (|| -> fmt::Result {
                let mut top = JsonObject::new(&mut w)?;
                top.u64("a", 1)?;
                let mut b = top.object("b")?;
                b.bool("c", true)?;
                b.finish()?;
                top.finish()
            })();
            assert_eq!(result, Err(fmt::Error), "budget {budget}");
            // Whatever the writer took is a prefix of the full output, except that the objects
            // dropped by `?` still try to close themselves.
            let before_drop_closes = w.out.trim_end_matches('}');
            assert!(
                full.starts_with(before_drop_closes),
                "budget {budget}: {}",
                w.out
            );
        }
        let mut w = FailAfter {
            out: String::new(),
            budget: full.len(),
        };
        let mut top = JsonObject::new(&mut w).unwrap();
        top.u64("a", 1).unwrap();
        let mut b = top.object("b").unwrap();
        b.bool("c", true).unwrap();
        b.finish().unwrap();
        top.finish().unwrap();
        assert_eq!(w.out, full);
    }

    /// A JSON value tree for the round-trip model.
    #[derive(Clone, Debug)]
    enum Member {
        U64(u64),
        I64(i64),
        Bool(bool),
        Str(String),
        Object(Vec<(String, Member)>),
    }

    fn write_members<W: Write>(
        obj: &mut JsonObject<'_, W>,
        members: &[(String, Member)],
    ) -> fmt::Result {
        for (key, member) in members {
            match member {
                Member::U64(v) => obj.u64(key, *v).map(drop)?,
                Member::I64(v) => obj.i64(key, *v).map(drop)?,
                Member::Bool(v) => obj.bool(key, *v).map(drop)?,
                Member::Str(v) => obj.str(key, v).map(drop)?,
                Member::Object(inner) => {
                    let mut child = obj.object(key)?;
                    write_members(&mut child, inner)?;
                    child.finish()?;
                }
            }
        }
        Ok(())
    }

    fn expected_value(members: &[(String, Member)]) -> Value {
        let mut map = serde_json::Map::new();
        for (key, member) in members {
            let value = match member {
                Member::U64(v) => Value::from(*v),
                Member::I64(v) => Value::from(*v),
                Member::Bool(v) => Value::from(*v),
                Member::Str(v) => Value::from(v.as_str()),
                Member::Object(inner) => expected_value(inner),
            };
            map.insert(key.clone(), value);
        }
        Value::Object(map)
    }

    /// Keys are distinct within an object so the parsed map can be compared member by member.
    fn members() -> impl Strategy<Value = Vec<(String, Member)>> {
        let text = "\\PC{0,8}|[\\x00-\\x1f\"\\\\a]{0,8}";
        let leaf = prop_oneof![
            any::<u64>().prop_map(Member::U64),
            any::<i64>().prop_map(Member::I64),
            any::<bool>().prop_map(Member::Bool),
            text.prop_map(Member::Str),
        ];
        let member = leaf.prop_recursive(3, 24, 4, move |inner| {
            prop::collection::btree_map(text, inner, 0..4)
                .prop_map(|m| Member::Object(m.into_iter().collect()))
        });
        prop::collection::btree_map(text, member, 0..6).prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn output_is_one_line_of_json_that_round_trips(members in members()) {
            let out = render(|o| write_members(o, &members));
            prop_assert!(!out.contains('\n') && !out.contains('\r'));
            let parsed: Value = serde_json::from_str(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            prop_assert_eq!(parsed, expected_value(&members));
        }
    }
}
