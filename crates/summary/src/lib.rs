//! The `summary:` line's JSON, written without allocation by the kernel and tested on the host.
#![cfg_attr(not(any(test, loom)), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod json;
