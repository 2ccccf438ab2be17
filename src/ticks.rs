//! The raw clock every timestamp of a run comes from: quanta's, with the
//! time-stamp counter read inline on the recording path, and the scale that
//! turns its ticks into nanoseconds.
//!
//! `quanta::Clock::raw` is an out-of-line call that matches on its clock
//! source every time; with the TSC as that source it is one `rdtsc`. A region
//! reads the clock twice, and the calls (with the registers they clobber)
//! were about 7 % of a region's cost (BENCHMARKS.md). So when quanta reads the TSC, [`Clock::raw`]
//! executes `rdtsc` itself: the same instruction, so the same values.
//!
//! The scale is not quanta's: quanta calibrates over about a millisecond,
//! and in 5–7 % of processes that was 50–490 ppm off `CLOCK_MONOTONIC`. A
//! [`Scale`] is measured between two [`Pair`]s of raw and monotonic reads:
//! the process's first ([`Clock::origin`]) and one at a run's start, at
//! least [`MIN_BASELINE`] apart, so its error is a few ppm at worst and
//! shrinks as the process lives on.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// quanta's clock, read inline where that gives the same values.
#[derive(Debug)]
pub(crate) struct Clock {
    quanta: quanta::Clock,
    /// quanta's raw values are the TSC's: `raw` may read it directly.
    inline_tsc: bool,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        let quanta = quanta::Clock::new();
        let inline_tsc = reads_tsc(&quanta);
        let clock = Clock { quanta, inline_tsc };
        clock.origin();
        clock
    }

    /// The raw clock: TSC ticks where quanta uses the TSC, otherwise whatever
    /// quanta's raw source counts.
    #[inline(always)]
    pub(crate) fn raw(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.inline_tsc {
            // SAFETY: `rdtsc` exists on every x86_64 processor and has no
            // preconditions; `inline_tsc` says quanta reads it too.
            return unsafe { core::arch::x86_64::_rdtsc() };
        }
        self.quanta.raw()
    }

    /// The raw clock read in program order: `lfence; rdtsc; lfence` where
    /// [`Clock::raw`] is one `rdtsc`, so the read waits for the instructions
    /// before it and those after it wait for the read. Without the fences the
    /// out-of-order core overlaps the reads with a short region's body, which
    /// is then measured short. Where quanta does not read the TSC (other
    /// sources, other architectures) it is quanta's raw read, as `raw`.
    #[inline(always)]
    pub(crate) fn raw_fenced(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.inline_tsc {
            use core::arch::x86_64::{_mm_lfence, _rdtsc};
            // SAFETY: `lfence` is part of SSE2, which every x86_64 processor
            // has; `rdtsc` as in `Clock::raw`. None has preconditions.
            return unsafe {
                _mm_lfence();
                let t = _rdtsc();
                _mm_lfence();
                t
            };
        }
        self.quanta.raw()
    }

    /// The raw clock and `CLOCK_MONOTONIC` read together: of a few tries,
    /// the one whose two raw reads around the monotonic one are closest, and
    /// their middle. A preemption between the reads widens that try only.
    pub(crate) fn pair(&self) -> Pair {
        let mut best: Option<(u64, Pair)> = None;
        for _ in 0..PAIR_TRIES {
            let before = self.raw_fenced();
            let at = Instant::now();
            let after = self.raw_fenced();
            let spread = after.wrapping_sub(before);
            if after >= before && best.is_none_or(|(s, _)| spread < s) {
                let raw = before + spread / 2;
                best = Some((spread, Pair { raw, at }));
            }
        }
        best.map_or_else(
            || Pair {
                raw: self.raw_fenced(),
                at: Instant::now(),
            },
            |(_, p)| p,
        )
    }

    /// The process's first pair, the start of every scale's baseline: taken
    /// when the first clock is made, so one recorder made after another
    /// needs no new baseline.
    pub(crate) fn origin(&self) -> Pair {
        *ORIGIN.get_or_init(|| self.pair())
    }

    /// The scale measured from [`Clock::origin`] to now, once the baseline
    /// is at least [`MIN_BASELINE`] long (it waits for the rest, at most
    /// that long, after the process's first recorder is made): the pair at
    /// the end, and the scale.
    pub(crate) fn calibrate(&self) -> (Pair, Scale) {
        let origin = self.origin();
        let waited = origin.at.elapsed();
        if waited < MIN_BASELINE {
            std::thread::sleep(MIN_BASELINE - waited);
        }
        let now = self.pair();
        (now, Scale::between(origin, now))
    }
}

