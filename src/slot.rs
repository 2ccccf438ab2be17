//! Vectors indexed by a small id (a site id, a tally row) that grow on demand.

/// The entry at `index`, growing `v` with default entries as needed.
pub(crate) fn slot<T: Default>(v: &mut Vec<T>, index: usize) -> &mut T {
    if v.len() <= index {
        v.resize_with(index + 1, T::default);
    }
    &mut v[index]
}
