//! The wall clock, read once per run, at its start: every later time in a
//! run file is that start plus a TSC offset, so a wall-clock jump can
//! neither reorder events nor make a duration negative. Tests swap the
//! source (`__private::set_wall_clock`) to show it.

use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, FixedOffset, Local, TimeDelta};

type Source = fn() -> DateTime<Local>;

static SOURCE: RwLock<Source> = RwLock::new(Local::now as Source);

/// The wall-clock time now.
pub(crate) fn now() -> DateTime<Local> {
    let source = *SOURCE.read().unwrap_or_else(PoisonError::into_inner);
    source()
}

/// The time `ns` after `start`, in `start`'s offset from UTC: every time
/// of a run reads in one offset (so the strings sort as the times do, across
/// a DST change), and adding needs no time-zone lookup.
pub(crate) fn after(start: DateTime<FixedOffset>, ns: u64) -> DateTime<FixedOffset> {
    start + TimeDelta::nanoseconds(ns.min(i64::MAX as u64) as i64)
}

/// Replaces the wall clock's source, for tests that fake a jump.
pub fn set_wall_clock(source: fn() -> DateTime<Local>) {
    *SOURCE.write().unwrap_or_else(PoisonError::into_inner) = source;
}
