//! Link-time stand-ins for the unwinder.
//!
//! The prebuilt `alloc` of the `aarch64-unknown-linux-gnu` target was compiled for unwinding, so
//! its landing pads name `_Unwind_Resume` and `rust_eh_personality`. broadside panics with
//! `panic = "abort"`: no unwind ever starts, so no landing pad runs and neither symbol is ever
//! called. If one were, something would be badly wrong, and it reports that as a panic would.

#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    panic!("_Unwind_Resume called, but broadside never unwinds");
}

#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() -> ! {
    panic!("rust_eh_personality called, but broadside never unwinds");
}