/// Tries per [`Clock::pair`]: a read takes about 30 ns, so 16 take under a
/// microsecond.
const PAIR_TRIES: usize = 16;

/// The shortest baseline a run's scale is measured over: a pair is exact to
/// about 30 ns (its raw reads' spread, measured), so 20 ms bound the scale's
/// error to about 2 ppm (BENCHMARKS.md has what the oracle test measured).
pub(crate) const MIN_BASELINE: Duration = Duration::from_millis(20);

static ORIGIN: OnceLock<Pair> = OnceLock::new();

/// A raw clock value and the `CLOCK_MONOTONIC` time it was read at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair {
    pub(crate) raw: u64,
    pub(crate) at: Instant,
}

/// Nanoseconds per raw tick, measured against `CLOCK_MONOTONIC` between two
/// pairs. One scale converts every raw value of a run: its durations,
/// histogram bounds and timestamps agree with one another exactly, and with
/// the monotonic clock to the scale's error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale {
    ns_per_tick: f64,
    /// The baseline's length.
    baseline: Duration,
}

impl Scale {
    /// The scale from pair `a` to the later pair `b` (1 ns a tick for a
    /// baseline without ticks, which a clock that does not move gives).
    pub(crate) fn between(a: Pair, b: Pair) -> Scale {
        let baseline = b.at.saturating_duration_since(a.at);
        let ticks = b.raw.saturating_sub(a.raw);
        let ns_per_tick = if ticks == 0 {
            1.0
        } else {
            baseline.as_nanos() as f64 / ticks as f64
        };
        Scale {
            ns_per_tick,
            baseline,
        }
    }

    /// A given scale (for tests, and where no run has measured one yet).
    #[cfg_attr(not(any(test, feature = "prometheus")), allow(dead_code))]
    pub(crate) const fn fixed(ns_per_tick: f64) -> Scale {
        Scale {
            ns_per_tick,
            baseline: Duration::ZERO,
        }
    }

    /// Nanoseconds in `ticks`, rounded down (saturating past `u64::MAX`).
    #[inline]
    pub(crate) fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * self.ns_per_tick) as u64
    }

    /// Nanoseconds from raw `start` to raw `end` (0 when `end` is not later).
    pub(crate) fn delta(&self, start: u64, end: u64) -> u64 {
        self.ns(end.saturating_sub(start))
    }

    pub(crate) fn ns_per_tick(&self) -> f64 {
        self.ns_per_tick
    }

    pub(crate) fn baseline(&self) -> Duration {
        self.baseline
    }
}

/// Whether quanta's raw values are the TSC's: a quanta reading taken between
/// two `rdtsc` lies between them. quanta's other source (the monotonic clock in
/// nanoseconds) never does, as its values are on another scale: one try in
/// five must pass, for a thread moved to another core between the reads.
#[cfg(target_arch = "x86_64")]
fn reads_tsc(quanta: &quanta::Clock) -> bool {
    (0..5).any(|_| {
        // SAFETY: as in `Clock::raw`.
        let before = unsafe { core::arch::x86_64::_rdtsc() };
        let raw = quanta.raw();
        // SAFETY: as in `Clock::raw`.
        let after = unsafe { core::arch::x86_64::_rdtsc() };
        before <= raw && raw <= after && after - before < 1 << 20
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn reads_tsc(_: &quanta::Clock) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_reads_fall_between_quanta_reads() {
        let clock = Clock::new();
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::__cpuid;
            // quanta's own rule: the TSC when it is invariant and has rdtscp.
            let invariant = __cpuid(0x8000_0007).edx & (1 << 8) != 0;
            let rdtscp = __cpuid(0x8000_0001).edx & (1 << 27) != 0;
            assert_eq!(
                clock.inline_tsc,
                invariant && rdtscp,
                "quanta reads the TSC iff we do"
            );
        }
        for _ in 0..1_000 {
            let a = clock.quanta.raw();
            let b = clock.raw();
            let c = clock.quanta.raw();
            assert!(a <= b && b <= c, "{a} <= {b} <= {c}");
            let d = clock.raw_fenced();
            let e = clock.quanta.raw();
            assert!(c <= d && d <= e, "{c} <= {d} <= {e}");
        }
    }
}
