//! `/rollouts`: submit playbooks, watch and steer rollouts, read their reports.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, Internal, StorageFull};
use super::rollout_view::{DetailJson, detail};
use super::schema::PlaybookBody;
use super::timing::Phases;
use super::{ApiError, ApiResult, AppState, ErrorBody};
use crate::access::Principal;
use crate::playbook::Opening;
use crate::playbook::Plan;
use crate::rollout::RolloutError;
use crate::rollout::model::{DeviceJob, Event, JobState, RolloutRecord, RolloutState};
use crate::rollout::report::{self, StepTiming};
use crate::transfers::TransferInfo;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rollouts, submit_rollout))
        .routes(routes!(get_rollout))
        .routes(routes!(pause_rollout))
        .routes(routes!(resume_rollout))
        .routes(routes!(abort_rollout))
        .routes(routes!(approve_rollout))
        .routes(routes!(retry_rollout))
        .routes(routes!(rollout_report))
        .routes(routes!(rollout_events))
        .routes(routes!(rollout_activity))
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> Self {
        match e {
            RolloutError::Playbook(y) => y.into(),
            RolloutError::NothingToDo(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                NOTHING_TO_DO,
                e.to_string(),
            ),
            RolloutError::NotFound(_) => ApiError::not_found(e.to_string()),
            RolloutError::Ended { .. } | RolloutError::NotAwaitingApproval { .. } => {
                ApiError::conflict(e.to_string())
            }
            RolloutError::OwnApproval(_) => ApiError::forbidden(e.to_string()),
            RolloutError::Store(s) => s.into(),
            RolloutError::Images(i) => i.into(),
            RolloutError::Corrupt(_) => ApiError::internal("reading rollout state", &e),
        }
    }
}

/// The error code of a submitted playbook whose every target is skipped (most often: every
/// device already runs the image), so that a client can tell it from a bad playbook.
pub const NOTHING_TO_DO: &str = "nothing_to_do";

/// Progress counts of a rollout.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub total: usize,
    pub pending: usize,
    pub running: usize,
    pub succeeded: usize,
    /// Failed devices, the rolled back ones included.
    pub failed: usize,
    /// Failed on the new image and put back on the old one (also counted in `failed`).
    #[serde(default)]
    pub rolled_back: usize,
    pub skipped: usize,
    pub aborted: usize,
}

pub(super) fn progress<'a>(jobs: impl IntoIterator<Item = &'a DeviceJob>) -> Progress {
    progress_of_counts(jobs.into_iter().map(|j| (j.state, 1)))
}

fn progress_of_counts(counts: impl IntoIterator<Item = (JobState, usize)>) -> Progress {
    let mut p = Progress::default();
    for (state, n) in counts {
        p.total += n;
        if state == JobState::RolledBack {
            p.rolled_back += n;
        }
        *match state {
            JobState::Pending => &mut p.pending,
            JobState::Running => &mut p.running,
            JobState::Succeeded => &mut p.succeeded,
            JobState::Failed | JobState::RolledBack => &mut p.failed,
            JobState::Skipped => &mut p.skipped,
            JobState::Aborted => &mut p.aborted,
        } += n;
    }
    p
}

// The response types below are generic over the state types only so that a client can read
// them with `StateName` (a newer service's state names survive); `value_type` keeps their
// OpenAPI names and shapes those of the service's own types.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct RolloutSummary<S = RolloutState> {
    #[serde(flatten)]
    #[schema(value_type = RolloutRecord)]
    pub rollout: RolloutRecord<S>,
    pub progress: Progress,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolloutList<S = RolloutState> {
    #[schema(value_type = Vec<RolloutSummary>)]
    pub(crate) rollouts: Vec<RolloutSummary<S>>,
}

