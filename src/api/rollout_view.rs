//! The view behind `GET /rollouts/{id}`, kept in memory per rollout and brought up to date
//! from what changed since it last looked, not rebuilt from the whole history each time.
//!
//! A dashboard polls this route every second, and fifty of them may watch a rollout of a
//! thousand devices. A catch-up costs three indexed reads:
//! - its `jobs_rev`, a counter the database moves on every write to the rollout's jobs
//!   (triggers on `rollout_devices`, which also stamp the row written with the new count),
//!   so that only the jobs changed since the last catch-up are read again;
//! - the step events recorded after the last one the view applied (events are append-only
//!   and numbered in commit order: writes are serialized on both servers).
//!
//! and each request reads the rollout's row (its state is always fresh). Transfers are live,
//! in-memory progress, looked up at each catch-up. Each device's row is kept as JSON and
//! written again only when its job, its steps or its transfer changed: the answer for 2,000
//! devices is megabytes, most of it the same as a second ago. A row is kept in parts, so that
//! a transfer that moved is written again alone ([`Row`]). The answer is a chain of those
//! parts, shared with the view, not a copy of them ([`DetailJson`]).
//!
//! Every request catches up, so its answer is as of the request. While a view is polled, a
//! background task ([`refresh`]) also catches up every [`REFRESH`], its reads without the
//! view's lock, so that a request reads only the last moment's changes. A view is updated
//! under its own lock, so requests that arrive together do the reads once. At most
//! [`CAPACITY`] views are kept; the least recently used one goes first.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use serde::Serialize;

use super::rollouts::{Progress, progress};
use super::timing::Phases;
use super::{ApiError, ApiResult, AppState};
use crate::playbook::Plan;
use crate::rollout::model::{DeviceJob, Event, RolloutId, RolloutRecord};
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
    /// When a request last asked for the view.
    requested: Option<Instant>,
    /// Whether a background task keeps the view up to date ([`refresh`]).
    refreshing: bool,
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

/// A device's row as JSON, in three parts so that a moving transfer, which changes at every
/// look while its copy runs, is written again alone: at 400 copies at once, writing whole rows
/// (each with its step timings) again was most of a request's time.
struct Row {
    transfer: Option<TransferInfo>,
    /// A comma, then the job's object without its closing brace, then `,"transfer":`. The
    /// comma is left out for a wave's first row.
    head: Bytes,
    /// `transfer` as JSON (`null` for none).
    transfer_json: Bytes,
    /// `,"steps":[…]}`.
    tail: Bytes,
}

impl Row {
    /// The row of job `j`, as [`RowOut`] writes it, with its transfer and steps.
    fn write(
        j: &DeviceJob,
        transfer: Option<TransferInfo>,
        steps: &[StepTiming],
    ) -> ApiResult<Self> {
        let head = open_object_after(b",".to_vec(), j, "transfer")?;
        let mut tail = b",\"steps\":".to_vec();
        serde_json::to_writer(&mut tail, steps).map_err(row_error)?;
        tail.push(b'}');
        Ok(Self {
            transfer_json: Self::transfer_json(&transfer)?,
            transfer,
            head,
            tail: tail.into(),
        })
    }

    /// The transfer moved: its part is written again, the rest is kept.
    fn set_transfer(&mut self, transfer: Option<TransferInfo>) -> ApiResult<()> {
        self.transfer_json = Self::transfer_json(&transfer)?;
        self.transfer = transfer;
        Ok(())
    }

    fn transfer_json(transfer: &Option<TransferInfo>) -> ApiResult<Bytes> {
        Ok(serde_json::to_vec(transfer).map_err(row_error)?.into())
    }
}

fn row_error(e: serde_json::Error) -> ApiError {
    ApiError::internal("writing a device row", &e)
}

struct Slot {
    view: Arc<tokio::sync::Mutex<View>>,
    used: u64,
}

#[derive(Default)]
pub(crate) struct RolloutViews {
    slots: Mutex<(u64, HashMap<RolloutId, Slot>)>,
    /// Catch-ups made by requests themselves, and by the background refresh.
    by_request: AtomicU64,
    by_refresh: AtomicU64,
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

