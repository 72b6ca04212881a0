//! A small log-bucketed latency histogram (HDR-like: 64 linear sub-buckets per power of
//! two, so every recorded value is within ~1.6 % of its bucket's midpoint).
//!
//! One histogram per connection task, merged at the end: recording is a few integer
//! operations and no synchronisation.

/// Sub-bucket bits: values below `2^SUB_BITS` are exact; above, 64 buckets per octave.
const SUB_BITS: u32 = 7;
const HALF: u64 = 1 << (SUB_BITS - 1);
/// Enough buckets for any `u64` value.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 2) * HALF as usize;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    if v < (1 << SUB_BITS) {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = e - SUB_BITS + 1;
    let top = v >> shift; // in [HALF, 2*HALF)
    ((u64::from(e - SUB_BITS + 2)) * HALF + (top - HALF)) as usize
}

/// Lowest value and width of bucket `idx`.
fn bucket_range(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < (1 << SUB_BITS) {
        return (idx, 1);
    }
    let group = idx / HALF; // >= 2
    let m = idx % HALF;
    let shift = (group - 2 + 1) as u32; // e - SUB_BITS + 1 with e = group + SUB_BITS - 2
    ((HALF + m) << shift, 1u64 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        let idx = index_of(v);
        if let Some(c) = self.counts.get_mut(idx) {
            *c += 1;
        }
        self.total += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Value at quantile `q` (0..=1): the midpoint of the bucket holding the
    /// `ceil(q * n)`-th smallest sample, clamped to the exact min/max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_range(idx);
                let mid = lo + width / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_cover_values() {
        let mut prev = 0usize;
        for v in (0u64..100_000).chain([1 << 40, u64::MAX / 3, u64::MAX]) {
            let idx = index_of(v);
            assert!(idx >= prev || v >= 1 << 40, "index went backwards at {v}");
            prev = idx;
            assert!(idx < BUCKETS);
            let (lo, width) = bucket_range(idx);
            assert!(lo <= v && v - lo < width, "v={v} lo={lo} width={width}");
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.quantile(1.0), 10_000_000);
        let mut other = Histogram::new();
        other.record(1);
        h.merge(&other);
        assert_eq!(h.count(), 10_001);
        assert_eq!(h.min(), 1);
    }
}