/// Rollouts, newest first.
#[utoipa::path(get, path = "/rollouts", tag = "rollouts", responses((status = 200, body = RolloutList), Internal))]
async fn list_rollouts(State(state): State<AppState>) -> ApiResult<Json<RolloutList>> {
    let rollouts = state.db.list_rollouts(200).await?;
    let ids: Vec<&str> = rollouts.iter().map(|r| r.id.as_str()).collect();
    let mut counts = state.db.job_state_counts(&ids).await?;
    let rollouts = rollouts
        .into_iter()
        .map(|r| RolloutSummary {
            progress: progress_of_counts(counts.remove(r.id.as_str()).unwrap_or_default()),
            rollout: r,
        })
        .collect();
    Ok(Json(RolloutList { rollouts }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SubmitQuery {
    /// Validate and plan only: print waves and skipped devices, touch nothing.
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DryRun {
    pub name: String,
    pub plan: Plan,
    /// The playbook's maintenance windows and when each next opens. Copies and their MD5
    /// checks may run before; the boot change, save, install and reload wait for a window.
    #[serde(default)]
    pub windows: Vec<WindowOpening>,
    /// How devices get the image: the playbook's transfer settings, then each site's.
    #[serde(default)]
    pub transfer: Vec<TransferPath>,
}

/// The transfer settings devices of one site (or of no listed site) copy with.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct TransferPath {
    /// A site of `transfer.sites`; absent for the playbook's own settings.
    pub site: Option<String>,
    /// The protocols, in the order they are tried.
    pub protocols: Vec<String>,
    pub server: Option<String>,
    pub vrf: Option<String>,
    pub source_interface: Option<String>,
    /// Protocols of the list whose server is off in this service: left out of the copy.
    pub unavailable: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WindowOpening {
    /// As written in the playbook: `Mon-Fri 22:00-23:30 Europe/Berlin`.
    pub window: String,
    /// Open now.
    pub open: bool,
    /// The next opening (now, when open), RFC 3339 in UTC.
    pub opens_at: Option<String>,
    /// The same, in the window's own zone and in UTC: `Tue 2026-11-24 22:00 Europe/Berlin (21:00 UTC)`.
    pub opens: Option<String>,
}

/// Submit a playbook (YAML as `application/yaml`, or JSON). With `?dry_run=true` the plan is
/// returned and nothing is started.
#[utoipa::path(post, path = "/rollouts", tag = "rollouts", params(SubmitQuery),
    request_body(content(
        (PlaybookBody = "application/yaml"),
        (PlaybookBody = "application/json"),
    )),
    responses((status = 201, body = RolloutDetail, description = "started"),
              (status = 200, body = DryRun, description = "`?dry_run=true`: the plan; nothing started"),
              (status = 400, body = ErrorBody, description = "`bad_request`: the body is not UTF-8, or `dry_run` is not `true` or `false`"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 422, body = ErrorBody, description = "`invalid_yaml` (with `line` and `column`): the playbook does not parse or validate, its image is not in the store; `nothing_to_do`: every target is skipped"),
              Internal, StorageFull))]
async fn submit_rollout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<SubmitQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the playbook is not UTF-8 text: {e}")))?;
    if q.dry_run {
        let (pb, plan) = state.engine.plan(text).await?;
        let now = state.engine.now();
        let windows = pb
            .schedule
            .windows()
            .into_iter()
            .map(|w| {
                let next = Opening::next(std::slice::from_ref(&w), now);
                WindowOpening {
                    window: w.to_string(),
                    open: w.contains(now),
                    opens_at: next.as_ref().map(|o| o.at.to_string()),
                    opens: next.map(|o| o.to_string()),
                }
            })
            .collect();
        let transfer = std::iter::once(None)
            .chain(pb.transfer.sites.keys().map(|s| Some(s.as_str())))
            .map(|site| {
                let t = pb.transfer.for_site(site);
                TransferPath {
                    site: site.map(str::to_string),
                    unavailable: t
                        .protocols
                        .iter()
                        .filter(|p| !state.engine.offers(**p))
                        .map(|p| p.as_str().to_string())
                        .collect(),
                    protocols: t.protocols.iter().map(|p| p.as_str().to_string()).collect(),
                    server: t.server,
                    vrf: t.vrf,
                    source_interface: t.source_interface,
                }
            })
            .collect();
        return Ok(Json(DryRun {
            name: pb.name,
            plan,
            windows,
            transfer,
        })
        .into_response());
    }
    let record = state.engine.submit(text, Some(&who.name)).await?;
    tracing::info!(rollout = %record.id, name = %record.name, token = %who.name, "rollout submitted");
    Ok(
        detail(&state, record, None, Phases::default(), Instant::now())
            .await?
            .with_status(StatusCode::CREATED),
    )
}

/// A device's row in the rollout view.
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct DeviceRow<J = JobState> {
    #[serde(flatten)]
    #[schema(value_type = DeviceJob)]
    pub job: DeviceJob<J>,
    /// The image transfer to this device, while it runs or once it finished.
    pub transfer: Option<TransferInfo>,
    pub steps: Vec<StepTiming>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct WaveView<J = JobState> {
    /// 0 is the canary wave when there is one.
    pub index: usize,
    pub name: String,
    pub progress: Progress,
    #[schema(value_type = Vec<DeviceRow>)]
    pub(crate) devices: Vec<DeviceRow<J>>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct RolloutDetail<S = RolloutState, J = JobState> {
    #[serde(flatten)]
    #[schema(value_type = RolloutRecord)]
    pub rollout: RolloutRecord<S>,
    pub progress: Progress,
    #[schema(value_type = Vec<WaveView>)]
    pub waves: Vec<WaveView<J>>,
    /// Selected devices that are not touched, with the reason.
    #[schema(value_type = Vec<crate::playbook::Skipped>)]
    pub skipped: serde_json::Value,
}

/// The rollout's record without its playbook and plan ([`crate::store::Db::rollout_meta`]).
async fn rollout_or_404(state: &AppState, id: &str) -> ApiResult<RolloutRecord> {
    state
        .db
        .rollout_meta(id)
        .await
        .map_err(|e| not_found_as_404(id, e))
}

/// A store error about rollout `id` as the API says it: 404 when there is no such rollout.
pub(super) fn not_found_as_404(id: &str, e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::NotFound => ApiError::not_found(format!("no rollout {id}")),
        e => e.into(),
    }
}

/// A rollout: state, waves, each device's step, transfer progress, timings and errors.
#[utoipa::path(get, path = "/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = RolloutDetail), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"), Internal))]
async fn get_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<DetailJson> {
    let mut mark = Instant::now();
    let mut phases = Phases::default();
    if let Some(answer) =
        super::rollout_view::detail_at_once(&state, &id, Phases::default(), mark).await?
    {
        return Ok(answer);
    }
    // The record and its jobs' counter in one read: a poll's first round trip.
    let (r, rev) = state
        .db
        .rollout_meta_and_rev(&id)
        .await
        .map_err(|e| not_found_as_404(&id, e))?;
    phases.lap("read", &mut mark);
    detail(&state, r, Some(rev), phases, mark).await
}

#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct ActionResult {
    pub id: String,
    pub state: String,
    pub message: String,
}

async fn action_result(
    state: &AppState,
    id: &str,
    message: String,
) -> ApiResult<Json<ActionResult>> {
    let r = rollout_or_404(state, id).await?;
    Ok(Json(ActionResult {
        id: r.id.to_string(),
        state: r.state.to_string(),
        message,
    }))
}

/// Pause: no new step starts; running steps finish.
#[utoipa::path(post, path = "/rollouts/{id}/pause", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = ActionResult), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"),
              (status = 409, body = ErrorBody, description = "`conflict`: the rollout has ended, or is not in a state that allows it"),
              Internal, StorageFull))]
