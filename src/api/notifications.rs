//! `/notifications/deliveries`: the history of webhook deliveries (`crate::notify`), newest
//! first. A target's URL is shown as it is stored, redacted; its signing secret is never
//! stored.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Internal;
use super::{ApiResult, AppState, ErrorBody};
use crate::notify::{DeliveryRecord, DeliveryState, Format, NotificationKind};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_deliveries))
}

/// One webhook delivery: a notification sent to one target.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Also sent as `X-Fleetup-Delivery`.
    pub id: i64,
    pub rollout_id: String,
    /// The rollout event it tells of (the `id` of the JSON payload).
    pub event_id: i64,
    /// The webhook's URL without user, password, query, or the path past its first segment.
    pub target: String,
    pub format: Format,
    pub kind: NotificationKind,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last attempt did not deliver (or why the delivery never left).
    pub last_error: Option<String>,
    pub state: DeliveryState,
    pub created_at: String,
    pub updated_at: String,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(r: DeliveryRecord) -> Self {
        DeliveryView {
            id: r.id,
            rollout_id: r.rollout_id,
            event_id: r.event_id,
            target: r.target,
            format: r.format,
            kind: r.kind,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            state: r.state,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveryQuery {
    /// Only this rollout's deliveries.
    rollout: Option<String>,
    /// How many, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Webhook deliveries, newest first: target (redacted), notification, attempts, last status
/// or error, and state (`pending`, `delivered`, `failed`).
#[utoipa::path(get, path = "/notifications/deliveries", tag = "notifications", params(DeliveryQuery),
    responses((status = 200, body = DeliveryList),
              (status = 400, body = ErrorBody, description = "`bad_request`: a query parameter out of range or of the wrong type"),
              Internal))]
async fn list_deliveries(
    State(state): State<AppState>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let limit = super::page_limit(q.limit)?;
    let deliveries = state.db.deliveries(q.rollout.as_deref(), limit).await?;
    Ok(Json(DeliveryList {
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
    }))
}
