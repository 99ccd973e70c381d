//! The view behind `GET /rollouts/{id}`, kept in memory per rollout and brought up to date
//! from what changed since the last request, not rebuilt from the whole history each time.
//!
//! A dashboard polls this route every second, and fifty of them may watch a rollout of a
//! thousand devices. Each request costs three indexed reads:
//! - the rollout's row (its state is always read fresh);
//! - its `jobs_rev`, a counter the database moves on every write to the rollout's jobs
//!   (triggers on `rollout_devices`, which also stamp the row written with the new count),
//!   so that only the jobs changed since the last request are read again;
//! - the step events recorded after the last one the view applied (events are append-only
//!   and numbered in commit order: writes are serialized on both servers).
//!
//! Transfers are live, in-memory progress and are looked up on every request. Each device's
//! row is kept as JSON and written again only when its job, its steps or its transfer
//! changed: the answer for 2,000 devices is megabytes, most of it the same as a second ago.
//! A view is updated under its own lock, so requests that arrive together do the reads once.
//! At most [`CAPACITY`] views are kept; the least recently used one goes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use super::rollouts::{Progress, progress};
use super::{ApiError, ApiResult, AppState};
use crate::playbook::Plan;
use crate::rollout::model::{DeviceJob, RolloutId, RolloutRecord};
use crate::rollout::report::{StepTiming, StepTimings};
use crate::transfers::TransferInfo;

/// Views kept at once: the rollouts people are watching, with room to spare.
pub(crate) const CAPACITY: usize = 32;

#[derive(Default)]
struct View {
    plan: Option<Arc<Plan>>,
    /// The `jobs_rev` that `jobs` was read at; none before the first read.
    jobs_rev: Option<i64>,
    jobs: Vec<DeviceJob>,
    /// Each device's index in `jobs`.
    at: HashMap<String, usize>,
    timings: StepTimings,
    /// Each job's row as JSON (same index as `jobs`), with the transfer it was written with;
    /// none until written or once its job or steps changed. A row is written again only then,
    /// or when its transfer moved: at 2,000 devices the whole answer is megabytes, and most
    /// rows are the same from one request to the next.
    rows: Vec<Option<Row>>,
}

impl View {
    fn set_jobs(&mut self, jobs: Vec<DeviceJob>) {
        self.at = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.device.clone(), i))
            .collect();
        self.rows = jobs.iter().map(|_| None).collect();
        self.jobs = jobs;
    }

    /// The device's row must be written again.
    fn forget_row(&mut self, device: &str) {
        if let Some(row) = self.at.get(device).and_then(|&i| self.rows.get_mut(i)) {
            *row = None;
        }
    }
}

struct Row {
    transfer: Option<TransferInfo>,
    json: Box<RawValue>,
}

struct Slot {
    view: Arc<tokio::sync::Mutex<View>>,
    used: u64,
}

#[derive(Default)]
pub(crate) struct RolloutViews {
    slots: Mutex<(u64, HashMap<RolloutId, Slot>)>,
}

impl RolloutViews {
    fn slot(&self, id: &RolloutId) -> Arc<tokio::sync::Mutex<View>> {
        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, slots) = &mut *guard;
        *clock += 1;
        let now = *clock;
        if !slots.contains_key(id)
            && slots.len() >= CAPACITY
            && let Some(oldest) = slots
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
        {
            slots.remove(&oldest);
        }
        let slot = slots.entry(id.clone()).or_insert_with(|| Slot {
            view: Arc::default(),
            used: now,
        });
        slot.used = now;
        slot.view.clone()
    }

    /// How many views are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map_or(0, |g| g.1.len())
    }
}

/// A rollout's detail as the API sends it: the JSON of [`super::RolloutDetail`], put
/// together from the view's rows.
pub(crate) struct DetailJson(Vec<u8>);

