//! The view behind `GET /rollouts/{id}`, kept in memory per rollout and brought up to date
//! from what changed since the last request, not rebuilt from the whole history each time.
//!
//! A dashboard polls this route every second, and fifty of them may watch a rollout of a
//! thousand devices. Each request costs three indexed reads:
//! - the rollout's row (its state is always read fresh);
//! - its `jobs_rev`, a counter the database moves on every write to the rollout's jobs
//!   (triggers on `rollout_devices`), so the jobs are read again only when one changed;
//! - the step events recorded after the last one the view applied (events are append-only
//!   and numbered in commit order: SQLite has one writer at a time).
//!
//! Transfers are live, in-memory progress and are looked up on every request. A view is
//! updated under its own lock, so requests that arrive together do the reads once. At most
//! [`CAPACITY`] views are kept; the least recently used one goes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::rollouts::{DeviceRow, RolloutDetail, WaveView, progress};
use super::{ApiError, ApiResult, AppState};
use crate::playbook::Plan;
use crate::rollout::model::{DeviceJob, RolloutId, RolloutRecord};
use crate::rollout::report::StepTimings;

/// Views kept at once: the rollouts people are watching, with room to spare.
pub(crate) const CAPACITY: usize = 32;

#[derive(Default)]
struct View {
    plan: Option<Arc<Plan>>,
    /// The `jobs_rev` that `jobs` was read at; none before the first read.
    jobs_rev: Option<i64>,
    jobs: Vec<DeviceJob>,
    timings: StepTimings,
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

/// The rollout's detail: `r` as just read (its plan need not be), with its waves, jobs,
/// transfers and step timings.
pub(super) async fn detail(state: &AppState, r: RolloutRecord) -> ApiResult<RolloutDetail> {
    let slot = state.views.slot(&r.id);
    let mut v = slot.lock().await;
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
    if v.jobs_rev != Some(rev) {
        v.jobs = state.db.jobs(r.id.as_str()).await?;
        v.jobs_rev = Some(rev);
    }
    let after = v.timings.last_event;
    for e in state.db.step_events_after(r.id.as_str(), after).await? {
        v.timings.apply(&e);
    }

    let mut transfers = state.transfers.of_rollout(r.id.as_str());
    let mut waves = Vec::with_capacity(plan.waves.len());
    for w in &plan.waves {
        let wave_jobs: Vec<&DeviceJob> = v.jobs.iter().filter(|j| j.wave == w.index).collect();
        let rows = wave_jobs
            .iter()
            .map(|j| DeviceRow {
                job: (*j).clone(),
                transfer: transfers.remove(&j.device),
                steps: v.timings.of(&j.device).to_vec(),
            })
            .collect();
        waves.push(WaveView {
            index: w.index,
            name: w.name.clone(),
            progress: progress(wave_jobs.iter().copied()),
            devices: rows,
        });
    }
    Ok(RolloutDetail {
        progress: progress(v.jobs.iter()),
        skipped: serde_json::to_value(&plan.skipped).unwrap_or_default(),
        rollout: r,
        waves,
    })
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
