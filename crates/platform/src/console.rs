//! The console: whole lines, never interleaved between CPUs, and the `log` facade on top.
//!
//! Each line is formatted and written under one IRQ-safe lock, so lines from different CPUs
//! never mix. Log lines carry their CPU (`[cpu3] W: ...`). Before the PL011 is mapped, output
//! goes to the host through semihosting. The fatal path takes the lock with a bounded wait and
//! then forces it, since the holder may be the CPU that is dying.

use super::pl011::Pl011;
use broadside_base::IrqSpinlock;
use core::fmt::{self, Write};

static CONSOLE: IrqSpinlock<Option<Pl011>> = IrqSpinlock::new(None);

/// Installs the PL011 at `base` (virtual) as the console.
///
/// # Safety
///
/// As for [`Pl011::new`].
pub unsafe fn init(base: u64) {
    // SAFETY: forwarded from the caller.
    let mut uart = unsafe { Pl011::new(base) };
    uart.init();
    *CONSOLE.lock() = Some(uart);
}

struct Sink<'a>(&'a mut Option<Pl011>);

impl Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self.0 {
            Some(uart) => uart.write_str(s),
            None => {
                #[cfg(target_arch = "aarch64")]
                broadside_arch::aarch64::semihosting::write_str(s);
                Ok(())
            }
        }
    }
}

/// Writes `args` and a newline as one line.
pub fn println(args: fmt::Arguments<'_>) {
    let mut guard = CONSOLE.lock();
    let mut sink = Sink(&mut guard);
    let _ = sink.write_fmt(args);
    let _ = sink.write_str("\n");
}

/// Runs `f` with the console held, for multi-line output that must stay together (the fatal
/// report, the per-CPU watchdog dump). Takes the lock by force after a bounded wait.
pub fn with_console_forced(f: impl FnOnce(&mut dyn Write)) {
    let mut tries = 0u64;
    let mut guard = loop {
        if let Some(g) = CONSOLE.try_lock() {
            break g;
        }
        tries += 1;
        if tries > 10_000_000 {
            // SAFETY: the fatal path: the holder is this CPU (it faulted while printing) or a CPU
            // that is wedged; the kernel exits right after this output.
            unsafe { CONSOLE.force_unlock() };
        }
        broadside_base::hint::cpu_relax();
    };
    let mut sink = Sink(&mut guard);
    f(&mut sink);
    if let Some(uart) = guard.as_mut() {
        uart.flush();
    }
}

/// Prints a line to the console.
#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => { $crate::console::println(format_args!($($arg)*)) };
}

/// The `log` backend: one line per record, prefixed with the CPU and level.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "E",
            log::Level::Warn => "W",
            log::Level::Info => "I",
            log::Level::Debug => "D",
            log::Level::Trace => "T",
        };
        println(format_args!(
            "[cpu{}] {}: {}",
            broadside_base::cpu_id(),
            level,
            record.args()
        ));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger with `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
