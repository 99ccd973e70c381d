//! Health, live transfers, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, AppState, ServiceInfo};
use crate::metrics::{Exposition, Kind};
use crate::rollout::model::{EventKind, JobState, RolloutState};
use crate::transfers::{Protocol, TransferInfo};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_transfers))
        .routes(routes!(vocabulary))
}

/// The routes that need no token.
pub(super) fn open_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(openapi_json))
}

#[derive(Serialize, ToSchema)]
pub(super) struct EventKindInfo {
    kind: EventKind,
    /// Something went wrong (shown in red).
    bad: bool,
    /// About the whole rollout (read out to screen readers).
    rollout_wide: bool,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RolloutStateInfo {
    state: RolloutState,
    /// Nothing more happens unless failed devices are retried.
    ended: bool,
    /// Failed devices may be put back in line.
    may_retry: bool,
}

#[derive(Serialize, ToSchema)]
pub(super) struct JobStateInfo {
    state: JobState,
    finished: bool,
}

/// Every event kind, rollout state and device job state the service uses, with what a client
/// needs to know of each: the dashboard builds its lists from this, never from its own copy.
#[derive(Serialize, ToSchema)]
pub(super) struct Vocabulary {
    event_kinds: Vec<EventKindInfo>,
    rollout_states: Vec<RolloutStateInfo>,
    job_states: Vec<JobStateInfo>,
}

/// The service's vocabulary: event kinds (the SSE event names), rollout and job states.
#[utoipa::path(get, path = "/vocabulary", tag = "system", responses((status = 200, body = Vocabulary)))]
async fn vocabulary() -> Json<Vocabulary> {
    Json(Vocabulary {
        event_kinds: EventKind::ALL
            .iter()
            .map(|&kind| EventKindInfo {
                kind,
                bad: kind.is_bad(),
                rollout_wide: kind.is_rollout_wide(),
            })
            .collect(),
        rollout_states: RolloutState::ALL
            .iter()
            .map(|&state| RolloutStateInfo {
                state,
                ended: state.is_ended(),
                may_retry: state.may_retry(),
            })
            .collect(),
        job_states: JobState::ALL
            .iter()
            .map(|&state| JobStateInfo {
                state,
                finished: state.is_finished(),
            })
            .collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub(super) struct Health {
    /// `ok`, or `degraded` while the database cannot be read or written.
    status: &'static str,
    database: &'static str,
    /// Why the service is degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    uptime_seconds: u64,
    service: ServiceInfo,
}

/// Liveness and readiness: answers without a token, for load balancers and monitoring.
/// Degraded (503) when the database does not answer, or cannot take writes (a full disk).
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, body = Health, description = "`ok`"),
              (status = 503, body = Health, description = "`degraded`, with the reason")))]
pub(super) async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let (database, reason) = match state.db.ping().await {
        Err(e) => (
            "unreachable",
            Some(format!("the database does not answer: {e}")),
        ),
        Ok(()) => match state.db.storage_problem().await {
            Some(why) => ("read_only", Some(why)),
            None => ("ok", None),
        },
    };
    let ok = reason.is_none();
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        database,
        reason,
        uptime_seconds: state.started.elapsed().as_secs(),
        service: (*state.info).clone(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[derive(Serialize, ToSchema)]
pub(super) struct TransferList {
    /// Active transfers first, then recently finished ones.
    transfers: Vec<TransferInfo>,
}

/// TFTP and FTP transfers: active ones with bytes sent so far, then recent ones.
#[utoipa::path(get, path = "/transfers", tag = "transfers", responses((status = 200, body = TransferList)))]
async fn list_transfers(State(state): State<AppState>) -> Json<TransferList> {
    Json(TransferList {
        transfers: state.transfers.snapshot(),
    })
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", security(()),
    responses((status = 200, content_type = "application/json", body = Object,
               description = "the OpenAPI 3.1 document")))]
pub(super) async fn openapi_json() -> impl IntoResponse {
    Json(super::openapi())
}

