//! `/devices/{name}/history` and `/devices/{name}/rollouts/{id}`: one device's past, for the
//! device page of the dashboard: its facts over time, the rollouts that included it, and per
//! rollout its steps with what fleetup sent and what the device answered.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, Internal};
use super::schema::DeviceNameParam;
use super::{ApiError, ApiResult, AppState, ErrorBody};
use crate::inventory::FactsSnapshot;
use crate::rollout::model::{DeviceJob, RolloutState, TranscriptLine};
use crate::rollout::report::{self, StepTiming};
use crate::store::StoreError;
use crate::transfers::TransferInfo;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_history))
        .routes(routes!(device_job))
}

/// The facts read from the device at one time.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct FactsEntry {
    version: Option<String>,
    image: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    uptime: Option<String>,
    /// When they were read (RFC 3339).
    at: String,
}

impl From<FactsSnapshot> for FactsEntry {
    fn from(f: FactsSnapshot) -> Self {
        FactsEntry {
            version: f.version,
            image: f.image,
            model: f.model,
            serial: f.serial,
            uptime: f.uptime,
            at: f.at,
        }
    }
}

/// A rollout that included the device: the device's job in it (state, versions before and
/// after, error, attempts) and its step timings.
#[derive(Serialize, ToSchema)]
pub(super) struct DeviceRolloutEntry {
    rollout_id: String,
    rollout_name: String,
    rollout_state: RolloutState,
    rollout_created_at: String,
    #[serde(flatten)]
    job: DeviceJob,
    steps: Vec<StepTiming>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeviceHistory {
    device: String,
    /// Newest first; the last 100 are kept.
    facts: Vec<FactsEntry>,
    /// Newest first.
    rollouts: Vec<DeviceRolloutEntry>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// How many rollouts, newest first: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A device's facts history and the rollouts that included it.
#[utoipa::path(get, path = "/devices/{name}/history", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name"), HistoryQuery),
    responses((status = 200, body = DeviceHistory),
              (status = 400, body = ErrorBody, description = "`bad_request`: `limit` out of range or not a number, or a path that is not UTF-8"),
              (status = 404, body = ErrorBody, description = "`not_found`: the device is neither in the inventory nor in any rollout"),
              Internal))]
async fn device_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<DeviceHistory>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1 to 500"));
    }
    let known = match state.db.device_by_name(&name).await {
        Ok(_) => true,
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    let jobs = state.db.device_rollouts(&name, limit).await?;
    // A device removed from the inventory keeps the rollouts it was part of.
    if !known && jobs.is_empty() {
        return Err(ApiError::not_found(format!(
            "no device named {name:?} in the inventory or in any rollout"
        )));
    }
    let facts = state.db.facts_history(&name).await?;
    let mut rollouts = Vec::with_capacity(jobs.len());
    for r in jobs {
        let events = state.db.device_step_events(&r.rollout_id, &name).await?;
        let steps = report::step_timings(&events)
            .remove(&name)
            .unwrap_or_default();
        rollouts.push(DeviceRolloutEntry {
            rollout_id: r.rollout_id.to_string(),
            rollout_name: r.rollout_name,
            rollout_state: r.rollout_state,
            rollout_created_at: r.rollout_created_at,
            job: r.job,
            steps,
        });
    }
    Ok(Json(DeviceHistory {
        device: name,
        facts: facts.into_iter().map(FactsEntry::from).collect(),
        rollouts,
    }))
}

/// One line of a job's transcript: a command fleetup sent and the device's output, an answer
/// fleetup typed to a question of the device (`command` is what was typed, empty for RETURN,
/// `output` the question), or a note (`[truncated]`). Secrets are replaced by `***`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TranscriptLineView {
    /// `command`, `answer` or `note`.
    kind: String,
    command: String,
    output: String,
    at: String,
    attempt: u32,
    step: Option<String>,
}

impl From<TranscriptLine> for TranscriptLineView {
    fn from(l: TranscriptLine) -> Self {
        TranscriptLineView {
            kind: l.kind.as_str().to_string(),
            command: l.command,
            output: l.output,
            at: l.at,
            attempt: l.attempt,
            step: l.step,
        }
    }
}

