//! Aggregates for reports: percentiles and failure counts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Nearest-rank percentiles of a sample, in milliseconds (all 0 when `n == 0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of_durations(values: impl IntoIterator<Item = Duration>) -> Percentiles {
        Percentiles::of_ms(values.into_iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    pub fn of_ms(mut ms: Vec<f64>) -> Percentiles {
        if ms.is_empty() {
            return Percentiles::default();
        }
        ms.sort_by(f64::total_cmp);
        Percentiles {
            n: ms.len(),
            p50: nearest_rank(&ms, 50.0),
            p95: nearest_rank(&ms, 95.0),
            max: ms[ms.len() - 1],
        }
    }
}

/// Nearest rank in a sorted, non-empty sample: the smallest value with at least `p` % of the
/// sample at or below it.
pub fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> T {
    let r = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[r.clamp(1, sorted.len()) - 1]
}

/// Groups failure messages by their first line with digits masked, so "port 40123" and
/// "port 40124" count as one reason.
pub fn count_failures(messages: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in messages {
        let line = m.lines().next().unwrap_or_default();
        let key: String = line
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(200)
            .collect();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::of_ms((1..=100).map(f64::from).collect());
        assert_eq!((p.n, p.p50, p.p95, p.max), (100, 50.0, 95.0, 100.0));
        let p = Percentiles::of_ms(vec![30.0, 10.0, 20.0]);
        assert_eq!((p.p50, p.p95, p.max), (20.0, 30.0, 30.0));
        assert_eq!(Percentiles::of_ms(vec![]), Percentiles::default());
        let p = Percentiles::of_durations([Duration::from_millis(7)]);
        assert_eq!((p.n, p.p50), (1, 7.0));
    }

    #[test]
    fn failures_are_grouped() {
        let f = count_failures(&[
            "POST: HTTP 409".into(),
            "POST: HTTP 503".into(),
            "closed\nmore".into(),
        ]);
        assert_eq!(f.get("POST: HTTP ###"), Some(&2));
        assert_eq!(f.get("closed"), Some(&1));
    }
}
