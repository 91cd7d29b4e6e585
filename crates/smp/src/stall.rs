//! The watchdog's stall rule, as pure functions of counter readings (host-tested): a CPU that
//! is working and has taken no timer tick for longer than the limit has stopped taking
//! interrupts, i.e. it is stuck with IRQs masked (the timer keeps firing on every online CPU,
//! so only masked IRQs or a wedged CPU stop the ticks).
//!
//! # The limit
//! Long enough that no legitimate IRQs-masked window reaches it, short enough that a stuck CPU
//! is named within seconds rather than at the run's deadline. The masked windows in broadside
//! are short (a lockless walk, a spin lock, a grace-period wait that serves IPIs), but under
//! QEMU TCG time is host time: a vCPU is a host thread that may wait its turn behind the other
//! vCPU threads, and every broadcast TLBI stops all vCPUs until each has flushed, so the worst
//! gap between two ticks of one vCPU grows with the number of vCPUs per host core. Hence a
//! base of 2 s plus 100 ms per online CPU (8.4 s at 64 CPUs, 27.6 s at 256), capped at 60 s
//! (reached at 580 CPUs, beyond QEMU virt's 512).
//!
//! The allowance was 50 ms per CPU and the cap 20 s until broadside ran 256 CPUs: on a 2-core
//! host with other work on it, `stress` at 256 CPUs had vCPUs go 15-18 s without a tick while
//! their broadcast TLBIs waited for QEMU to stop all 256 vCPUs, and at 128 CPUs 9 s — each
//! past the old limit, none stuck (every one of them ticked again).

/// The limit for one CPU, before the per-CPU allowance.
pub const STALL_BASE_MS: u64 = 2_000;
/// Added per online CPU (see the module docs).
pub const STALL_PER_CPU_MS: u64 = 100;
/// The limit never exceeds this.
pub const STALL_MAX_MS: u64 = 60_000;

/// How long a working CPU may go without a timer tick, with `online_cpus` CPUs online.
pub const fn stall_limit_ms(online_cpus: usize) -> u64 {
    let ms = STALL_BASE_MS.saturating_add(STALL_PER_CPU_MS.saturating_mul(online_cpus as u64));
    if ms > STALL_MAX_MS { STALL_MAX_MS } else { ms }
}

/// The slow tick an idle CPU keeps while tickless: half the stall limit, so that a CPU stuck
/// with IRQs masked while every other CPU idles is still seen within one and a half limits.
pub const fn idle_watch_ms(online_cpus: usize) -> u64 {
    stall_limit_ms(online_cpus) / 2
}

/// Milliseconds in `ticks` of a counter running at `freq_hz` (0 if the frequency is unknown).
pub const fn ticks_to_ms(ticks: u64, freq_hz: u64) -> u64 {
    if freq_hz == 0 {
        return 0;
    }
    // u128: `ticks * 1000` overflows u64 after ~213 days at 1 GHz.
    (ticks as u128 * 1000 / freq_hz as u128) as u64
}

/// Counter ticks in `ms` milliseconds at `freq_hz`.
pub const fn ms_to_ticks(ms: u64, freq_hz: u64) -> u64 {
    (ms as u128 * freq_hz as u128 / 1000) as u64
}

/// Whether a CPU whose last tick was at `last_tick_at` has stalled at `now` (counter values),
/// given the limit in counter ticks. A `last_tick_at` after `now` (another CPU's tick raced
/// with this reading) is not a stall.
pub const fn is_stalled(now: u64, last_tick_at: u64, limit_ticks: u64) -> bool {
    now.saturating_sub(last_tick_at) > limit_ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_grows_with_cpus_and_is_capped() {
        assert_eq!(stall_limit_ms(1), 2_100);
        assert_eq!(stall_limit_ms(2), 2_200);
        assert_eq!(stall_limit_ms(64), 8_400);
        assert_eq!(stall_limit_ms(256), 27_600);
        assert_eq!(stall_limit_ms(512), 53_200);
        assert_eq!(stall_limit_ms(580), 60_000);
        assert_eq!(stall_limit_ms(usize::MAX), 60_000, "no overflow");
        for cpus in 1..600 {
            assert!(stall_limit_ms(cpus) >= stall_limit_ms(cpus - 1));
        }
    }

    #[test]
    fn idle_watch_tick_fits_twice_in_the_limit() {
        for cpus in [1, 4, 64, 256, 512, 600] {
            let watch = idle_watch_ms(cpus);
            assert!(watch >= 1_000, "{cpus} CPUs: a slow tick, not a busy one");
            assert!(2 * watch <= stall_limit_ms(cpus), "{cpus} CPUs");
        }
    }

    #[test]
    fn conversions_round_down_and_do_not_overflow() {
        // QEMU virt's generic timer runs at 62.5 MHz (older QEMU) or 1 GHz.
        assert_eq!(ticks_to_ms(62_500_000, 62_500_000), 1_000);
        assert_eq!(ticks_to_ms(62_499, 62_500_000), 0);
        assert_eq!(ms_to_ticks(2_100, 62_500_000), 131_250_000);
        assert_eq!(ms_to_ticks(1, 1_000_000_000), 1_000_000);
        assert_eq!(ticks_to_ms(u64::MAX, 1_000_000_000), u64::MAX / 1_000_000);
        assert_eq!(ticks_to_ms(123, 0), 0);
        for ms in [0, 1, 999, 2_100, 20_000] {
            assert_eq!(ticks_to_ms(ms_to_ticks(ms, 62_500_000), 62_500_000), ms);
        }
    }

    #[test]
    fn stalled_only_strictly_beyond_the_limit() {
        let limit = 1_000;
        assert!(!is_stalled(5_000, 4_000, limit), "exactly the limit");
        assert!(is_stalled(5_001, 4_000, limit));
        assert!(
            !is_stalled(4_000, 4_500, limit),
            "a tick newer than the reading"
        );
        assert!(!is_stalled(0, 0, limit));
        assert!(is_stalled(u64::MAX, 0, limit));
    }
}
