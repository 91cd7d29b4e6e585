//! Arm semihosting: how exit codes reach the host (SYS_EXIT with ADP_Stopped_ApplicationExit
//! and a subcode, through the semihosting crate, which the kernel crate installs with
//! [`set_exit_with_code`]), and a last-resort console before the PL011 is
//! mapped. QEMU provides it with `-semihosting-config enable=on,target=native`; without that,
//! the `HLT #0xF000` trap is an undefined instruction, which [`probe`] detects through a fix-up.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};

const UNKNOWN: u8 = 0;
const PRESENT: u8 = 1;
const ABSENT: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// SYS_ERRNO: harmless, and answered by any semihosting host.
const SYS_ERRNO: u64 = 0x13;
/// SYS_WRITE0: writes a NUL-terminated string to the host's console.
const SYS_WRITE0: u64 = 0x04;

/// Whether the host answers semihosting calls. The first call probes with SYS_ERRNO under a
/// fix-up, so it needs the exception vectors installed.
pub fn probe() -> bool {
    match STATE.load(Ordering::Relaxed) {
        PRESENT => return true,
        ABSENT => return false,
        _ => {}
    }
    let ok: u64;
    // SAFETY: the HLT is covered by a fix-up entry: without semihosting it is an undefined
    // instruction and execution resumes at 3: with ok = 0. With semihosting it only reads x0/x1
    // and writes x0.
    unsafe {
        super::exception::asm_with_fixup!(
            "hlt #0xf000",
            ok = out(reg) ok,
            inout("x0") SYS_ERRNO => _,
            in("x1") 0u64,
            options(nostack),
        );
    }
    let present = ok == 1;
    STATE.store(if present { PRESENT } else { ABSENT }, Ordering::Relaxed);
    present
}

/// Writes `s` to the host console through SYS_WRITE0, in chunks; a no-op without semihosting.
pub fn write_str(s: &str) {
    if !probe() {
        return;
    }
    let mut buf = [0u8; 128];
    for chunk in s.as_bytes().chunks(buf.len() - 1) {
        buf[..chunk.len()].copy_from_slice(chunk);
        buf[chunk.len()] = 0;
        // SAFETY: SYS_WRITE0 reads the NUL-terminated buffer x1 points to and writes x0.
        unsafe {
            asm!("hlt #0xf000", inout("x0") SYS_WRITE0 => _, in("x1") buf.as_ptr(),
                 options(nostack, readonly));
        }
    }
}

/// How a run's exit code reaches the host: SYS_EXIT with the code (the kernel installs one
/// built on the semihosting crate, which compiles only for the kernel's target).
pub type ExitWithCode = fn(code: i32) -> !;

static EXIT_WITH_CODE: spin::Once<ExitWithCode> = spin::Once::new();

/// Installs the SYS_EXIT path (once, at boot, before anything can exit).
pub fn set_exit_with_code(exit: ExitWithCode) {
    EXIT_WITH_CODE.call_once(|| exit);
}

/// Ends the run with `code`: SYS_EXIT when semihosting is present (QEMU exits with `code`),
/// PSCI SYSTEM_OFF otherwise (QEMU exits with 0, which is all PSCI can say).
pub fn exit(code: i32) -> ! {
    if probe()
        && let Some(exit) = EXIT_WITH_CODE.get()
    {
        exit(code);
    }
    super::psci::system_off();
    loop {
        super::cpu::wfi();
    }
}
