//! What one scenario run measured, and the numbers derived from it.

use std::time::Duration;

use serde::Serialize;

/// Raw measurements of one run.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Commands (or requests) completed.
    pub ops: u64,
    /// Payload bytes moved (0 when the scenario moves none).
    pub bytes: u64,
    /// Wall time of the timed part.
    pub elapsed: Duration,
    /// Latency of each timed item (a cycle, a batch, one command), in ns.
    pub latencies_ns: Vec<u64>,
    /// The same latencies by command, for scenarios that time commands of
    /// several kinds one by one (in order of first appearance).
    pub per_command: Vec<(&'static str, Vec<u64>)>,
    /// CPU time the backend process spent during the timed part, in ns,
    /// when the bench started it.
    pub backend_cpu_ns: Option<u64>,
}

/// Latency of one kind of command within a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandFigures {
    /// The command.
    pub command: String,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
}

/// The figures a run reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    /// Operations per second.
    pub ops_per_s: f64,
    /// Megabytes (10^6 bytes) per second, if the scenario moves bytes.
    pub mb_per_s: Option<f64>,
    /// Median item latency, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Items timed.
    pub samples: usize,
    /// By command, where the scenario times several kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_command: Vec<CommandFigures>,
    /// The backend's CPU time per operation, µs (all its threads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_cpu_us_per_op: Option<f64>,
}

/// The `q`-quantile (0..=1) of sorted samples (nearest rank).
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Measurement {
    /// The figures.
    pub fn figures(&self) -> Figures {
        let mut lat = self.latencies_ns.clone();
        lat.sort_unstable();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let us = |q| quantile(&lat, q) as f64 / 1000.0;
        Figures {
            ops_per_s: self.ops as f64 / secs,
            mb_per_s: (self.bytes > 0).then(|| self.bytes as f64 / secs / 1e6),
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            samples: lat.len(),
            per_command: self
                .per_command
                .iter()
                .map(|(command, ns)| {
                    let mut ns = ns.clone();
                    ns.sort_unstable();
                    CommandFigures {
                        command: (*command).to_string(),
                        p50_us: quantile(&ns, 0.50) as f64 / 1000.0,
                        p99_us: quantile(&ns, 0.99) as f64 / 1000.0,
                    }
                })
                .collect(),
            backend_cpu_us_per_op: self
                .backend_cpu_ns
                .filter(|_| self.ops > 0)
                .map(|ns| ns as f64 / 1000.0 / self.ops as f64),
        }
    }
}

/// Median and spread of per-round ratios.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    /// Median ratio.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

/// Median and spread of `values`; `None` when empty.
pub fn ratio(values: &[f64]) -> Option<Ratio> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    Some(Ratio {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&[7], 0.999), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn figures_and_ratios() {
        let m = Measurement {
            ops: 1000,
            bytes: 2_000_000,
            elapsed: Duration::from_millis(500),
            latencies_ns: vec![1000; 10],
            per_command: vec![("map", vec![3000, 1000, 2000]), ("unref", vec![5000])],
            backend_cpu_ns: Some(3_000_000),
        };
        let f = m.figures();
        assert_eq!(
            (f.ops_per_s, f.mb_per_s, f.p99_us),
            (2000.0, Some(4.0), 1.0)
        );
        assert_eq!(f.backend_cpu_us_per_op, Some(3.0), "3 ms over 1,000 ops");
        let by = |c: &CommandFigures| (c.command.clone(), c.p50_us, c.p99_us);
        assert_eq!(
            f.per_command.iter().map(by).collect::<Vec<_>>(),
            vec![("map".into(), 2.0, 3.0), ("unref".into(), 5.0, 5.0)]
        );
        let r = ratio(&[1.0, 3.0, 2.0]).unwrap();
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 3.0));
        assert!(ratio(&[]).is_none());
    }
}