    /// The view of rollout `id`, if one is kept (marked used, as [`Self::slot`] does).
    fn existing(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<View>>> {
        let mut guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (clock, slots) = &mut *guard;
        *clock += 1;
        let now = *clock;
        let slot = slots.get_mut(&RolloutId::new(id))?;
        slot.used = now;
        Some(slot.view.clone())
    }

    /// Catch-ups so far: `(by requests, by the background refresh)`.
    pub(crate) fn catch_ups(&self) -> (u64, u64) {
        (
            self.by_request.load(Ordering::Relaxed),
            self.by_refresh.load(Ordering::Relaxed),
        )
    }

    /// How many views are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().map_or(0, |g| g.1.len())
    }
}

/// A rollout's detail as the API sends it: the JSON of [`super::RolloutDetail`], put
/// together from the view's rows without copying them: the answer is a chain of the rows'
/// own bytes, shared with the view, between the few bytes written for this request (the
/// rollout's record, the waves' heads). At 2,000 devices the answer is megabytes; copied
/// into one buffer, it took a fresh allocation of that size and the copy on every request,
/// the largest part of a poll's time on a busy machine.
pub(crate) struct DetailJson {
    body: Chunks,
    /// Where the request's time went, for its `Server-Timing` header.
    phases: Phases,
}

impl DetailJson {
    pub(crate) fn with_status(self, status: StatusCode) -> Response {
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Body::new(self.body),
        )
            .into_response();
        self.phases.append_to(&mut response);
        response
    }

    /// The whole answer in one buffer.
    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        self.body
            .parts
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect()
    }
}

impl IntoResponse for DetailJson {
    fn into_response(self) -> Response {
        self.with_status(StatusCode::OK)
    }
}

/// An HTTP body of byte chunks whose whole length is known: hyper sends it with a
/// `Content-Length` (no chunked framing). The chunks go out joined into frames of about
/// [`FRAME`] bytes: a rollout view's answer is three small chunks per device, and hyper's work
/// per frame, six thousand times for 2,000 devices, was the larger part of a poll's time after
/// its head on a busy node (a copy of 64 KB costs less than the frames it saves).
#[derive(Default)]
struct Chunks {
    parts: VecDeque<Bytes>,
    len: u64,
}

impl Chunks {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len() as u64;
            self.parts.push_back(b);
        }
    }

    fn push_static(&mut self, s: &'static str) {
        self.push(Bytes::from_static(s.as_bytes()));
    }
}

/// The size the chunks of a [`Chunks`] are joined up to, in each frame.
const FRAME: usize = 64 * 1024;

impl Chunks {
    /// The next frame: the next chunk as it is when it fills a frame alone, else the chunks
    /// that fit in [`FRAME`] bytes (at least one), joined.
    fn next_frame(&mut self) -> Option<Bytes> {
        let first = self.parts.pop_front()?;
        let joined = if first.len() >= FRAME
            || self
                .parts
                .front()
                .is_none_or(|b| first.len() + b.len() > FRAME)
        {
            first
        } else {
            let mut out = Vec::with_capacity(FRAME);
            out.extend_from_slice(&first);
            while let Some(b) = self.parts.front() {
                if out.len() + b.len() > FRAME {
                    break;
                }
                out.extend_from_slice(b);
                self.parts.pop_front();
            }
            Bytes::from(out)
        };
        self.len -= joined.len() as u64;
        Some(joined)
    }
}

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_frame().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// [`super::RolloutDetail`]'s shape, field for field, but its `waves`: the answer writes
/// this object, then the waves.
#[derive(Serialize)]
struct DetailHead<'a> {
    #[serde(flatten)]
    rollout: &'a RolloutRecord,
    progress: Progress,
    skipped: serde_json::Value,
}

/// [`super::WaveView`]'s shape but its `devices`, which follow as the view's rows.
#[derive(Serialize)]
struct WaveHead<'a> {
    index: usize,
    name: &'a str,
    progress: Progress,
}

/// A device's row as `DeviceRow` writes it, borrowed from the view instead of copied into one
/// ([`Row`] writes it in parts).
#[cfg(test)]
#[derive(Serialize)]
struct RowOut<'a> {
    #[serde(flatten)]
    job: &'a DeviceJob,
    transfer: Option<&'a TransferInfo>,
    steps: &'a [StepTiming],
}

