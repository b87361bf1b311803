//! A histogram of durations kept in atomics. prometheus-client's own
//! histogram takes a mutex on every observation, and every request observes
//! one: this one is an atomic add per bucket and one for the sum, and
//! leaves the text format to prometheus-client.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
};

/// Cheap to clone: clones count into the same buckets.
#[derive(Debug, Clone)]
pub struct DurationHistogram(Arc<Buckets>);

#[derive(Debug)]
struct Buckets {
    /// The upper bounds in seconds, ascending; a last bucket takes the rest.
    bounds: &'static [f64],
    /// One count per bucket (not cumulative), the last for `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Nanoseconds: integers add exactly with one atomic instruction.
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// `bounds` are seconds, ascending.
    pub fn new(bounds: &'static [f64]) -> DurationHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        DurationHistogram(Arc::new(Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        // A bound is inclusive: `le="0.005"` counts 5 ms.
        let bucket = self.0.bounds.partition_point(|&bound| bound < secs);
        self.0.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so the two always agree even while
        // requests are observed during the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = Duration::from_nanos(self.0.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_they_do_not_pass() {
        let histogram = DurationHistogram::new(&[0.001, 0.01]);
        let mut registry = Registry::default();
        registry.register("took", "how long", histogram.clone());

        for ms in [0, 1, 2, 10, 11, 5000] {
            histogram.observe(Duration::from_millis(ms));
        }
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();

        for line in [
            "took_sum 5.024",
            "took_count 6",
            r#"took_bucket{le="0.001"} 2"#,
            r#"took_bucket{le="0.01"} 4"#,
            r#"took_bucket{le="+Inf"} 6"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
