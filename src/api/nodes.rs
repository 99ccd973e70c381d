//! `/nodes`: the fleetup nodes that share this database, with their heartbeats and the
//! rollouts whose lease each holds (`crate::store::leases`). On SQLite the one node is listed.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Internal;
use super::{ApiResult, AppState};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_nodes))
}

/// One node as its last heartbeat shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// `--node-name` (default: the host name).
    pub name: String,
    /// The fleetup version it runs.
    pub version: String,
    /// When it started.
    pub started_at: String,
    /// Seconds since its last heartbeat, by the database's clock (it beats every third of
    /// its lease).
    pub heartbeat_age_seconds: f64,
    /// The rollouts it drives now (whose lease it holds).
    pub rollouts: Vec<String>,
    /// `node` (`fleetup serve`) or `agent` (`fleetup agent`).
    pub kind: crate::store::leases::NodeKind,
    /// Where its API answers (`--advertise-url`); other nodes fetch images there.
    pub url: Option<String>,
    /// An agent's site.
    pub site: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// The database the nodes share: `sqlite` or `postgres`.
    pub database: String,
    pub nodes: Vec<NodeView>,
}

/// Every node that ran on this database, by name.
#[utoipa::path(get, path = "/nodes", tag = "system",
    responses((status = 200, body = NodeList), Internal))]
async fn list_nodes(State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    let nodes = state.db.nodes().await?;
    Ok(Json(NodeList {
        database: state.db.backend().as_str().to_string(),
        nodes: nodes
            .into_iter()
            .map(|n| NodeView {
                name: n.name,
                version: n.version,
                started_at: n.started_at,
                heartbeat_age_seconds: n.heartbeat_age_ms.max(0) as f64 / 1000.0,
                rollouts: n.rollouts,
                kind: n.kind,
                url: n.url,
                site: n.site,
            })
            .collect(),
    }))
}
