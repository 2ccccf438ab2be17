//! The hot side: what runs on the user's threads. Timers take raw clock values
//! and hand fixed-size records to the thread's ring; nothing here allocates,
//! locks, hashes or does I/O once a thread has its ring.

pub(crate) mod ring;
pub(crate) mod thread;
pub(crate) mod timer;