/// `value` as a JSON object, open for one more field: without its closing brace, and with
/// `,"FIELD":` written after its last field (`"FIELD":` alone when it has none).
fn open_object<T: Serialize>(value: &T, field: &str) -> ApiResult<Bytes> {
    open_object_after(Vec::new(), value, field)
}

/// [`open_object`], written after `out`.
fn open_object_after<T: Serialize>(mut out: Vec<u8>, value: &T, field: &str) -> ApiResult<Bytes> {
    serde_json::to_writer(&mut out, value)
        .map_err(|e| ApiError::internal("writing the rollout", &e))?;
    if out.pop() != Some(b'}') {
        return Err(ApiError::internal(
            "writing the rollout",
            &"a head that is not a JSON object",
        ));
    }
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(b"\":");
    Ok(out.into())
}

/// While a view is polled, a background task brings it up to date this often, so that a
/// request, which always catches up itself, reads at most this long's changes: during a
/// rollout of 2,000 devices at 400 at once, a second's changes are hundreds of jobs and a
/// thousand step events, whose reading made a request wait tens of milliseconds on a busy
/// machine.
const REFRESH: Duration = Duration::from_millis(100);

/// The background refresh stops when no request came for this long.
const REFRESH_WHILE_POLLED: Duration = Duration::from_secs(10);

/// The rollout's detail: `r` as just read (its plan need not be), with its waves, jobs,
/// transfers and step timings, all as of this request: whoever saw an event, or took an
/// action, sees its outcome in the next answer. `rev` is the rollout's `jobs_rev` when it was
/// read with `r`; otherwise it is read here. `phases` holds the time spent before (reading
/// `r`), and `mark` when it ended.
pub(super) async fn detail(
    state: &AppState,
    r: RolloutRecord,
    rev: Option<i64>,
    mut phases: Phases,
    mut mark: Instant,
) -> ApiResult<DetailJson> {
    let slot = state.views.slot(&r.id);
    let mut guard = slot.lock().await;
    phases.lap("lock", &mut mark);
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
    let changes = read_changes(state, r.id.as_str(), v.since(), rev).await?;
    phases.lap("changes", &mut mark);
    answer_request(state, &slot, v, &r, &plan, changes, phases, mark).await
}

/// The rollout's detail as [`detail`] gives it, with its record read in the same round trip
/// as the changes ([`crate::store::Db::rollout_catch_up`]): where the store reads them at once
/// (PostgreSQL) and a view of the rollout is kept with its plan, a poll waits for one round
/// trip instead of two in a row. `None` otherwise: the caller reads the record, then
/// [`detail`].
pub(super) async fn detail_at_once(
    state: &AppState,
    id: &str,
    mut phases: Phases,
    mut mark: Instant,
) -> ApiResult<Option<DetailJson>> {
    if state.db.backend() != crate::store::Backend::Postgres {
        return Ok(None);
    }
    let Some(slot) = state.views.existing(id) else {
        return Ok(None);
    };
    let mut guard = slot.lock().await;
    phases.lap("lock", &mut mark);
    let v = &mut *guard;
    let Some(plan) = v.plan.clone() else {
        return Ok(None);
    };
    let since = v.since();
    let Some(read) = state
        .db
        .rollout_catch_up(id, true, since.0, since.1)
        .await
        .map_err(|e| super::rollouts::not_found_as_404(id, e))?
    else {
        return Ok(None);
    };
    let Some(r) = read.record.clone() else {
        return Ok(None);
    };
    let changes = Changes::of(since, read);
    phases.lap("changes", &mut mark);
    answer_request(state, &slot, v, &r, &plan, changes, phases, mark)
        .await
        .map(Some)
}

