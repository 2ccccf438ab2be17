//! The hot side: what runs on the user's threads. Timers take raw clock values
//! and count each region in the thread's tally, handing a fixed-size record to
//! the thread's ring only for events and resources (count values are
//! aggregated on the thread too, in `counts`); nothing here
//! allocates, locks, hashes or does I/O once a thread has its ring.

pub(crate) mod counts;
pub(crate) mod ring;
pub(crate) mod sync;
pub(crate) mod tally;
pub(crate) mod thread;
pub(crate) mod timer;
