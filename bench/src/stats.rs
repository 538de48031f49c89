//! Small helpers shared by the benchmarks.

use std::path::Path;

/// Median and 99th percentile of a sample, in the sample's unit.
pub struct Stats {
    pub median: f64,
    pub p99: f64,
}

/// Percentiles of `ms` (nearest rank).
pub fn of(mut ms: Vec<f64>) -> Stats {
    ms.sort_by(|a, b| a.total_cmp(b));
    if ms.is_empty() {
        return Stats {
            median: f64::NAN,
            p99: f64::NAN,
        };
    }
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

pub fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn read_trim(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