/// A step of the job with the lines sent and answered while it ran.
#[derive(Serialize, ToSchema)]
pub(super) struct StepWithTranscript {
    #[serde(flatten)]
    timing: StepTiming,
    transcript: Vec<TranscriptLineView>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct DeviceJobDetail {
    rollout_id: String,
    rollout_name: String,
    rollout_state: RolloutState,
    #[serde(flatten)]
    job: DeviceJob,
    /// The image transfer this job started (known by its job, never by the address alone).
    transfer: Option<TransferInfo>,
    steps: Vec<StepWithTranscript>,
    /// Lines kept outside any recorded step.
    other_lines: Vec<TranscriptLineView>,
}

fn parse_at(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// Each line goes to the latest run of its step that had started when the line was sent.
fn group(
    steps: Vec<StepTiming>,
    lines: Vec<TranscriptLine>,
) -> (Vec<StepWithTranscript>, Vec<TranscriptLineView>) {
    let starts: Vec<Option<jiff::Timestamp>> =
        steps.iter().map(|s| parse_at(&s.started_at)).collect();
    let mut out: Vec<StepWithTranscript> = steps
        .into_iter()
        .map(|timing| StepWithTranscript {
            timing,
            transcript: Vec::new(),
        })
        .collect();
    let mut other = Vec::new();
    for line in lines {
        let at = parse_at(&line.at);
        let slot = out.iter().enumerate().rposition(|(i, s)| {
            Some(s.timing.step.as_str()) == line.step.as_deref()
                && match (starts[i], at) {
                    (Some(start), Some(at)) => start <= at,
                    _ => true,
                }
        });
        // A line sent a moment before its step's start was written still belongs to it.
        let slot = slot.or_else(|| {
            out.iter()
                .position(|s| Some(s.timing.step.as_str()) == line.step.as_deref())
        });
        match slot {
            Some(i) => out[i].transcript.push(line.into()),
            None => other.push(line.into()),
        }
    }
    (out, other)
}

/// One rollout of a device: its job, its steps, and per step the commands fleetup sent with
/// the device's output (secrets replaced by `***`).
#[utoipa::path(get, path = "/devices/{name}/rollouts/{id}", tag = "inventory",
    params(("name" = inline(DeviceNameParam), Path, description = "device name"), ("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = DeviceJobDetail), BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: no such rollout, or the device is not part of it"),
              Internal))]
async fn device_job(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<DeviceJobDetail>> {
    let not_found = || ApiError::not_found(format!("device {name:?} is not part of rollout {id}"));
    let rollout = state.db.rollout_meta(&id).await.map_err(|e| match e {
        StoreError::NotFound => not_found(),
        e => e.into(),
    })?;
    let job = state.db.job(&id, &name).await.map_err(|e| match e {
        StoreError::NotFound => not_found(),
        e => e.into(),
    })?;
    let events = state.db.device_step_events(&id, &name).await?;
    let timings = report::step_timings(&events)
        .remove(&name)
        .unwrap_or_default();
    let lines = state.db.transcript(&id, &name).await?;
    let (steps, other_lines) = group(timings, lines);
    Ok(Json(DeviceJobDetail {
        transfer: state.transfers.of_job(&id, &name),
        rollout_id: rollout.id.to_string(),
        rollout_name: rollout.name,
        rollout_state: rollout.state,
        job,
        steps,
        other_lines,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::EntryKind;

    fn timing(step: &str, at: &str) -> StepTiming {
        StepTiming {
            step: step.into(),
            started_at: at.into(),
            finished_at: None,
            seconds: None,
            result: None,
        }
    }

    fn line(step: &str, at: &str) -> TranscriptLine {
        TranscriptLine {
            attempt: 1,
            step: Some(step.into()),
            kind: EntryKind::Command,
            command: format!("{step} at {at}"),
            output: String::new(),
            at: at.into(),
        }
    }

    #[test]
    fn lines_go_to_the_run_of_their_step() {
        let steps = vec![
            timing("connect", "2026-12-04T10:00:00Z"),
            timing("copy", "2026-12-04T10:00:01.5Z"),
            timing("connect", "2026-12-04T10:05:00Z"),
        ];
        let lines = vec![
            line("connect", "2026-12-04T10:00:00.25Z"),
            line("copy", "2026-12-04T10:00:01.123Z"),
            line("connect", "2026-12-04T10:05:00.5Z"),
            line("reload", "2026-12-04T10:06:00Z"),
        ];
        let (steps, other) = group(steps, lines);
        let n: Vec<usize> = steps.iter().map(|s| s.transcript.len()).collect();
        assert_eq!(n, [1, 1, 1]);
        assert!(steps[2].transcript[0].command.contains("10:05"));
        assert_eq!(other.len(), 1);
    }
}
