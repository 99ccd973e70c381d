//! Prometheus metrics kept in the process, and the text exposition `/metrics` writes.
//!
//! Counts that live in the database (devices, rollouts and jobs by state) are read when
//! `/metrics` is scraped; what only the process sees (how long each step of a device job
//! took, how soon a reloading device was seen down and back) is kept here, in histograms
//! observed by the rollout engine. A histogram starts empty with the process, as Prometheus
//! expects of any counter: `rate()` and `histogram_quantile()` handle the reset.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::device::ReloadSeen;

/// Upper bounds of `fleetup_step_duration_seconds`, in seconds: a `save` takes a second, a
/// copy over a WAN or a chassis' `wait_back` most of an hour.
pub(crate) const STEP_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// Upper bounds of `fleetup_reload_detection_seconds`: a device drops its sessions within
/// seconds of `reload`, and comes back in one to twenty minutes.
pub(crate) const RELOAD_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

/// A step of a device job ended: `done` or `failed` (skipped steps did no work and are not
/// observed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepResult {
    Done,
    Failed,
}

impl StepResult {
    fn as_str(self) -> &'static str {
        match self {
            StepResult::Done => "done",
            StepResult::Failed => "failed",
        }
    }
}

/// The rollout engine's histograms; cheap to clone, shared by the engine and `/metrics`.
#[derive(Debug, Clone)]
pub(crate) struct RolloutMetrics(Arc<Histograms>);

#[derive(Debug)]
struct Histograms {
    steps: Histogram,
    reloads: Histogram,
}

impl Default for RolloutMetrics {
    fn default() -> Self {
        RolloutMetrics(Arc::new(Histograms {
            steps: Histogram::new(&["step", "platform", "result"], STEP_BUCKETS),
            reloads: Histogram::new(&["phase", "platform"], RELOAD_BUCKETS),
        }))
    }
}

impl RolloutMetrics {
    /// A step of a device job ended after `took`.
    pub(crate) fn step_ended(
        &self,
        step: &str,
        platform: &str,
        result: StepResult,
        took: Duration,
    ) {
        self.0
            .steps
            .observe(&[step, platform, result.as_str()], took.as_secs_f64());
    }

    /// A reloading device was seen down or back up, `after` the reload was sent.
    pub(crate) fn reload_seen(&self, seen: ReloadSeen, platform: &str, after: Duration) {
        self.0
            .reloads
            .observe(&[seen.as_str(), platform], after.as_secs_f64());
    }

    /// Write both histograms.
    pub(crate) fn write(&self, out: &mut Exposition) {
        out.histogram(
            "fleetup_step_duration_seconds",
            "How long each step of a device job took, by step, platform and result (done, failed).",
            &self.0.steps,
        );
        out.histogram(
            "fleetup_reload_detection_seconds",
            "Seconds from sending a reload until the device was seen down (phase=down) and back up, logged in (phase=up).",
            &self.0.reloads,
        );
    }
}

/// One histogram with a fixed set of label names; a series per set of label values.
#[derive(Debug)]
pub(crate) struct Histogram {
    labels: &'static [&'static str],
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Series>>,
}

#[derive(Debug, Clone)]
struct Series {
    /// Observations per bucket (not cumulative), the last one above every bound (`+Inf`).
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub(crate) fn new(labels: &'static [&'static str], bounds: &'static [f64]) -> Histogram {
        Histogram {
            labels,
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Count `value` in the series of these label values (as many as the label names).
    pub(crate) fn observe(&self, values: &[&str], value: f64) {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.entry(key).or_insert_with(|| Series {
            buckets: vec![0; self.bounds.len() + 1],
            sum: 0.0,
            count: 0,
        });
        s.buckets[bucket] += 1;
        s.sum += value;
        s.count += 1;
    }

    fn snapshot(&self) -> Vec<(Vec<String>, Series)> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.iter().map(|(k, s)| (k.clone(), s.clone())).collect()
    }
}

/// The Prometheus text exposition format (version 0.0.4), written a family at a time.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

/// A metric family's type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

impl Exposition {
    /// Start a family: its `# HELP` and `# TYPE` lines.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        self.head(name, kind, help);
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family just started.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A whole histogram family: per series its cumulative `_bucket`s (with `le`), `_sum` and
    /// `_count`.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.head(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (values, s) in h.snapshot() {
            let labels: Vec<(&str, &str)> = h
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            let mut cumulative = 0;
            for (i, n) in s.buckets.iter().enumerate() {
                cumulative += n;
                let le = h
                    .bounds
                    .get(i)
                    .map_or("+Inf".to_string(), |b| b.to_string());
                let mut with_le = labels.clone();
                with_le.push(("le", &le));
                self.sample(&bucket, &with_le, cumulative);
            }
            self.sample(&format!("{name}_sum"), &labels, s.sum);
            self.sample(&format!("{name}_count"), &labels, s.count);
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A label value as the exposition format writes it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_writes_cumulative_buckets_sum_and_count() {
        let h = Histogram::new(&["step"], &[1.0, 10.0]);
        h.observe(&["copy"], 0.5);
        h.observe(&["copy"], 5.0);
        h.observe(&["copy"], 50.0);
        h.observe(&["save"], 1.0);
        let mut out = Exposition::default();
        out.histogram("x_seconds", "Help \"quoted\".", &h);
        assert_eq!(
            out.finish(),
            "# HELP x_seconds Help \"quoted\".\n\
             # TYPE x_seconds histogram\n\
             x_seconds_bucket{step=\"copy\",le=\"1\"} 1\n\
             x_seconds_bucket{step=\"copy\",le=\"10\"} 2\n\
             x_seconds_bucket{step=\"copy\",le=\"+Inf\"} 3\n\
             x_seconds_sum{step=\"copy\"} 55.5\n\
             x_seconds_count{step=\"copy\"} 3\n\
             x_seconds_bucket{step=\"save\",le=\"1\"} 1\n\
             x_seconds_bucket{step=\"save\",le=\"10\"} 1\n\
             x_seconds_bucket{step=\"save\",le=\"+Inf\"} 1\n\
             x_seconds_sum{step=\"save\"} 1\n\
             x_seconds_count{step=\"save\"} 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.family("x", Kind::Gauge, "h");
        out.sample("x", &[("site", "a\"b\\c\nd")], 1);
        assert!(
            out.finish().ends_with("x{site=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "escaped"
        );
    }

    #[test]
    fn the_buckets_rise() {
        for b in [STEP_BUCKETS, RELOAD_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
            assert_eq!(b.last(), Some(&3600.0));
        }
    }
}
