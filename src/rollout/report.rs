//! The report of a rollout: per device, old and new version, timings and result.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::model::{DeviceJob, Event, EventKind, RolloutRecord};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct StepTiming {
    pub step: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub result: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) struct DeviceReport {
    pub device: String,
    pub wave: usize,
    pub result: String,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    pub image: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub seconds: Option<f64>,
    pub attempts: u32,
    pub error: Option<String>,
    pub steps: Vec<StepTiming>,
    /// `checks.compare`, before → after, one line per comparison
    /// (`up interfaces 24 → 23 (GigabitEthernet1/0/3 down)`), from the last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub id: String,
    pub name: String,
    pub state: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub(crate) devices: Vec<DeviceReport>,
}

fn seconds_between(a: &str, b: &str) -> Option<f64> {
    let a: jiff::Timestamp = a.parse().ok()?;
    let b: jiff::Timestamp = b.parse().ok()?;
    Some(a.duration_until(b).as_secs_f64())
}

/// Step timings of every device, built from the `step_started` / `step_done` /
/// `step_failed` / `step_skipped` events in the order they were recorded. It can be fed in
/// parts: the rollout view adds only the events recorded since it last looked.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepTimings {
    by_device: HashMap<String, Vec<StepTiming>>,
    /// The id of the last event applied (events are numbered in the order they were stored).
    pub last_event: i64,
}

impl StepTimings {
    pub fn apply(&mut self, e: &Event) {
        self.last_event = self.last_event.max(e.id);
        let (Some(device), Some(step)) = (&e.device, &e.step) else {
            return;
        };
        match e.kind {
            EventKind::StepStarted => {
                self.by_device
                    .entry(device.clone())
                    .or_default()
                    .push(StepTiming {
                        step: step.clone(),
                        started_at: e.at.clone(),
                        finished_at: None,
                        seconds: None,
                        result: None,
                    })
            }
            EventKind::StepDone | EventKind::StepFailed | EventKind::StepSkipped => {
                if let Some(t) = self.by_device.get_mut(device).and_then(|out| {
                    out.iter_mut()
                        .rev()
                        .find(|t| &t.step == step && t.finished_at.is_none())
                }) {
                    t.seconds = seconds_between(&t.started_at, &e.at);
                    t.finished_at = Some(e.at.clone());
                    t.result = Some(e.kind.as_str().trim_start_matches("step_").to_string());
                }
            }
            _ => {}
        }
    }

    /// One device's timings, oldest step first.
    pub fn of(&self, device: &str) -> &[StepTiming] {
        self.by_device.get(device).map_or(&[], Vec::as_slice)
    }

    pub fn into_map(self) -> HashMap<String, Vec<StepTiming>> {
        self.by_device
    }
}

/// Step timings of every device from a rollout's events, in one pass over them.
pub(crate) fn step_timings(events: &[Event]) -> HashMap<String, Vec<StepTiming>> {
    let mut t = StepTimings::default();
    for e in events {
        t.apply(e);
    }
    t.into_map()
}

/// Each device's `checks.compare` lines (`compared: …` step events); a new state taken
/// before the upgrade (a retry) starts the device's list again.
pub(crate) fn comparisons(events: &[Event]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for e in events {
        let Some(device) = &e.device else { continue };
        if e.message.starts_with("state before the upgrade:") {
            out.remove(device);
        } else if let Some(line) = e.message.strip_prefix("compared: ") {
            out.entry(device.clone())
                .or_default()
                .push(line.to_string());
        }
    }
    out
}

/// `events`: the rollout's step events (or all of its events).
pub(crate) fn build(r: &RolloutRecord, jobs: &[DeviceJob], events: &[Event]) -> Report {
    let mut timings = step_timings(events);
    let mut compared = comparisons(events);
    Report {
        id: r.id.to_string(),
        name: r.name.clone(),
        state: r.state.to_string(),
        created_at: r.created_at.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        devices: jobs
            .iter()
            .map(|j| DeviceReport {
                device: j.device.clone(),
                wave: j.wave,
                result: j.state.to_string(),
                old_version: j.old_version.clone(),
                new_version: j.new_version.clone(),
                image: j.image.clone(),
                started_at: j.started_at.clone(),
                finished_at: j.finished_at.clone(),
                seconds: match (&j.started_at, &j.finished_at) {
                    (Some(a), Some(b)) => seconds_between(a, b),
                    _ => None,
                },
                attempts: j.attempts,
                error: j.error.clone(),
                steps: timings.remove(&j.device).unwrap_or_default(),
                compared: compared.remove(&j.device).unwrap_or_default(),
            })
            .collect(),
    }
}

/// A CSV field, quoted when it holds a separator, a quote or a line break (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line per device, for spreadsheets and change tickets.
pub(crate) fn to_csv(report: &Report) -> String {
    let mut out = String::from(
        "device,wave,result,old_version,new_version,image,started_at,finished_at,seconds,attempts,error,compared\n",
    );
    for d in &report.devices {
        let fields = [
            d.device.clone(),
            d.wave.to_string(),
            d.result.clone(),
            d.old_version.clone().unwrap_or_default(),
            d.new_version.clone().unwrap_or_default(),
            d.image.clone(),
            d.started_at.clone().unwrap_or_default(),
            d.finished_at.clone().unwrap_or_default(),
            d.seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
            d.attempts.to_string(),
            d.error.clone().unwrap_or_default(),
            d.compared.join("; "),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, device: &str, kind: EventKind, message: &str) -> Event {
        Event {
            id,
            rollout_id: super::super::model::RolloutId::new("r-1"),
            at: "2026-12-05T01:00:00Z".into(),
            device: Some(device.into()),
            kind,
            step: Some("post_check".into()),
            message: message.into(),
            data: None,
        }
    }

    #[test]
    fn comparisons_are_the_last_attempts_per_device() {
        let events = [
            event(
                1,
                "sw1",
                EventKind::StepDone,
                "state before the upgrade: up interfaces 3",
            ),
            event(
                2,
                "sw1",
                EventKind::StepFailed,
                "compared: up interfaces 3 → 2 (Gi1/0/1 down)",
            ),
            event(
                3,
                "sw2",
                EventKind::StepDone,
                "compared: routes 812 → 812 (+0%, tolerance 5%)",
            ),
            event(4, "sw1", EventKind::StepDone, "running 15.2(7)E8"),
            // A retry takes the state again: the first attempt's lines are dropped.
            event(
                5,
                "sw1",
                EventKind::StepDone,
                "state before the upgrade: up interfaces 2",
            ),
            event(
                6,
                "sw1",
                EventKind::StepDone,
                "compared: up interfaces 2 → 2",
            ),
        ];
        let c = comparisons(&events);
        assert_eq!(c["sw1"], ["up interfaces 2 → 2"]);
        assert_eq!(c["sw2"], ["routes 812 → 812 (+0%, tolerance 5%)"]);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
