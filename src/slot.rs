//! Vectors indexed by a small id (a site id, a tally row) that grow on
//! demand, and sorted sparse vectors of (key, value).

/// The entry at `index`, growing `v` with default entries as needed.
pub(crate) fn slot<T: Default>(v: &mut Vec<T>, index: usize) -> &mut T {
    if v.len() <= index {
        v.resize_with(index + 1, T::default);
    }
    &mut v[index]
}

/// Inserts `adds` (ascending, none of their keys in `v`) into `v` (ascending
/// by key), keeping it ascending: one pass from the back, no allocation
/// beyond `v`'s growth.
pub(crate) fn merge_new<K: Ord + Copy, V: Copy>(v: &mut Vec<(K, V)>, adds: &[(K, V)]) {
    let Some(&filler) = adds.first() else {
        return;
    };
    let (mut i, mut j) = (v.len(), adds.len());
    v.resize(i + j, filler);
    for k in (0..v.len()).rev() {
        if j == 0 {
            break;
        }
        if i > 0 && v[i - 1].0 > adds[j - 1].0 {
            v[k] = v[i - 1];
            i -= 1;
        } else {
            v[k] = adds[j - 1];
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_new_keeps_keys_ascending() {
        let mut v = vec![(2, 'b'), (5, 'e'), (9, 'i')];
        merge_new(&mut v, &[(1, 'a'), (6, 'f'), (7, 'g'), (12, 'l')]);
        assert_eq!(
            v,
            [
                (1, 'a'),
                (2, 'b'),
                (5, 'e'),
                (6, 'f'),
                (7, 'g'),
                (9, 'i'),
                (12, 'l')
            ]
        );
        merge_new(&mut v, &[]);
        assert_eq!(v.len(), 7);
        let mut empty = Vec::new();
        merge_new(&mut empty, &[(3, 'c')]);
        assert_eq!(empty, [(3, 'c')]);
    }
}
