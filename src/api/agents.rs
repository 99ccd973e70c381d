//! `/agents`: the site agents (`fleetup agent`, [`crate::agent`]). An agent's heartbeat
//! says which images it holds checked, where the site's devices reach its file server and
//! what it transfers; the answer names the images the site's devices still have to copy.
//! Agents share the nodes table with the serve nodes (kind `agent`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ErrorBody, Internal, StorageFull};
use super::{ApiError, ApiResult, AppState};
use crate::agent::AgentTransfer;
use crate::agent::{AgentBeat, AgentOrders};
use crate::store::leases::{Heartbeat, NodeKind};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(heartbeat))
        .routes(routes!(list_agents))
}

/// Largest heartbeat body kept (the transfers it lists are capped by the agent).
const MAX_DETAIL: usize = 256 * 1024;

/// An agent's heartbeat: recorded, answered with the images its site needs.
#[utoipa::path(post, path = "/agents/heartbeat", tag = "agents", request_body = AgentBeat,
    responses((status = 200, body = AgentOrders),
              (status = 400, body = ErrorBody, description = "`bad_request`: not JSON"),
              (status = 413, body = ErrorBody, description = "`too_large`: a body over 4 MiB"),
              (status = 415, body = ErrorBody, description = "`unsupported_media_type`: not `Content-Type: application/json`"),
              (status = 422, body = ErrorBody, description = "`unprocessable`: no name or site, or a field of the wrong type"),
              Internal, StorageFull))]
async fn heartbeat(
    State(state): State<AppState>,
    Json(beat): Json<AgentBeat>,
) -> ApiResult<Json<AgentOrders>> {
    let (name, site) = (beat.name.as_str(), beat.site.as_str());
    let fits = |s: &str| (1..=200).contains(&s.chars().count());
    if !fits(name) || !fits(site) {
        return Err(ApiError::unprocessable(
            "an agent's heartbeat names the agent and its site (each 1 to 200 characters)",
        ));
    }
    let detail = AgentDetail {
        heartbeat_seconds: beat.heartbeat_seconds,
        tftp: beat.tftp.clone(),
        images: beat.images.clone(),
        transfers: beat.transfers.clone(),
    };
    let detail =
        serde_json::to_string(&detail).map_err(|e| ApiError::internal("agent heartbeat", &e))?;
    if detail.len() > MAX_DETAIL {
        return Err(ApiError::unprocessable("the heartbeat lists too much"));
    }
    state
        .db
        .node_heartbeat(&Heartbeat {
            name: name.to_string(),
            instance: beat.instance.clone(),
            version: beat.version.clone(),
            started_at: beat.started_at.clone(),
            url: None,
            kind: NodeKind::Agent,
            site: Some(site.to_string()),
            detail: Some(detail),
        })
        .await?;
    let mut images = Vec::new();
    for file_name in state.db.site_images_in_use(site).await? {
        match state.db.image_by_name(&file_name).await {
            Ok(img) => images.push(img),
            Err(crate::store::StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(AgentOrders { images }))
}

/// What an agent reported with its last heartbeat, as kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AgentDetail {
    /// Seconds between its heartbeats.
    pub heartbeat_seconds: u64,
    /// Where the site's devices reach its TFTP server.
    pub tftp: Option<String>,
    /// SHA-256 of the images it holds checked.
    pub images: Vec<String>,
    /// Its file server's latest transfers.
    pub transfers: Vec<AgentTransfer>,
}

/// One agent as its last heartbeat shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    pub name: String,
    pub site: String,
    pub version: String,
    pub started_at: String,
    /// Seconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_seconds: f64,
    /// Whether it beat within three of its intervals: a site whose agent is not live copies
    /// from the serve nodes.
    pub live: bool,
    #[serde(flatten)]
    pub detail: AgentDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

/// Every agent that ever beat, by name.
#[utoipa::path(get, path = "/agents", tag = "agents",
    responses((status = 200, body = AgentList), Internal))]
async fn list_agents(State(state): State<AppState>) -> ApiResult<Json<AgentList>> {
    let agents = state
        .db
        .nodes()
        .await?
        .into_iter()
        .filter(|n| n.kind == NodeKind::Agent)
        .map(|n| {
            let detail: AgentDetail = n
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            AgentView {
                live: is_live(n.heartbeat_age_ms, detail.heartbeat_seconds),
                name: n.name,
                site: n.site.unwrap_or_default(),
                version: n.version,
                started_at: n.started_at,
                heartbeat_age_seconds: n.heartbeat_age_ms.max(0) as f64 / 1000.0,
                detail,
            }
        })
        .collect();
    Ok(Json(AgentList { agents }))
}

/// An agent is live while its last heartbeat is younger than three of its intervals.
pub(crate) fn is_live(age_ms: i64, heartbeat_seconds: u64) -> bool {
    let interval = i64::try_from(heartbeat_seconds.clamp(1, 300)).unwrap_or(300);
    age_ms < 3 * interval * 1000
}