async fn pause_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionResult>> {
    state.engine.pause(&id).await?;
    action_result(&state, &id, "paused: no new step starts".into()).await
}

/// Resume a paused rollout.
#[utoipa::path(post, path = "/rollouts/{id}/resume", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = ActionResult), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"),
              (status = 409, body = ErrorBody, description = "`conflict`: the rollout has ended, or is not in a state that allows it"),
              Internal, StorageFull))]
async fn resume_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionResult>> {
    state.engine.resume(&id).await?;
    action_result(&state, &id, "resumed".into()).await
}

/// Abort: every device stops at its next safe point (never inside a reload).
#[utoipa::path(post, path = "/rollouts/{id}/abort", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = ActionResult), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"),
              (status = 409, body = ErrorBody, description = "`conflict`: the rollout has ended, or is not in a state that allows it"),
              Internal, StorageFull))]
async fn abort_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionResult>> {
    state.engine.abort(&id).await?;
    action_result(
        &state,
        &id,
        "abort requested: devices stop at their next safe point".into(),
    )
    .await
}

/// Approve a rollout that waits in `awaiting_approval`, and start it. The token that submitted
/// it may not: the approval is a second person's (operator or admin).
#[utoipa::path(post, path = "/rollouts/{id}/approve", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = ActionResult), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"),
              (status = 403, body = ErrorBody, description = "`forbidden`: the submitter's own token, or a viewer token"),
              (status = 409, body = ErrorBody, description = "`conflict`: the rollout does not wait for an approval (any more)"),
              Internal, StorageFull))]
async fn approve_rollout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionResult>> {
    state.engine.approve(&id, &who.name).await?;
    action_result(&state, &id, format!("approved by {}: starting", who.name)).await
}

/// Put failed devices back in line (a halted rollout goes on).
#[utoipa::path(post, path = "/rollouts/{id}/retry", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = ActionResult), BadPath, (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"),
              (status = 409, body = ErrorBody, description = "`conflict`: the rollout has ended, or is not in a state that allows it, or the devices running when it halted have not finished within 30 s"),
              Internal, StorageFull))]
async fn retry_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionResult>> {
    let n = state.engine.retry_failed(&id).await?;
    action_result(
        &state,
        &id,
        format!("{n} failed device(s) put back in line"),
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// `json` (default) or `csv`.
    #[param(inline)]
    format: Option<ReportFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum ReportFormat {
    Json,
    Csv,
}

/// The rollout's report: per device old -> new version, durations and result (JSON or CSV).
#[utoipa::path(get, path = "/rollouts/{id}/report", tag = "rollouts", params(("id" = String, Path, description = "rollout id"), ReportQuery),
    responses((status = 200, description = "the report: JSON, or CSV with `?format=csv` or `Accept: text/csv`",
               content((report::Report = "application/json"), (String = "text/csv"))),
              (status = 400, body = ErrorBody, description = "`bad_request`: `format` is not `json` or `csv`, or a path that is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"), Internal))]
