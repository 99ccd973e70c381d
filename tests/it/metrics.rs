//! `/metrics` read as Prometheus reads it: a parser of the text exposition format; the Grafana
//! dashboard (`docs/grafana/fleetup.json`) and `docs/observability.md` checked against a live
//! service; and a lab rollout whose rollouts, jobs, step durations and reload detection show
//! in the metrics afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use fleetup::sim::WhileReloading;
use serde_json::Value;

use crate::support::{Rig, TestApp, playbook};

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A whole exposition: each family's type (from its `# TYPE` line) and every sample.
#[derive(Debug, Default)]
pub struct Metrics {
    pub families: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

impl Metrics {
    /// Parse the text exposition format (0.0.4); panics, naming the line, on anything malformed,
    /// on a sample before its family's `# TYPE`, and on a family declared twice.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for (n, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line:?}", n + 1);
            if line.trim().is_empty() || line.starts_with("# HELP ") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    panic!("a bad TYPE line, {}", at());
                };
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "unknown type, {}",
                    at()
                );
                let before = m.families.insert(name.to_string(), kind.to_string());
                assert!(before.is_none(), "family declared twice, {}", at());
                continue;
            }
            assert!(
                !line.starts_with('#'),
                "a comment of no known kind, {}",
                at()
            );
            let sample = parse_sample(line).unwrap_or_else(|why| panic!("{why}, {}", at()));
            assert!(
                m.family_of(&sample.name).is_some(),
                "a sample of no declared family, {}",
                at()
            );
            m.samples.push(sample);
        }
        m
    }

    /// The family a sample name belongs to: itself, or a histogram's `_bucket`/`_sum`/`_count`.
    pub fn family_of(&self, sample: &str) -> Option<&str> {
        if let Some((name, _)) = self.families.get_key_value(sample) {
            return Some(name);
        }
        HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
            let base = sample.strip_suffix(suffix)?;
            let (name, kind) = self.families.get_key_value(base)?;
            (kind == "histogram").then_some(name.as_str())
        })
    }

    /// The samples of `name` whose labels include `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the samples of `name` whose labels include `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The one sample of `name` with exactly `labels`.
    pub fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .matching(name, labels)
            .filter(|s| s.labels.len() == labels.len())
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0].value
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        loop {
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if key.is_empty()
                || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || chars.next().map(|(_, c)| c) != Some('"')
            {
                return Err(format!("a bad label name {key:?}"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("a bad escape \\{other:?}")),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err("an unterminated label value".into());
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            if let Some((_, ',')) = chars.peek() {
                chars.next();
            }
        }
        let end = end.ok_or("no closing brace")?;
        rest = &after[end..];
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("timestamp {ts:?}: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("more after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `GET /metrics`, parsed.
pub async fn scrape(get: reqwest::RequestBuilder) -> Metrics {
    let r = get.send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Metrics::parse(&r.text().await.unwrap())
}

#[test]
fn the_parser_reads_escapes_histograms_and_refuses_what_is_malformed() {
    let m = Metrics::parse(
        "# HELP a_total A.\n# TYPE a_total counter\n\
         a_total{site=\"x\\\"y\\\\z\\nw\",k=\"\"} 3 1700000000000\n\
         # TYPE h_seconds histogram\n\
         h_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 1.5\nh_seconds_count 2\n",
    );
    assert_eq!(m.one("a_total", &[("site", "x\"y\\z\nw"), ("k", "")]), 3.0);
    assert_eq!(m.family_of("h_seconds_bucket"), Some("h_seconds"));
    assert_eq!(m.family_of("a_total_count"), None);
    assert_eq!(m.sum("h_seconds_sum", &[]), 1.5);
    for bad in [
        "x 1\n",
        "# TYPE x gauge\nx{a=\"1} 1\n",
        "# TYPE x gauge\nx{a=1} 1\n",
        "# TYPE x gauge\nx{a=\"1\",a=\"2\"} 1\n",
        "# TYPE x gauge\nx one\n",
        "# TYPE x gauge\n# TYPE x gauge\n",
    ] {
        let parsed = std::panic::catch_unwind(|| Metrics::parse(bad));
        assert!(parsed.is_err(), "accepted {bad:?}");
    }
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every PromQL text of a dashboard: panel targets' `expr`, variables' `definition` and
/// `query`.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_and_the_docs_name_every_metric_the_service_serves() {
    let app = TestApp::start().await;
    let m = scrape(app.get("/metrics")).await;
    let dashboard: Value = serde_json::from_str(&read("docs/grafana/fleetup.json"))
        .expect("docs/grafana/fleetup.json is JSON");

    // Importable: the data source is an input, every panel and query uses it.
    assert_eq!(dashboard["schemaVersion"], 39);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut charts = 0;
    for p in panels {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "panel id twice: {p}");
        if p["type"] == "row" {
            continue;
        }
        charts += 1;
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
            assert!(
                t["expr"].as_str().is_some_and(|e| e.contains("fleetup_")),
                "{}",
                p["title"]
            );
        }
    }
    assert!(charts >= 15, "{charts} panels");

    let mut texts = Vec::new();
    queries(&dashboard, &mut texts);
    let name = regex::Regex::new(r"fleetup_[a-z_]+").unwrap();
    let used: BTreeSet<String> = texts
        .iter()
        .flat_map(|t| name.find_iter(t).map(|n| n.as_str().to_string()))
        .collect();
    let mut wrong = Vec::new();
    // Every name the dashboard queries is served: a gauge or counter by its own name (a fresh
    // service may have no sample of it yet, but declares it), a histogram by its series.
    for n in &used {
        match m.families.get(n.as_str()).map(String::as_str) {
            Some("histogram") => wrong.push(format!(
                "{n} is a histogram: query {n}_bucket, _sum or _count"
            )),
            Some(_) => {}
            None if m.family_of(n).is_some() => {}
            None => wrong.push(format!("{n}: no such metric in /metrics")),
        }
    }
    // Every family served is on the dashboard and in docs/observability.md with its type.
    let doc = read("docs/observability.md");
    for (family, kind) in &m.families {
        let on_dashboard = if kind == "histogram" {
            HISTOGRAM_SUFFIXES
                .iter()
                .any(|s| used.contains(&format!("{family}{s}")))
        } else {
            used.contains(family)
        };
        if !on_dashboard {
            wrong.push(format!("{family} is on no panel of the dashboard"));
        }
        let row = format!("| `{family}` | {kind} |");
        if !doc.lines().any(|l| l.starts_with(&row)) {
            wrong.push(format!(
                "docs/observability.md has no row {row} in its table"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n  {}", wrong.join("\n  "));
    for f in [
        "fleetup_rollouts",
        "fleetup_jobs",
        "fleetup_step_duration_seconds",
        "fleetup_reload_detection_seconds",
        "fleetup_compliance_devices",
        "fleetup_webhook_deliveries_total",
    ] {
        assert!(m.families.contains_key(f), "{f}");
    }

    // Every rollout and job state is listed, at zero on a fresh service.
    let vocabulary: Value = app
        .get("/api/v1/vocabulary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (family, list) in [
        ("fleetup_rollouts", "rollout_states"),
        ("fleetup_jobs", "job_states"),
    ] {
        let states: Vec<&str> = vocabulary[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert!(states.len() >= 7, "{states:?}");
        assert_eq!(m.matching(family, &[]).count(), states.len(), "{family}");
        for s in states {
            assert_eq!(m.one(family, &[("state", s)]), 0.0, "{family} {s}");
        }
    }
    app.service.stop().await;
}

/// The cumulative buckets of every series of a histogram rise, and the `+Inf` one is its count.
fn assert_histogram_whole(m: &Metrics, family: &str) {
    let count = format!("{family}_count");
    let bucket = format!("{family}_bucket");
    for series in m.matching(&count, &[]) {
        let labels: Vec<(&str, &str)> = series
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut buckets: Vec<(f64, f64)> = m
            .matching(&bucket, &labels)
            .filter(|b| b.labels.len() == labels.len() + 1)
            .map(|b| {
                let le = &b.labels["le"];
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, b.value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.len() > 5, "{family} {labels:?}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{family} {labels:?}: {buckets:?}"
        );
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, series.value)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_shows_in_rollouts_jobs_step_durations_and_reload_detection() {
    // The devices refuse connections while they reload, for two seconds: the wait sees each
    // one down at its first probe, and back only after its boot.
    let boot = Duration::from_secs(2);
    let rig = Rig::start(2, |c| {
        c.boot_time = boot;
        c.while_reloading = WhileReloading::Refuse;
    })
    .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 2\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let m = scrape(rig.get("/metrics")).await;

    assert_eq!(m.one("fleetup_rollouts", &[("state", "completed")]), 1.0);
    assert_eq!(m.sum("fleetup_rollouts", &[]), 1.0);
    assert_eq!(m.one("fleetup_jobs", &[("state", "succeeded")]), 2.0);
    assert_eq!(m.sum("fleetup_jobs", &[]), 2.0);

    // Each step done, as many times as the rollout's events say it was done, on `ios`.
    let mut done: BTreeMap<String, f64> = BTreeMap::new();
    for e in rig.events(&id).await {
        assert_ne!(e["kind"], "step_failed", "{e}");
        if e["kind"] == "step_done" {
            *done
                .entry(e["step"].as_str().unwrap().to_string())
                .or_default() += 1.0;
        }
    }
    for step in [
        "connect",
        "copy",
        "verify_md5",
        "set_boot",
        "save",
        "reload",
        "wait_back",
    ] {
        assert_eq!(done.get(step), Some(&2.0), "{step}: {done:?}");
    }
    let count = "fleetup_step_duration_seconds_count";
    for (step, n) in &done {
        let labels = [
            ("step", step.as_str()),
            ("platform", "ios"),
            ("result", "done"),
        ];
        assert_eq!(m.one(count, &labels), *n, "{step}");
    }
    assert_eq!(m.sum(count, &[]), done.values().sum::<f64>());
    assert_eq!(m.sum(count, &[("result", "failed")]), 0.0);
    assert!(m.sum("fleetup_step_duration_seconds_sum", &[("step", "copy")]) > 0.0);
    // Waiting for a device that boots for two seconds takes most of that (the boot begins
    // as the device drops the session, a moment before fleetup notes the reload as sent).
    let waited = m.sum(
        "fleetup_step_duration_seconds_sum",
        &[("step", "wait_back")],
    );
    assert!(waited >= 2.0 * (boot.as_secs_f64() - 1.0), "{waited}");
    assert_histogram_whole(&m, "fleetup_step_duration_seconds");

    // Both reloads were seen: down first, up after the boot.
    let reload = "fleetup_reload_detection_seconds";
    let (count, sum) = (format!("{reload}_count"), format!("{reload}_sum"));
    assert_eq!(
        m.one(&count, &[("phase", "down"), ("platform", "ios")]),
        2.0
    );
    assert_eq!(m.one(&count, &[("phase", "up"), ("platform", "ios")]), 2.0);
    assert_eq!(m.matching(&count, &[]).count(), 2);
    let (down, up) = (
        m.one(&sum, &[("phase", "down"), ("platform", "ios")]),
        m.one(&sum, &[("phase", "up"), ("platform", "ios")]),
    );
    assert!(up >= 2.0 * (boot.as_secs_f64() - 1.0), "up {up}");
    assert!(down < up, "down {down}, up {up}");
    assert_histogram_whole(&m, reload);
    rig.stop().await;
}
