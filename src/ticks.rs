//! The raw clock every timestamp of a run comes from: quanta's, with the
//! time-stamp counter read inline on the recording path.
//!
//! `quanta::Clock::raw` is an out-of-line call that matches on its clock
//! source every time; with the TSC as that source it is one `rdtsc`. A region
//! reads the clock twice, and the calls (with the registers they clobber)
//! were about 7 % of a region's cost (BENCHMARKS.md). So when quanta reads the TSC, [`Clock::raw`]
//! executes `rdtsc` itself: the same instruction, so the same values, which
//! quanta then converts to nanoseconds as before.

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
        Clock { quanta, inline_tsc }
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

    /// Nanoseconds from raw `start` to raw `end` (0 when `end` is not later).
    pub(crate) fn delta_as_nanos(&self, start: u64, end: u64) -> u64 {
        self.quanta.delta_as_nanos(start, end)
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