async fn rollout_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let r = rollout_or_404(&state, &id).await?;
    let jobs = state.db.jobs(&id).await?;
    let events = state.db.step_events(&id).await?;
    let rep = report::build(&r, &jobs, &events);
    let wants_csv = match q.format {
        Some(f) => f == ReportFormat::Csv,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv")),
    };
    if wants_csv {
        let disposition = format!("attachment; filename=\"fleetup-{id}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            report::to_csv(&rep),
        )
            .into_response());
    }
    Ok(Json(rep).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Only events after this id (also taken from the `Last-Event-ID` header).
    after: Option<i64>,
    /// Only the events of this device (rollout-level events are left out).
    device: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ActivityQuery {
    /// Only events after this id.
    after: Option<i64>,
    /// Only this device's events.
    device: Option<String>,
    /// At most this many events (default and maximum 10000).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Activity {
    /// Oldest first.
    pub events: Vec<Event>,
}

/// A rollout's events as one JSON document, oldest first; the same events as the SSE stream.
#[utoipa::path(get, path = "/rollouts/{id}/activity", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id"), ActivityQuery),
    responses((status = 200, body = Activity),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter that is not a number, or a path that is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"), Internal))]
async fn rollout_activity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ActivityQuery>,
) -> ApiResult<Json<Activity>> {
    rollout_or_404(&state, &id).await?;
    let limit = q.limit.unwrap_or(10_000).clamp(1, 10_000);
    let events = match &q.device {
        Some(device) => state
            .db
            .device_events(&id, device)
            .await?
            .into_iter()
            .filter(|e| e.id > q.after.unwrap_or(0))
            .take(limit as usize)
            .collect(),
        None => {
            state
                .db
                .events_after(&id, q.after.unwrap_or(0), limit)
                .await?
        }
    };
    Ok(Json(Activity { events }))
}

/// One message of the event stream: `event` is the event's kind (`GET /vocabulary`), `id` its
/// number, `data` the event as JSON; `lagged` (with `{}`) tells a reader that fell behind to
/// read the rollout again.
#[allow(dead_code)] // the OpenAPI description of what `sse` writes
#[derive(ToSchema)]
pub(super) struct SseMessage {
    id: Option<String>,
    event: String,
    #[schema(content_media_type = "application/json")]
    data: String,
}

fn sse(ev: &Event) -> SseEvent {
    SseEvent::default()
        .id(ev.id.to_string())
        .event(ev.kind.as_str())
        .data(serde_json::to_string(ev).unwrap_or_default())
}

/// Server-sent events of a rollout: the history first, then live events as they happen.
/// Browsers, which cannot set headers on an EventSource, may pass `?token=`.
#[utoipa::path(get, path = "/rollouts/{id}/events", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id"), EventsQuery),
    responses((status = 200, content_type = "text/event-stream", body = SseMessage,
               description = "the events, then live ones as they happen; the stream does not end"),
              (status = 400, body = ErrorBody, description = "`bad_request`: `after` is not a number, or a path that is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: no such rollout"), Internal))]
async fn rollout_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    rollout_or_404(&state, &id).await?;
    let after = q.after.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    });
    // Subscribe before reading the history, so nothing falls between the two.
    let live = BroadcastStream::new(state.engine.subscribe());
    let history = state
        .db
        .events_after(&id, after.unwrap_or(0), 100_000)
        .await?;
    let last = history.last().map(|e| e.id).or(after).unwrap_or(0);
    let device = q.device.filter(|d| !d.is_empty());
    let wanted = move |ev: &Event| {
        device
            .as_deref()
            .is_none_or(|d| ev.device.as_deref() == Some(d))
    };
    let backlog = stream::iter(
        history
            .into_iter()
            .filter(|e| wanted(e))
            .map(|e| Ok(sse(&e)))
            .collect::<Vec<_>>(),
    );
    let rollout = id.clone();
    let live = live.filter_map(move |msg| {
        let keep = match msg {
            Ok(ev) if ev.rollout_id.as_str() == rollout && ev.id > last && wanted(&ev) => {
                Some(Ok(sse(&ev)))
            }
            // A slow reader missed events: tell it to reload, rather than show a gap.
            Err(_) => Some(Ok(SseEvent::default().event("lagged").data("{}"))),
            _ => None,
        };
        std::future::ready(keep)
    });
    Ok(
        Sse::new(backlog.chain(live))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}
