//! The watchdog: every CPU's tick checks the run's deadline (`timeout=`) and, every
//! [`SCAN_EVERY_MS`], one tick scans every CPU for two things: a working CPU that has stopped
//! taking ticks (stuck with IRQs masked: the stall rule of [`crate::stall`]), and a CPU that has
//! not started work posted to it long ago (asleep through its kick: a lost wakeup). Idle CPUs
//! keep a slow tick (`stall::idle_watch_ms`), so the scan runs even when the one working CPU is
//! the stuck one. When it fires it prints why, every CPU's state, and exits with code 4.

use broadside_arch::aarch64::cpu;
use broadside_base::ExitCode;
use broadside_base::percpu::{self as smp_percpu, CpuState, online_count, online_cpus};
use broadside_platform::boot_info::boot_info_opt;
use broadside_platform::console;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static WATCHDOG_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// Counter value when the watchdog was armed (for the report: how long into the run it fired).
static WATCHDOG_ARMED_AT: AtomicU64 = AtomicU64::new(0);
/// The `timeout=` in force, in seconds (for the report).
static WATCHDOG_TIMEOUT_S: AtomicU64 = AtomicU64::new(0);
static WATCHDOG_FIRED: AtomicBool = AtomicBool::new(false);

/// Arms the run's deadline: `seconds` from now.
pub fn arm(seconds: u32) {
    let now = cpu::counter();
    WATCHDOG_ARMED_AT.store(now, Ordering::Relaxed);
    WATCHDOG_TIMEOUT_S.store(seconds as u64, Ordering::Relaxed);
    WATCHDOG_DEADLINE.store(
        now + seconds as u64 * cpu::counter_frequency(),
        Ordering::Relaxed,
    );
}

/// Milliseconds between two scans of every CPU. The scan is O(CPUs) and the limits are
/// seconds, so one tick on one CPU does it this often, whichever CPU's tick comes first.
pub const SCAN_EVERY_MS: u64 = 50;
/// Counter value at or after which the next scan is due (claimed by one tick).
static NEXT_SCAN_AT: AtomicU64 = AtomicU64::new(0);

/// The checks, from every CPU's tick: the run's deadline (`timeout=`), and, when a scan is due,
/// the stall rule of `smp::stall` — a working CPU that has taken no tick for longer than the
/// limit is stuck with IRQs masked — and the lost-wakeup rule: work posted to a CPU and not
/// started within the same limit. The scans are what name a stuck CPU within seconds; the
/// deadline only says the run as a whole took too long.
pub fn check(now: u64) {
    let freq = cpu::counter_frequency();
    if now > WATCHDOG_DEADLINE.load(Ordering::Relaxed) {
        fire(format_args!(
            "the run did not finish within timeout={} s ({} ms after the watchdog was armed)",
            WATCHDOG_TIMEOUT_S.load(Ordering::Relaxed),
            crate::stall::ticks_to_ms(
                now.saturating_sub(WATCHDOG_ARMED_AT.load(Ordering::Relaxed)),
                freq
            ),
        ));
    }
    let due = NEXT_SCAN_AT.load(Ordering::Relaxed);
    if now < due {
        return; // most ticks: one load and a compare
    }
    let next = now + crate::stall::ms_to_ticks(SCAN_EVERY_MS, freq);
    if NEXT_SCAN_AT
        .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return; // another CPU's tick claimed this scan
    }
    let limit_ms = crate::stall::stall_limit_ms(online_count());
    let limit = crate::stall::ms_to_ticks(limit_ms, freq);
    let ms = |ticks: u64| crate::stall::ticks_to_ms(ticks, freq);
    // Only a report needs these (each a u128 division): not worked out on every scan.
    let armed_ms = || ms(now.saturating_sub(WATCHDOG_ARMED_AT.load(Ordering::Relaxed)));
    let deadline_ms = || {
        ms(WATCHDOG_DEADLINE
            .load(Ordering::Relaxed)
            .saturating_sub(now))
    };
    for c in online_cpus() {
        let last = c.last_tick_at.load(Ordering::Relaxed);
        if crate::stall::is_stalled(now, last, limit) && c.state() == CpuState::Working {
            fire(format_args!(
                "cpu{} stopped taking timer ticks: last tick {} ms ago (limit {} ms), {} ms after the watchdog was armed, {} ms before the run deadline",
                c.index,
                ms(now - last),
                limit_ms,
                armed_ms(),
                deadline_ms(),
            ));
        }
        // Acquire: pairs with `run_on_all`'s Release store of the work, so `work_posted_at`
        // is this posting's (or newer), never the previous one's.
        if c.work_fn.load(Ordering::Acquire) != 0 {
            let posted = c.work_posted_at.load(Ordering::Relaxed);
            if crate::stall::is_stalled(now, posted, limit) {
                fire(format_args!(
                    "cpu{} has not started the work posted to it {} ms ago (limit {} ms): it slept through its kick (a lost wakeup), {} ms after the watchdog was armed",
                    c.index,
                    ms(now.saturating_sub(posted)),
                    limit_ms,
                    armed_ms(),
                ));
            }
        }
    }
}

/// Prints why (one `watchdog: ...` line), then every CPU's state (one line each), then the
/// summary (fail), and exits with code 4. Allocates nothing: it runs in the tick handler, and
/// the stuck CPU may hold the heap lock.
pub fn fire(why: core::fmt::Arguments<'_>) -> ! {
    if WATCHDOG_FIRED.swap(true, Ordering::AcqRel) {
        broadside_platform::exit::park();
    }
    let now = cpu::counter();
    let freq = cpu::counter_frequency();
    console::with_console_forced(|out| {
        let _ = writeln!(
            out,
            "watchdog: {why} (seen by cpu{})",
            broadside_base::cpu_id()
        );
        for c in online_cpus().chain(
            (0..boot_info_opt().map_or(0, |b| b.platform.cpus))
                .map(smp_percpu::cpu)
                .filter(|c| !c.is_online()),
        ) {
            let since_tick_ms = crate::stall::ticks_to_ms(
                now.saturating_sub(c.last_tick_at.load(Ordering::Relaxed)),
                freq,
            );
            let _ = writeln!(
                out,
                "watchdog: cpu{} mpidr={:#x} {} state={} role={} ticks={} last_tick={}ms_ago heartbeat={} in_walker={} kicks={} work={} tick_pc={:#x}",
                c.index,
                c.mpidr.load(Ordering::Relaxed),
                if c.is_online() { "online" } else { "OFFLINE" },
                c.state().name(),
                c.role().name(),
                c.ticks.load(Ordering::Relaxed),
                since_tick_ms,
                c.heartbeat.load(Ordering::Relaxed),
                c.in_walker.load(Ordering::Relaxed),
                c.kicks.load(Ordering::Relaxed),
                if c.work_fn.load(Ordering::Relaxed) != 0 {
                    "posted"
                } else {
                    "none"
                },
                c.last_tick_pc.load(Ordering::Relaxed),
            );
        }
    });
    broadside_platform::exit::finish(ExitCode::Watchdog, None)
}