/// A request's end, once it read `changes` under the lock of `v`, the view in `slot`: apply
/// them, keep the view refreshed while it is polled, and write the answer.
#[allow(clippy::too_many_arguments)]
async fn answer_request(
    state: &AppState,
    slot: &Arc<tokio::sync::Mutex<View>>,
    v: &mut View,
    r: &RolloutRecord,
    plan: &Plan,
    changes: Changes,
    mut phases: Phases,
    mut mark: Instant,
) -> ApiResult<DetailJson> {
    v.apply(state, r.id.as_str(), changes, true).await?;
    phases.lap("apply", &mut mark);
    state.views.by_request.fetch_add(1, Ordering::Relaxed);
    v.requested = Some(Instant::now());
    if !v.refreshing {
        v.refreshing = true;
        tokio::spawn(refresh(state.clone(), r.id.clone(), slot.clone()));
    }
    let body = answer(r, plan, v)?;
    phases.lap("write", &mut mark);
    Ok(DetailJson { body, phases })
}

/// The answer: the rollout's record `r` and its plan's waves, with the view's rows (after
/// [`View::apply`]).
fn answer(r: &RolloutRecord, plan: &Plan, v: &View) -> ApiResult<Chunks> {
    let mut body = Chunks::default();
    body.push(open_object(
        &DetailHead {
            progress: progress(v.jobs.iter()),
            skipped: serde_json::to_value(&plan.skipped).unwrap_or_default(),
            rollout: r,
        },
        "waves",
    )?);
    body.push_static("[");
    for (n, w) in plan.waves.iter().enumerate() {
        let in_wave = || {
            v.jobs
                .iter()
                .zip(&v.rows)
                .filter(|(j, _)| j.wave == w.index)
        };
        if n > 0 {
            body.push_static(",");
        }
        body.push(open_object(
            &WaveHead {
                index: w.index,
                name: &w.name,
                progress: progress(in_wave().map(|(j, _)| j)),
            },
            "devices",
        )?);
        body.push_static("[");
        let mut first = true;
        for row in in_wave().filter_map(|(_, row)| row.as_ref()) {
            // Each row is kept after its comma; a wave's first goes without.
            body.push(if first {
                row.head.slice(1..)
            } else {
                row.head.clone()
            });
            body.push(row.transfer_json.clone());
            body.push(row.tail.clone());
            first = false;
        }
        body.push_static("]}");
    }
    body.push_static("]}");
    Ok(body)
}

