//! Process CPU and resident memory. RSS comes from `sysinfo`. CPU comes from
//! the process CPU clock where there is one (nanosecond resolution; sysinfo's
//! figure moves in 10 ms kernel ticks, too coarse for short windows), and
//! from sysinfo elsewhere.

use std::time::Instant;

use crate::os::process_cpu_seconds;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One process sample.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// CPU used since the previous sample, in percent of one core (can exceed
    /// 100 with several busy threads, as psutil reports it).
    pub(crate) cpu_percent: f64,
    /// Wall seconds since the previous sample (the window `cpu_percent` covers).
    pub(crate) window_seconds: f64,
    pub(crate) rss_bytes: u64,
}

pub(crate) struct Sampler {
    system: Option<System>,
    pid: Option<Pid>,
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

    pub(crate) fn sample(&mut self) -> Sample {
        let (rss_bytes, cpu) = self.refresh();
        let now = Instant::now();
        let window_seconds = now.duration_since(self.last.0).as_secs_f64();
        let cpu_percent = if window_seconds > 0.0 {
            100.0 * (cpu - self.last.1).max(0.0) / window_seconds
        } else {
            0.0
        };
        self.last = (now, cpu);
        Sample {
            cpu_percent,
            window_seconds,
            rss_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_thread_shows_as_cpu_and_rss_is_real() {
        let mut s = Sampler::new();
        let until = Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let sample = s.sample();
        // One core busy for the whole window: about 100 %. Generous bounds:
        // the VM may steal time.
        assert!(
            sample.cpu_percent > 30.0 && sample.cpu_percent < 250.0,
            "{sample:?}"
        );
        assert!(sample.rss_bytes > 1 << 20, "{sample:?}");
    }
}
