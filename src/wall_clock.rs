//! The wall clock, read once per run, at its start: every later time in a
//! run file is that start plus a TSC offset, so a wall-clock jump can
//! neither reorder events nor make a duration negative. Tests swap the
//! source (`__private::set_wall_clock`) to show it.

use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Local};

type Source = fn() -> DateTime<Local>;

static SOURCE: RwLock<Source> = RwLock::new(Local::now as Source);

/// The wall-clock time now.
pub(crate) fn now() -> DateTime<Local> {
    let source = *SOURCE.read().unwrap_or_else(PoisonError::into_inner);
    source()
}

/// Replaces the wall clock's source, for tests that fake a jump.
pub fn set_wall_clock(source: fn() -> DateTime<Local>) {
    *SOURCE.write().unwrap_or_else(PoisonError::into_inner) = source;
}