/// Keep a polled view up to date until no request came for [`REFRESH_WHILE_POLLED`] (or a
/// read fails: the requests report it, and the next one starts the refresh again). The reads
/// run without the view's lock, so a request waits at most for the changes to be applied,
/// not read; changes read while a request caught up are dropped.
async fn refresh(state: AppState, id: RolloutId, view: Arc<tokio::sync::Mutex<View>>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let since = {
            let mut v = view.lock().await;
            if v.requested
                .is_none_or(|at| at.elapsed() >= REFRESH_WHILE_POLLED)
            {
                v.refreshing = false;
                return;
            }
            v.since()
        };
        let read = read_changes(&state, id.as_str(), since, None).await;
        let mut v = view.lock().await;
        if v.since() != since {
            continue;
        }
        let applied = match read {
            Ok(changes) => v.apply(&state, id.as_str(), changes, false).await,
            Err(e) => Err(e),
        };
        if applied.is_err() {
            v.refreshing = false;
            return;
        }
        state.views.by_refresh.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where a view stands: the `jobs_rev` its jobs were read at and the last step event applied.
type Since = (Option<i64>, i64);

/// What changed since a view's [`Since`], read from the database.
struct Changes {
    rev: i64,
    /// The jobs changed since (all of them when the view had none).
    jobs: Vec<DeviceJob>,
    whole: bool,
    events: Vec<Event>,
}

/// What changed since `since`; `rev` is the `jobs_rev` when the caller read it already (it
/// must have been read before the jobs are, as here).
async fn read_changes(
    state: &AppState,
    id: &str,
    since: Since,
    rev: Option<i64>,
) -> ApiResult<Changes> {
    // One round trip where the store can (the record is read only when the caller has none).
    if rev.is_none()
        && let Some(read) = state
            .db
            .rollout_catch_up(id, false, since.0, since.1)
            .await?
    {
        return Ok(Changes::of(since, read));
    }
    // The counter before the jobs: a write between the two reads makes the next catch-up read
    // the jobs again, never a view older than its counter.
    let rev = match rev {
        Some(rev) => rev,
        None => state.db.jobs_rev(id).await?,
    };
    // A counter read before the view last caught up is older than the view: the view's own
    // holds (reading the jobs changed since an older one would only read them again).
    let rev = since.0.map_or(rev, |seen| seen.max(rev));
    let jobs = async {
        match since.0 {
            Some(seen) if seen == rev => Ok((Vec::new(), false)),
            // Only the rows changed since: each keeps the rev of its last change.
            Some(seen) => Ok((state.db.jobs_changed_since(id, seen).await?, false)),
            None => Ok((state.db.jobs(id).await?, true)),
        }
    };
    // The jobs and the step events at once, each on a connection of its own: a catch-up
    // waits for one round trip, not two. Neither read depends on the other; a step recorded
    // between them shows in both or in the next catch-up, as when they went one by one.
    let ((jobs, whole), events) =
        tokio::try_join!(jobs, state.db.step_timing_events_after(id, since.1))?;
    Ok(Changes {
        rev,
        jobs,
        whole,
        events,
    })
}

impl Changes {
    /// The changes since `since` that [`crate::store::Db::rollout_catch_up`] read.
    fn of(since: Since, read: crate::store::CatchUp) -> Changes {
        Changes {
            // As in [`read_changes`]: a counter older than the view's holds the view's.
            rev: since.0.map_or(read.rev, |seen| seen.max(read.rev)),
            jobs: read.jobs,
            whole: since.0.is_none(),
            events: read.events,
        }
    }
}

impl View {
    fn since(&self) -> Since {
        (self.jobs_rev, self.timings.last_event)
    }

    /// Apply what changed, and write again the rows of the devices whose job or steps
    /// changed, and with `with_transfers`, those whose transfer moved. The background refresh
    /// leaves the transfers to the requests: a running copy moves at every look, and only
    /// an answer needs its latest count.
    async fn apply(
        &mut self,
        state: &AppState,
        id: &str,
        c: Changes,
        with_transfers: bool,
    ) -> ApiResult<()> {
        if c.whole {
            self.set_jobs(c.jobs);
        } else {
            let mut whole = false;
            for j in c.jobs {
                let i = self.at.get(&j.device).copied();
                match i.and_then(|i| Some((i, self.jobs.get_mut(i)?))) {
                    Some((i, old)) if old.wave == j.wave && old.position == j.position => {
                        if *old != j {
                            *old = j;
                            if let Some(row) = self.rows.get_mut(i) {
                                *row = None;
                            }
                        }
                    }
                    // A device new to the rollout, or moved: read the whole list again.
                    _ => whole = true,
                }
            }
            if whole {
                self.set_jobs(state.db.jobs(id).await?);
            }
        }
        self.jobs_rev = Some(c.rev);
        for e in &c.events {
            self.timings.apply(e);
            if let Some(device) = &e.device {
                self.forget_row(device);
            }
        }

        let mut transfers = state.transfers.of_rollout(id);
        for (j, row) in self.jobs.iter().zip(self.rows.iter_mut()) {
            let transfer = transfers.remove(&j.device);
            match row {
                Some(r) if !with_transfers || r.transfer == transfer => {}
                Some(r) => r.set_transfer(transfer)?,
                None => *row = Some(Row::write(j, transfer, self.timings.of(&j.device))?),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn record() -> RolloutRecord {
        serde_json::from_value(json!({
            "id": "r-1", "name": "night \"core\" upgrade", "state": "running",
            "images": ["c2960x.bin"], "paused": false, "abort_requested": false,
            "halt_reason": null, "created_at": "2026-12-07T20:00:00Z",
            "updated_at": "2026-12-07T20:01:00Z", "started_at": null, "finished_at": null,
            "submitted_by": "ops", "approved_by": null, "approved_at": null,
        }))
        .expect("a rollout record")
    }

    fn job(device: &str, wave: usize, position: usize, state: &str) -> DeviceJob {
        serde_json::from_value(json!({
            "device": device, "wave": wave, "position": position, "image": "c2960x.bin",
            "target_version": "15.2(7)E13", "state": state, "step": null, "step_state": null,
            "old_version": null, "old_image": null, "new_version": null,
            "error": if state == "failed" { Value::from("copy: timed out") } else { Value::Null },
            "reload_sent": false, "waits_for_window": null, "attempts": 1,
            "started_at": null, "finished_at": null,
        }))
        .expect("a device job")
    }

    fn plan(waves: &[(usize, &str)]) -> Plan {
        serde_json::from_value(json!({
            "waves": waves.iter().map(|(i, n)| json!({"index": i, "name": n, "devices": []}))
                .collect::<Vec<_>>(),
            "skipped": [{"device": "sw-9", "reason": "already runs the target", "current": true}],
            "total": 3, "halt_after_failures": 1,
        }))
        .expect("a plan")
    }

    /// A view whose rows are written as [`View::apply`] writes them.
    fn view(jobs: Vec<DeviceJob>) -> View {
        let mut v = View::default();
        v.set_jobs(jobs);
        for (j, row) in v.jobs.iter().zip(v.rows.iter_mut()) {
            *row = Some(Row::write(j, None, &[]).expect("a row"));
        }
        v
    }

    fn transfer(bytes: u64) -> TransferInfo {
        serde_json::from_value(json!({
            "id": 7, "protocol": "tftp", "client": "127.0.40.2:50123", "file": "c2960x.bin",
            "direction": "download", "bytes": bytes, "total": 1048576, "state": "active",
            "error": null, "started_at": "2026-12-07T20:00:00Z", "finished_at": null,
            "rate_bps": 2097152, "block_size": 8192, "job": null,
        }))
        .expect("a transfer")
    }

    /// The detail as a JSON value built field by field, as `RolloutDetail` serializes.
    fn expected(
        r: &RolloutRecord,
        p: &Plan,
        jobs: &[DeviceJob],
        moving: Option<&TransferInfo>,
    ) -> Value {
        let row = |j: &DeviceJob| {
            serde_json::to_value(RowOut {
                job: j,
                transfer: moving.filter(|_| j.device == "sw-2"),
                steps: &[],
            })
            .expect("a row")
        };
        let mut out = serde_json::to_value(r).expect("a record");
        let o = out.as_object_mut().expect("an object");
        o.insert(
            "progress".into(),
            serde_json::to_value(progress(jobs.iter())).expect("progress"),
        );
        o.insert(
            "skipped".into(),
            serde_json::to_value(&p.skipped).expect("skipped"),
        );
        let waves: Vec<Value> = p
            .waves
            .iter()
            .map(|w| {
                let mine: Vec<&DeviceJob> = jobs.iter().filter(|j| j.wave == w.index).collect();
                json!({
                    "index": w.index,
                    "name": w.name,
                    "progress": serde_json::to_value(progress(mine.iter().copied())).expect("progress"),
                    "devices": mine.iter().map(|j| row(j)).collect::<Vec<_>>(),
                })
            })
            .collect();
        o.insert("waves".into(), Value::Array(waves));
        out
    }

    #[test]
    fn the_answer_chained_from_the_rows_is_the_rollout_detail_with_its_length() {
        let r = record();
        for (waves, jobs) in [
            // A wave of one, an empty wave, a wave of two.
            (
                vec![(0, "canary"), (1, "wave 1"), (2, "wave 2")],
                vec![
                    job("sw-1", 0, 0, "succeeded"),
                    job("sw-2", 2, 0, "running"),
                    job("sw-3", 2, 1, "failed"),
                ],
            ),
            (vec![(0, "wave 1")], vec![]),
            (vec![], vec![]),
        ] {
            let p = plan(&waves);
            let v = view(jobs.clone());
            let chunks = answer(&r, &p, &v).expect("an answer");
            let hint = chunks.size_hint().exact();
            let detail = DetailJson {
                body: chunks,
                phases: Phases::default(),
            };
            let bytes = detail.to_vec();
            assert_eq!(hint, Some(bytes.len() as u64), "{waves:?}");
            let got: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(got, expected(&r, &p, &jobs, None), "{waves:?}");
            // And the API's own type reads it.
            let typed: super::super::RolloutDetail =
                serde_json::from_slice(&bytes).expect("a RolloutDetail");
            assert_eq!(typed.waves.len(), waves.len());
        }
    }

    /// The answer goes out in frames of at most [`FRAME`] bytes (a chunk larger than that, alone),
    /// far fewer than its chunks, and those frames are the answer, byte for byte, with the
    /// length hinted before each.
    #[test]
    fn the_answer_goes_out_in_frames_of_joined_chunks() {
        let r = record();
        let p = plan(&[(0, "canary"), (1, "wave 1")]);
        let jobs: Vec<DeviceJob> = (0..400)
            .map(|i: usize| job(&format!("sw-{i}"), usize::from(i > 0), i, "succeeded"))
            .collect();
        let v = view(jobs);
        let whole = DetailJson {
            body: answer(&r, &p, &v).expect("an answer"),
            phases: Phases::default(),
        }
        .to_vec();
        let mut body = answer(&r, &p, &v).expect("an answer");
        let mut big = Chunks::default();
        big.push(Bytes::from(vec![b' '; FRAME + 1]));
        big.push_static("{}");
        let chunks = body.parts.len();
        let mut frames = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            let hint = body.size_hint().exact();
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => {
                    let data = f.into_data().expect("a data frame");
                    assert!(data.len() <= FRAME, "{}", data.len());
                    assert_eq!(
                        hint,
                        Some((whole.len() - frames.iter().map(Bytes::len).sum::<usize>()) as u64)
                    );
                    frames.push(data);
                }
                Poll::Ready(None) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(body.is_end_stream());
        assert!(
            frames.len() * 50 < chunks,
            "{} frames for {chunks} chunks",
            frames.len()
        );
        assert_eq!(frames.concat(), whole);
        // A chunk larger than a frame goes alone, as it is.
        assert_eq!(big.next_frame().map(|b| b.len()), Some(FRAME + 1));
        assert_eq!(big.next_frame().as_deref(), Some(&b"{}"[..]));
        assert_eq!(big.next_frame(), None);
    }

    /// A transfer that moves is written again alone, and the answer shows where it is now;
    /// once it is gone, the row shows none.
    #[test]
    fn a_moving_transfer_is_written_again_alone_and_shows_in_the_answer() {
        let r = record();
        let p = plan(&[(0, "canary"), (1, "wave 1")]);
        let jobs = vec![
            job("sw-1", 0, 0, "succeeded"),
            job("sw-2", 1, 0, "running"),
            job("sw-3", 1, 1, "pending"),
        ];
        let mut v = view(jobs.clone());
        let i = v.at["sw-2"];
        for bytes in [8192, 524288, 1048576] {
            let t = transfer(bytes);
            let row = v.rows[i].as_mut().expect("a row");
            let (head, tail) = (row.head.clone(), row.tail.clone());
            row.set_transfer(Some(t.clone())).expect("written");
            // The job's and the steps' parts are the same bytes, not written again.
            assert_eq!(row.head.as_ptr(), head.as_ptr());
            assert_eq!(row.tail.as_ptr(), tail.as_ptr());
            let detail = DetailJson {
                body: answer(&r, &p, &v).expect("an answer"),
                phases: Phases::default(),
            };
            let got: Value = serde_json::from_slice(&detail.to_vec()).expect("JSON");
            assert_eq!(got, expected(&r, &p, &jobs, Some(&t)), "{bytes}");
            assert_eq!(got["waves"][1]["devices"][0]["transfer"]["bytes"], bytes);
        }
        v.rows[i]
            .as_mut()
            .expect("a row")
            .set_transfer(None)
            .expect("written");
        let detail = DetailJson {
            body: answer(&r, &p, &v).expect("an answer"),
            phases: Phases::default(),
        };
        let got: Value = serde_json::from_slice(&detail.to_vec()).expect("JSON");
        assert_eq!(got, expected(&r, &p, &jobs, None));
    }

    #[test]
    fn an_object_is_opened_for_one_more_field() {
        #[derive(Serialize)]
        struct Empty {}
        #[derive(Serialize)]
        struct One {
            a: u8,
        }
        let open = |b: Bytes| String::from_utf8(b.to_vec()).expect("utf-8");
        assert_eq!(
            open(open_object(&Empty {}, "f").expect("opened")),
            "{\"f\":"
        );
        assert_eq!(
            open(open_object(&One { a: 1 }, "f").expect("opened")),
            "{\"a\":1,\"f\":"
        );
        assert!(open_object(&[1, 2], "f").is_err());
    }

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
