//! The `summary:` line: the last line the kernel prints, `summary: ` and one JSON object.
//!
//! Both ends of that line live here, so they cannot drift apart:
//!
//! - [`write_summary`] writes it. It is portable and allocation-free (the kernel runs it on the
//!   panic and watchdog paths, when the heap may be exhausted or its lock held); the kernel only
//!   gathers the values into a [`Header`] and its counters.
//! - [`Summary`] (behind the `serde` feature; `alloc`, no std) reads it back: the typed form the
//!   host-side boot tests (`tests/`) assert on, with [`Summary::from_log`] to find the line in a
//!   console log. A host test feeds the writer's output to the parser.
#![cfg_attr(not(any(test, loom)), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "serde")]
extern crate alloc;

pub mod json;
mod line;
#[cfg(feature = "serde")]
mod typed;

pub use line::{Header, PREFIX, write_summary};
#[cfg(feature = "serde")]
pub use typed::{Bench, ParseError, RunResult, Stress, Summary};