/// Prometheus text exposition format: every metric is in docs/api.md, and on the Grafana
/// dashboard `docs/grafana/fleetup.json`.
pub(super) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let page = state
        .db
        .list_devices(&crate::store::DeviceFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    let images = state.images.list().await?;
    let mut out = Exposition::default();
    out.family("fleetup_devices", Kind::Gauge, "Devices in the inventory.");
    out.sample("fleetup_devices", &[], page.total);
    out.family(
        "fleetup_device_versions",
        Kind::Gauge,
        "Devices per site and running version.",
    );
    for (site, version, n) in state.db.version_counts().await? {
        out.sample(
            "fleetup_device_versions",
            &[
                ("site", site.as_deref().unwrap_or("")),
                ("version", version.as_deref().unwrap_or("unknown")),
            ],
            n,
        );
    }
    let report = super::golden::report(&state, None).await?;
    out.family(
        "fleetup_compliance_devices",
        Kind::Gauge,
        "Devices per site and status against their golden image (docs/golden.md).",
    );
    for site in &report.sites {
        for (status, n) in [
            ("compliant", site.compliant),
            ("outdated", site.outdated),
            ("ahead", site.ahead),
            ("unknown", site.unknown),
        ] {
            out.sample(
                "fleetup_compliance_devices",
                &[("site", &site.name), ("status", status)],
                n,
            );
        }
    }
    out.family("fleetup_images", Kind::Gauge, "Images in the store.");
    out.sample("fleetup_images", &[], images.len());

    let rollouts = state.db.rollouts_by_state().await?;
    out.family(
        "fleetup_rollouts",
        Kind::Gauge,
        "Rollouts by state, every state listed.",
    );
    for s in RolloutState::ALL {
        let n = rollouts.get(s).copied().unwrap_or(0);
        out.sample("fleetup_rollouts", &[("state", s.as_str())], n);
    }
    let jobs = state.db.jobs_by_state().await?;
    out.family(
        "fleetup_jobs",
        Kind::Gauge,
        "Device jobs of every rollout by state, every state listed.",
    );
    for s in JobState::ALL {
        let n = jobs.get(s).copied().unwrap_or(0);
        out.sample("fleetup_jobs", &[("state", s.as_str())], n);
    }

    let snapshot = state.transfers.snapshot();
    out.family(
        "fleetup_transfers_active",
        Kind::Gauge,
        "File transfers in progress.",
    );
    for p in Protocol::ALL {
        let active = snapshot
            .iter()
            .filter(|t| t.protocol == p && t.state == crate::transfers::TransferState::Active)
            .count();
        out.sample(
            "fleetup_transfers_active",
            &[("protocol", p.as_str())],
            active,
        );
    }
    out.family(
        "fleetup_transfers_total",
        Kind::Counter,
        "Finished file transfers.",
    );
    for p in Protocol::ALL {
        let c = state.transfers.counters(p);
        for (result, n) in [("completed", c.completed), ("failed", c.failed)] {
            out.sample(
                "fleetup_transfers_total",
                &[("protocol", p.as_str()), ("result", result)],
                n,
            );
        }
    }
    out.family(
        "fleetup_transfer_bytes_total",
        Kind::Counter,
        "Bytes sent by finished transfers.",
    );
    for p in Protocol::ALL {
        let c = state.transfers.counters(p);
        out.sample(
            "fleetup_transfer_bytes_total",
            &[("protocol", p.as_str())],
            c.bytes,
        );
    }
    let n = state.notify.snapshot();
    out.family(
        "fleetup_webhook_deliveries_total",
        Kind::Counter,
        "Webhook deliveries by result (retried: attempts followed by another; dropped: never sent, the queue was full).",
    );
    for (result, count) in [
        ("delivered", n.delivered),
        ("failed", n.failed),
        ("dropped", n.dropped),
        ("retried", n.retried),
    ] {
        out.sample(
            "fleetup_webhook_deliveries_total",
            &[("result", result)],
            count,
        );
    }
    let (by_request, by_refresh) = state.views.catch_ups();
    out.family(
        "fleetup_rollout_view_catch_ups_total",
        Kind::Counter,
        "Times a rollout's view (GET /rollouts/{id}) read what changed: by a request itself, or by the background refresh of a polled view.",
    );
    for (by, n) in [("request", by_request), ("refresh", by_refresh)] {
        out.sample("fleetup_rollout_view_catch_ups_total", &[("by", by)], n);
    }
    out.family(
        "fleetup_agent_job_requests_total",
        Kind::Counter,
        "Calls of site agents' device jobs answered by this node (POST /agents/jobs/{rollout}/{device}).",
    );
    out.sample(
        "fleetup_agent_job_requests_total",
        &[],
        state.job_calls.requests(),
    );
    out.family(
        "fleetup_agent_job_calls_total",
        Kind::Counter,
        "Ops of site agents' device jobs answered by this node, by op: a batch counts once as batch and once for each op it carries.",
    );
    for (op, n) in state.job_calls.counts() {
        out.sample("fleetup_agent_job_calls_total", &[("op", op)], n);
    }
    state.engine.metrics().write(&mut out);
    let slots = state.engine.slots();
    out.family(
        "fleetup_device_slots",
        Kind::Gauge,
        "This node's device slots (--max-concurrent-devices): busy (held by a device job, or by its rollout about to start one) and free.",
    );
    for (use_, n) in [
        ("busy", slots.busy),
        ("free", slots.size.saturating_sub(slots.busy)),
    ] {
        out.sample("fleetup_device_slots", &[("state", use_)], n);
    }
    out.family(
        "fleetup_device_slot_waits",
        Kind::Gauge,
        "Rollouts waiting for one of this node's device slots.",
    );
    out.sample("fleetup_device_slot_waits", &[], slots.waiting);
    out.family(
        "fleetup_uptime_seconds",
        Kind::Gauge,
        "Seconds since the service started.",
    );
    out.sample(
        "fleetup_uptime_seconds",
        &[],
        state.started.elapsed().as_secs(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.finish(),
    ))
}
