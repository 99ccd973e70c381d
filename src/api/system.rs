//! Health, live transfers, metrics and the OpenAPI document.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiResult, AppState, ServiceInfo};
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

/// Prometheus text exposition format.
pub(super) async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let mut out = String::new();
    let page = state
        .db
        .list_devices(&crate::store::DeviceFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    let images = state.images.list().await?;
    let _ = writeln!(out, "# HELP fleetup_devices Devices in the inventory.");
    let _ = writeln!(out, "# TYPE fleetup_devices gauge");
    let _ = writeln!(out, "fleetup_devices {}", page.total);
    let _ = writeln!(
        out,
        "# HELP fleetup_device_versions Devices per site and running version."
    );
    let _ = writeln!(out, "# TYPE fleetup_device_versions gauge");
    for (site, version, n) in state.db.version_counts().await? {
        let _ = writeln!(
            out,
            "fleetup_device_versions{{site=\"{}\",version=\"{}\"}} {n}",
            escape(site.as_deref().unwrap_or("")),
            escape(version.as_deref().unwrap_or("unknown"))
        );
    }
    let report = super::golden::report(&state, None).await?;
    let _ = writeln!(
        out,
        "# HELP fleetup_compliance_devices Devices per site and status against their golden image (docs/golden.md)."
    );
    let _ = writeln!(out, "# TYPE fleetup_compliance_devices gauge");
    for site in &report.sites {
        for (status, n) in [
            ("compliant", site.compliant),
            ("outdated", site.outdated),
            ("ahead", site.ahead),
            ("unknown", site.unknown),
        ] {
            let _ = writeln!(
                out,
                "fleetup_compliance_devices{{site=\"{}\",status=\"{status}\"}} {n}",
                escape(&site.name)
            );
        }
    }
    let _ = writeln!(out, "# HELP fleetup_images Images in the store.");
    let _ = writeln!(out, "# TYPE fleetup_images gauge");
    let _ = writeln!(out, "fleetup_images {}", images.len());
    let snapshot = state.transfers.snapshot();
    let _ = writeln!(
        out,
        "# HELP fleetup_transfers_active File transfers in progress."
    );
    let _ = writeln!(out, "# TYPE fleetup_transfers_active gauge");
    for p in Protocol::ALL {
        let active = snapshot
            .iter()
            .filter(|t| t.protocol == p && t.state == crate::transfers::TransferState::Active)
            .count();
        let _ = writeln!(
            out,
            "fleetup_transfers_active{{protocol=\"{}\"}} {active}",
            p.as_str()
        );
    }
    let _ = writeln!(
        out,
        "# HELP fleetup_transfers_total Finished file transfers."
    );
    let _ = writeln!(out, "# TYPE fleetup_transfers_total counter");
    for p in Protocol::ALL {
        let c = state.transfers.counters(p);
        let _ = writeln!(
            out,
            "fleetup_transfers_total{{protocol=\"{}\",result=\"completed\"}} {}",
            p.as_str(),
            c.completed
        );
        let _ = writeln!(
            out,
            "fleetup_transfers_total{{protocol=\"{}\",result=\"failed\"}} {}",
            p.as_str(),
            c.failed
        );
    }
    let _ = writeln!(
        out,
        "# HELP fleetup_transfer_bytes_total Bytes sent by finished transfers."
    );
    let _ = writeln!(out, "# TYPE fleetup_transfer_bytes_total counter");
    for p in Protocol::ALL {
        let c = state.transfers.counters(p);
        let _ = writeln!(
            out,
            "fleetup_transfer_bytes_total{{protocol=\"{}\"}} {}",
            p.as_str(),
            c.bytes
        );
    }
    let n = state.notify.snapshot();
    let _ = writeln!(
        out,
        "# HELP fleetup_webhook_deliveries_total Webhook deliveries by result (retried: attempts followed by another; dropped: never sent, the queue was full)."
    );
    let _ = writeln!(out, "# TYPE fleetup_webhook_deliveries_total counter");
    for (result, count) in [
        ("delivered", n.delivered),
        ("failed", n.failed),
        ("dropped", n.dropped),
        ("retried", n.retried),
    ] {
        let _ = writeln!(
            out,
            "fleetup_webhook_deliveries_total{{result=\"{result}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP fleetup_uptime_seconds Seconds since the service started."
    );
    let _ = writeln!(out, "# TYPE fleetup_uptime_seconds gauge");
    let _ = writeln!(
        out,
        "fleetup_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