impl DetailJson {
    pub(crate) fn with_status(self, status: StatusCode) -> Response {
        (status, [(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl IntoResponse for DetailJson {
    fn into_response(self) -> Response {
        self.with_status(StatusCode::OK)
    }
}

/// [`super::RolloutDetail`]'s shape, field for field, with each device row already written.
#[derive(Serialize)]
struct DetailOut<'a> {
    #[serde(flatten)]
    rollout: &'a RolloutRecord,
    progress: Progress,
    skipped: serde_json::Value,
    waves: Vec<WaveOut<'a>>,
}

/// [`super::WaveView`]'s shape.
#[derive(Serialize)]
struct WaveOut<'a> {
    index: usize,
    name: &'a str,
    progress: Progress,
    devices: Vec<&'a RawValue>,
}

/// A device's row as `DeviceRow` writes it, borrowed from the view instead of copied into one.
#[derive(Serialize)]
struct RowOut<'a> {
    #[serde(flatten)]
    job: &'a DeviceJob,
    transfer: Option<&'a TransferInfo>,
    steps: &'a [StepTiming],
}

/// The rollout's detail: `r` as just read (its plan need not be), with its waves, jobs,
/// transfers and step timings.
pub(super) async fn detail(state: &AppState, r: RolloutRecord) -> ApiResult<DetailJson> {
    let slot = state.views.slot(&r.id);
    let mut guard = slot.lock().await;
    let v = &mut *guard;
    let plan = match &v.plan {
        Some(p) => p.clone(),
        None => {
            // The record comes without its plan (it is read once per view, here).
            let text = state.db.rollout_plan(r.id.as_str()).await?;
            let p: Plan = serde_json::from_str(&text)
                .map_err(|e| ApiError::internal("reading the rollout plan", &e))?;
            v.plan.insert(Arc::new(p)).clone()
        }
    };
    // The counter before the jobs: a write between the two reads makes the next request read
    // the jobs again, never a view older than its counter.
    let rev = state.db.jobs_rev(r.id.as_str()).await?;
    match v.jobs_rev {
        Some(seen) if seen == rev => {}
        Some(seen) => {
            // Only the rows changed since: each keeps the rev of its last change.
            let changed = state.db.jobs_changed_since(r.id.as_str(), seen).await?;
            let mut whole = false;
            for j in changed {
                let i = v.at.get(&j.device).copied();
                match i.and_then(|i| Some((i, v.jobs.get_mut(i)?))) {
                    Some((i, old)) if old.wave == j.wave && old.position == j.position => {
                        if *old != j {
                            *old = j;
                            if let Some(row) = v.rows.get_mut(i) {
                                *row = None;
                            }
                        }
                    }
                    // A device new to the rollout, or moved: read the whole list again.
                    _ => whole = true,
                }
            }
            if whole {
                v.set_jobs(state.db.jobs(r.id.as_str()).await?);
            }
            v.jobs_rev = Some(rev);
        }
        None => {
            v.set_jobs(state.db.jobs(r.id.as_str()).await?);
            v.jobs_rev = Some(rev);
        }
    }
    let after = v.timings.last_event;
    for e in state
        .db
        .step_timing_events_after(r.id.as_str(), after)
        .await?
    {
        v.timings.apply(&e);
        if let Some(device) = &e.device {
            v.forget_row(device);
        }
    }

    let mut transfers = state.transfers.of_rollout(r.id.as_str());
    for (j, row) in v.jobs.iter().zip(v.rows.iter_mut()) {
        let transfer = transfers.remove(&j.device);
        if row.as_ref().is_some_and(|r| r.transfer == transfer) {
            continue;
        }
        let json = serde_json::value::to_raw_value(&RowOut {
            job: j,
            transfer: transfer.as_ref(),
            steps: v.timings.of(&j.device),
        })
        .map_err(|e| ApiError::internal("writing a device row", &e))?;
        *row = Some(Row { transfer, json });
    }

    let waves = plan
        .waves
        .iter()
        .map(|w| {
            let in_wave = || {
                v.jobs
                    .iter()
                    .zip(&v.rows)
                    .filter(|(j, _)| j.wave == w.index)
            };
            WaveOut {
                index: w.index,
                name: &w.name,
                progress: progress(in_wave().map(|(j, _)| j)),
                devices: in_wave()
                    .filter_map(|(_, row)| row.as_ref().map(|r| &*r.json))
                    .collect(),
            }
        })
        .collect();
    let out = DetailOut {
        progress: progress(v.jobs.iter()),
        skipped: serde_json::to_value(&plan.skipped).unwrap_or_default(),
        rollout: &r,
        waves,
    };
    serde_json::to_vec(&out)
        .map(DetailJson)
        .map_err(|e| ApiError::internal("writing the rollout", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_capacity_views_dropping_the_least_recently_used() {
        let views = RolloutViews::default();
        let ids: Vec<RolloutId> = (0..=CAPACITY)
            .map(|i| RolloutId::new(format!("r-{i}")))
            .collect();
        let first = views.slot(&ids[0]);
        for id in &ids[1..CAPACITY] {
            views.slot(id);
        }
        // r-0 used again: r-1 is now the least recently used.
        assert!(Arc::ptr_eq(&first, &views.slot(&ids[0])));
        let second = views.slot(&ids[1]);
        views.slot(&ids[0]);
        for id in &ids[2..CAPACITY] {
            views.slot(id);
        }
        views.slot(&ids[CAPACITY]);
        assert_eq!(views.len(), CAPACITY);
        assert!(
            Arc::ptr_eq(&first, &views.slot(&ids[0])),
            "the most used view was kept"
        );
        assert!(
            !Arc::ptr_eq(&second, &views.slot(&ids[1])),
            "the least recently used view was dropped and made anew"
        );
        assert_eq!(views.len(), CAPACITY);
    }
}
