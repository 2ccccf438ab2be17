//! Process CPU and resident memory. RSS comes from `sysinfo`. CPU comes from
//! the process CPU clock where there is one (nanosecond resolution; sysinfo's
//! figure moves in 10 ms kernel ticks, too coarse for short windows), and
//! from sysinfo elsewhere.

use std::time::Instant;

use crate::os::process_cpu_seconds;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// A CPU window shorter than this does not end: the next sample's window
/// starts where this one's did. Two samples microseconds apart would
/// otherwise divide the jitter between the CPU and wall clock reads (and, on
/// kernels that credit other threads' time at scheduler ticks, a tick) by
/// almost nothing.
pub(crate) const MIN_WINDOW_SECONDS: f64 = 0.01;

/// One process sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// CPU used over the window, in percent of one core (can exceed 100 with
    /// several busy threads, as psutil reports it).
    pub(crate) cpu_percent: f64,
    /// CPU seconds used over the window.
    pub(crate) cpu_seconds: f64,
    /// Wall seconds the window covers: from the end of the last window that
    /// ended (the run's start sample at first) to this sample.
    pub(crate) window_seconds: f64,
    /// Whether the window ended here (it is at least `MIN_WINDOW_SECONDS`, or
    /// it was asked to): the next window starts at this sample.
    pub(crate) ends_window: bool,
    pub(crate) rss_bytes: u64,
}

pub(crate) struct Sampler {
    system: Option<System>,
    pid: Option<Pid>,
    /// Where the current window started: the time and CPU seconds then.
    last: (Instant, f64),
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        let mut sampler = Sampler {
            system: System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
            last: (Instant::now(), 0.0),
        };
        let (_, cpu) = sampler.refresh();
        sampler.last = (Instant::now(), cpu);
        sampler
    }

    /// RSS bytes and CPU seconds used so far.
    fn refresh(&mut self) -> (u64, f64) {
        let (Some(system), Some(pid)) = (self.system.as_mut(), self.pid) else {
            return (crate::os::rss_bytes(), process_cpu_seconds().unwrap_or(0.0));
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        let process = system.process(pid);
        let rss = process.map_or(0, |p| p.memory());
        let cpu = process_cpu_seconds()
            .unwrap_or_else(|| process.map_or(0.0, |p| p.accumulated_cpu_time() as f64 / 1e3));
        (rss, cpu)
    }

    /// A run's start sample: RSS, and a window of zero (CPU 0) that starts
    /// there, so no sample of the run reports CPU used before it.
    pub(crate) fn start(&mut self) -> Sample {
        let (rss_bytes, cpu) = self.refresh();
        self.last = (Instant::now(), cpu);
        Sample {
            cpu_percent: 0.0,
            cpu_seconds: 0.0,
            window_seconds: 0.0,
            ends_window: true,
            rss_bytes,
        }
    }

    /// A sample over the window since the last one that ended; `end` ends
    /// this window however short it is.
    pub(crate) fn sample(&mut self, end: bool) -> Sample {
        let (rss_bytes, cpu) = self.refresh();
        let now = Instant::now();
        let window_seconds = now.duration_since(self.last.0).as_secs_f64();
        let cpu_seconds = (cpu - self.last.1).max(0.0);
        let cpu_percent = if window_seconds > 0.0 {
            100.0 * cpu_seconds / window_seconds
        } else {
            0.0
        };
        let ends_window = end || window_seconds >= MIN_WINDOW_SECONDS;
        if ends_window {
            self.last = (now, cpu);
        }
        Sample {
            cpu_percent,
            cpu_seconds,
            window_seconds,
            ends_window,
            rss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[cfg(unix)]
    fn busy_thread_shows_as_cpu_and_rss_is_real() {
        // Against oracles that hold however loaded the machine is: the
        // window's process CPU is at least what this spinning thread used
        // inside it (its own CPU clock), and at most what `getrusage` saw
        // the whole process use across a bracket around it, give or take
        // 20 ms: getrusage leaves out the part of each running thread's
        // time not yet accounted at a scheduler tick.
        let outer = crate::os::rusage_cpu_seconds();
        let mut s = Sampler::new();
        let spun = crate::os::thread_cpu_ns();
        spin(Duration::from_millis(200));
        let spun = (crate::os::thread_cpu_ns() - spun) as f64 / 1e9;
        let sample = s.sample(false);
        let outer = crate::os::rusage_cpu_seconds() - outer;
        assert!(sample.ends_window, "{sample:?}");
        assert!(spun > 0.0, "the thread's CPU clock did not move");
        assert!(
            sample.cpu_seconds >= spun - 1e-3 && sample.cpu_seconds <= outer + 0.02,
            "{sample:?}: the process's CPU should lie between this thread's {spun} s \
             and getrusage's {outer} s"
        );
        let percent = 100.0 * sample.cpu_seconds / sample.window_seconds;
        assert!((sample.cpu_percent - percent).abs() < 1e-6, "{sample:?}");
        assert!(sample.rss_bytes > 1 << 20, "{sample:?}");
    }

    #[test]
    fn a_short_window_does_not_end_and_the_start_reports_no_cpu() {
        let mut s = Sampler::new();
        spin(Duration::from_millis(30));
        let start = s.start();
        assert_eq!((start.cpu_percent, start.window_seconds), (0.0, 0.0));
        let short = s.sample(false);
        assert!(!short.ends_window && short.window_seconds < MIN_WINDOW_SECONDS);
        spin(Duration::from_millis(20));
        let long = s.sample(false);
        // The long window started at the start sample, not at the short one.
        assert!(long.ends_window && long.window_seconds > short.window_seconds + 0.015);
        let forced = s.sample(true);
        assert!(forced.ends_window && forced.window_seconds < MIN_WINDOW_SECONDS);
    }

    fn spin(d: Duration) {
        let until = Instant::now() + d;
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
