//! A vector stored in fixed-size blocks. Growing it never moves what is already stored, so a
//! queue or index of millions of entries grows without a stall that copies all of them on
//! the shard thread.

const BLOCK: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct BlockVec<T> {
    blocks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for BlockVec<T> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Copy> BlockVec<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, v: T) {
        if self.blocks.last().is_none_or(|b| b.len() == BLOCK) {
            self.blocks.push(Vec::with_capacity(BLOCK));
        }
        if let Some(b) = self.blocks.last_mut() {
            b.push(v);
            self.len += 1;
        }
    }

    pub fn get(&self, i: usize) -> Option<T> {
        self.blocks
            .get(i / BLOCK)
            .and_then(|b| b.get(i % BLOCK))
            .copied()
    }

    pub fn last(&self) -> Option<T> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    pub fn truncate(&mut self, n: usize) {
        if n >= self.len {
            return;
        }
        self.blocks.truncate(n.div_ceil(BLOCK));
        if let Some(b) = self.blocks.last_mut() {
            let keep = n - (n.div_ceil(BLOCK) - 1) * BLOCK;
            b.truncate(keep);
        }
        self.len = n;
    }

    /// Entries `[from, to)`, copied out.
    pub fn range(&self, from: usize, to: usize) -> Vec<T> {
        let to = to.min(self.len);
        (from.min(to)..to).filter_map(|i| self.get(i)).collect()
    }

    /// The first index whose entry fails `pred` (entries must be partitioned by it).
    pub fn partition_point(&self, pred: impl Fn(&T) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(v) if pred(&v) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_a_vec(n in 0usize..40_000, cut in 0usize..40_000) {
            let mut b = BlockVec::default();
            let mut v = Vec::new();
            for i in 0..n { b.push(i as u64); v.push(i as u64); }
            prop_assert_eq!(b.len(), v.len());
            prop_assert_eq!(b.range(0, n), v.clone());
            b.truncate(cut);
            v.truncate(cut);
            prop_assert_eq!(b.len(), v.len());
            prop_assert_eq!(b.last(), v.last().copied());
            prop_assert_eq!(b.partition_point(|x| *x < cut as u64 / 2), v.partition_point(|x| *x < cut as u64 / 2));
            b.push(7);
            v.push(7);
            prop_assert_eq!(b.range(0, v.len()), v);
        }
    }
}
