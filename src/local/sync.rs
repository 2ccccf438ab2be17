//! The atomics and cells of the recording side's lock-free protocol (the
//! ring's and the tally's), from std in every normal build and from `loom`
//! in the unit tests under `cfg(loom)`, where the model tests in
//! [`super::ring`] and [`super::tally`] explore every interleaving of a
//! producer and the collector. (`loom` is a dev-dependency,
//! so the library built with `--cfg loom` but not for its tests keeps std's,
//! as tokio's does.)
//!
//! In a normal build this is a re-export of std's types plus a cell whose
//! `with`/`with_mut` are `#[inline(always)]` calls of a closure on std's raw
//! pointer, so the hot path compiles to what it did before. The cell has
//! loom's shape (access through a closure, not a raw `get`) so that loom can
//! check every slot access: a read racing a write fails the model.

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(test, loom))]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(all(test, loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// std's `UnsafeCell` with loom's access methods.
#[cfg(not(all(test, loom)))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(all(test, loom)))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a pointer for reading the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a pointer for writing the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
