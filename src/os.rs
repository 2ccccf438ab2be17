//! What the operating system tells about this process: thread and process
//! CPU time, resident memory. Used per call by `#[measure(resources = true)]`
//! (microseconds: a system call and a small `/proc` read, hence opt-in) and
//! by the collector's sampler.

/// Has `handler` run in the child of every later `fork`, before the child
/// returns from it. It must be async-signal-safe.
#[cfg(unix)]
pub(crate) fn in_forked_child(handler: extern "C" fn()) {
    // SAFETY: registering handlers has no precondition; the caller's handler
    // is async-signal-safe, as one run in a forked child must be.
    unsafe {
        libc::pthread_atfork(None, None, Some(handler));
    }
}

/// CPU time the calling thread has used, in nanoseconds.
pub(crate) fn thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID
        // needs no other precondition and only writes through the pointer.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
        0
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// CPU time the whole process has used, in seconds.
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes through it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The process's CPU seconds by `getrusage` (user + system): a test oracle
/// for [`process_cpu_seconds`] through another interface, whose total the
/// kernel keeps equal to the precise runtime.
#[cfg(all(test, unix))]
pub(crate) fn rusage_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid and writable; RUSAGE_SELF needs nothing else
    // and the call only writes through the pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Resident set size of this process in bytes (Linux: `/proc/self/statm`;
/// elsewhere 0, documented).
pub(crate) fn rss_bytes() -> u64 {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read;
        let mut buf = [0u8; 128];
        let n = std::fs::File::open("/proc/self/statm")
            .and_then(|mut f| f.read(&mut buf))
            .unwrap_or(0);
        let resident_pages = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        resident_pages * page_size()
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let before = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_ns() > before);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn rss_is_plausible() {
        let rss = rss_bytes();
        assert!(rss > 1 << 20, "rss {rss} bytes");
    }
}
