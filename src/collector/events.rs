//! The open run's event log: which events the run keeps ([`Events`]), the
//! few it holds in memory until no earlier one can still arrive; the rest
//! went to the sinks (`Sink::events`: the run file's sidecar).

use crate::config::Events;

/// One event. Times are nanoseconds since the run's start.
#[derive(Debug)]
pub(crate) enum Event {
    Sample {
        at_ns: u64,
        cpu_percent: f64,
        rss_bytes: u64,
        /// Wall seconds `cpu_percent` covers, ending at `at_ns`.
        window_seconds: f64,
    },
    Timing {
        site: u32,
        thread: u32,
        /// The whole region's, though it may have begun before the run.
        duration_ns: u64,
        end_ns: u64,
        /// Thread CPU ns and RSS change in bytes, for resource-capturing calls.
        resources: Option<(u64, i64)>,
    },
    Counts {
        at_ns: u64,
        thread: u32,
        values: Vec<(u32, i64)>,
    },
}

impl Event {
    /// When the event happened (a region: when it ended).
    pub(crate) fn at_ns(&self) -> u64 {
        match self {
            Event::Sample { at_ns, .. } | Event::Counts { at_ns, .. } => *at_ns,
            Event::Timing { end_ns, .. } => *end_ns,
        }
    }
}

/// Past this many events held (48 bytes each, so 6 MiB), those before the
/// current drain's start go too, not only those before the previous one's.
const MAX_HELD: usize = 1 << 17;

pub(crate) struct EventLog {
    pub(crate) mode: Events,
    /// Region and count events offered (every `EveryNth`'s n-th is kept).
    offered: u64,
    /// Events kept: in the sidecar, held, or lost to a failed append.
    kept: u64,
    /// Events the mode left out.
    refused: u64,
    /// Kept events a failed append lost, and how many appends failed.
    pub(crate) lost: u64,
    pub(crate) write_failures: u64,
    /// Kept events not yet in the sidecar, in arrival order. An event stays
    /// here until a drain has started after the one that brought it: by
    /// then every event of an earlier time has normally come in.
    held: Vec<Event>,
    /// Held events before this time (ns since the start) can go.
    settled_before: u64,
}

impl EventLog {
    pub(crate) fn new(mode: Events) -> EventLog {
        EventLog {
            mode,
            offered: 0,
            kept: 0,
            refused: 0,
            lost: 0,
            write_failures: 0,
            held: Vec::new(),
            settled_before: 0,
        }
    }

    /// Keeps `event` if the mode says so; returns its place among the held
    /// events, valid until the next [`EventLog::settle`].
    pub(crate) fn offer(&mut self, event: Event) -> Option<usize> {
        let keep = match self.mode {
            Events::All => true,
            Events::None => false,
            Events::First(n) => self.kept < n as u64,
            Events::EveryNth(n) => {
                matches!(event, Event::Sample { .. }) || {
                    self.offered += 1;
                    (self.offered - 1).is_multiple_of(n)
                }
            }
        };
        if !keep {
            self.refused += 1;
            return None;
        }
        self.kept += 1;
        self.held.push(event);
        Some(self.held.len() - 1)
    }

    pub(crate) fn held_mut(&mut self, i: usize) -> Option<&mut Event> {
        self.held.get_mut(i)
    }

    /// The events not yet in the sidecar.
    pub(crate) fn held(&self) -> &[Event] {
        &self.held
    }

    /// Whether no event will be kept any more: threads need not send them.
    pub(crate) fn full(&self) -> bool {
        match self.mode {
            Events::First(n) => self.kept >= n as u64,
            Events::None => true,
            Events::All | Events::EveryNth(_) => false,
        }
    }

    /// Events in a file written now.
    pub(crate) fn written(&self) -> u64 {
        self.kept - self.lost
    }

    /// Events the mode left out or a failed append lost.
    pub(crate) fn omitted(&self) -> u64 {
        self.refused + self.lost
    }

    /// Called after each drain that started `drain_ns` after the run's start:
    /// how many held events, sorted by time, are final (`held()[..n]`):
    /// those of a time before the previous drain's start (before this
    /// drain's start when too many are held). The sinks store them, then
    /// [`EventLog::settled`] lets them go.
    pub(crate) fn settle(&mut self, drain_ns: u64) -> usize {
        let before = if self.held.len() > MAX_HELD {
            drain_ns
        } else {
            self.settled_before
        };
        self.settled_before = drain_ns;
        if self.held.is_empty() {
            return 0;
        }
        // Unstable: a stable sort allocates half the events' size each time.
        // Events of one time and thread cannot both be held (one ring's
        // records carry distinct times), so no order is lost that mattered.
        self.held.sort_unstable_by_key(Event::at_ns);
        self.held.partition_point(|e| e.at_ns() < before)
    }

    /// The first `n` held events are stored (`stored`), or lost to a failed
    /// write (counted): either way they are held no more.
    pub(crate) fn settled(&mut self, n: usize, stored: bool) {
        if !stored {
            self.lost += n as u64;
            self.write_failures += 1;
        }
        self.held.drain(..n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ns: u64) -> Event {
        Event::Sample {
            at_ns,
            cpu_percent: 0.0,
            rss_bytes: 0,
            window_seconds: 0.0,
        }
    }

    fn counts(at_ns: u64) -> Event {
        Event::Counts {
            at_ns,
            thread: 0,
            values: Vec::new(),
        }
    }

    #[test]
    fn modes_keep_what_they_say() {
        let kept = |mode| {
            let mut log = EventLog::new(mode);
            let n = (0..10).filter(|&i| log.offer(counts(i)).is_some()).count();
            log.offer(sample(10));
            (n, log.written(), log.omitted(), log.full())
        };
        assert_eq!(kept(Events::First(3)), (3, 3, 8, true));
        assert_eq!(kept(Events::All), (10, 11, 0, false));
        assert_eq!(
            kept(Events::EveryNth(4)),
            (3, 4, 7, false),
            "0, 4, 8 and the sample"
        );
        assert_eq!(kept(Events::None), (0, 0, 11, true));
    }
}
