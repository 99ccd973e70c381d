//! The REST API (`/api/v1`), `/metrics` and the embedded dashboard.
//!
//! Invariant: only this module knows HTTP and JSON request/response shapes.

mod access;
pub(crate) mod agents;
mod auth;
mod blobs;
mod configs;
mod device_view;
mod devices;
mod error;
mod golden;
mod images;
pub mod listen;
mod nodes;
mod notifications;
mod rollout_view;
mod rollouts;
mod schema;
mod sync;
mod system;
mod timing;
pub(crate) mod web;

pub use access::{AuditList, AuditView, CreatedToken, NewToken, TokenList, TokenView};
pub(crate) use auth::{ApiToken, TokenSource, Tokens, random_secret};
pub(crate) use configs::{ConfigDiffView, ConfigList, ConfigText};
pub use devices::DeviceList;
pub(crate) use devices::ImportResult;
pub(crate) use error::{ApiError, ApiResult, ErrorBody};
pub use golden::{ComplianceReport, GoldenInput, GoldenList, GoldenView};
pub use images::ImageList;
pub use notifications::{DeliveryList, DeliveryView};
pub(crate) use rollouts::{ActionResult, DeviceRow, RolloutDetail, RolloutList, WaveView};
pub use rollouts::{DryRun, NOTHING_TO_DO};

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::images::ImageStore;
use crate::rollout::Engine;
use crate::store::Db;
use crate::transfers::Transfers;

/// Largest JSON or YAML request body (inventories, playbooks).
pub(crate) const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub(crate) images: ImageStore,
    pub transfers: Transfers,
    pub(crate) engine: Engine,
    /// The tokens the API accepts (`crate::access`).
    pub(crate) tokens: Arc<auth::Tokens>,
    /// Allow GET requests without a token.
    pub read_open: bool,
    pub started: Instant,
    pub(crate) info: Arc<ServiceInfo>,
    /// What `GET /rollouts/{id}` serves from, kept up to date per rollout.
    pub(crate) views: Arc<rollout_view::RolloutViews>,
    /// Webhook deliveries by result, for `/metrics`.
    pub notify: crate::notify::NotifyStats,
    /// Calls of site agents' jobs answered here, by op, for `/metrics`.
    pub(crate) job_calls: Arc<agents::JobCalls>,
    /// The images each site needs, as this node read them last for its agents' heartbeats.
    pub(crate) site_images: Arc<agents::SiteImages>,
}

/// What the service listens on, for `/api/v1/health` and the dashboard.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ServiceInfo {
    pub version: String,
    pub http: Option<String>,
    pub tftp: Option<String>,
    pub ftp: Option<String>,
    /// The HTTP image server (`--image-http`), when on.
    pub image_http: Option<String>,
    /// The HTTPS image server (`--image-https`), when on.
    pub image_https: Option<String>,
    /// The SCP/SFTP image server (`--image-scp`), when on.
    pub scp: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fleetup API",
        description = "Inventory, images, transfers and rollouts of fleetup, the network fleet upgrade orchestrator. \
                       Every call needs `Authorization: Bearer <token>` (reads none with `--read-open`); a token's role \
                       (`viewer`, `operator`, `admin`) decides what it may do, and a call its role does not allow is answered 403.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes behind the token and their OpenAPI description, before state and layers.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(devices::router())
        .merge(device_view::router())
        .merge(configs::router())
        .merge(images::router())
        .merge(blobs::router())
        .merge(agents::router())
        .merge(rollouts::router())
        .merge(notifications::router())
        .merge(access::router())
        .merge(golden::router())
        .merge(nodes::router())
        .merge(sync::router())
        .merge(system::router())
}

/// The API routes anyone may call.
fn open_routes() -> OpenApiRouter<AppState> {
    system::open_router()
}

/// The OpenAPI document of the API: every route behind the token may answer 401 and 403 (the
/// [`auth::require_token`] layer that [`app`] puts on all of them); the open routes need none.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = api_routes().split_for_parts();
    let unauthorized = utoipa::openapi::ResponseBuilder::new()
        .description("`unauthorized`: missing or wrong API token")
        .header(
            "WWW-Authenticate",
            utoipa::openapi::HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::Type::String),
                ))
                .build(),
        )
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    let forbidden = utoipa::openapi::ResponseBuilder::new()
        .description("`forbidden`: the token's role does not allow this call")
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in api.paths.paths.values_mut() {
        for op in operations(item) {
            op.responses
                .responses
                .insert("401".into(), unauthorized.clone().into());
            op.responses
                .responses
                .entry("403".into())
                .or_insert_with(|| forbidden.clone().into());
        }
    }
    let (_, open) = open_routes().split_for_parts();
    api.merge(open);
    api.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    api
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The whole HTTP application.
pub(crate) fn app(state: AppState) -> Router {
    let (protected, _) = api_routes().split_for_parts();
    let protected = protected.route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let (open, _) = open_routes().split_for_parts();
    let api = Router::new()
        .merge(protected)
        .merge(open)
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(timing::app));
    let metrics = Router::new()
        .route("/metrics", axum::routing::get(system::metrics))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(web::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A list's `?limit=`: 1 to 1000, 100 when not given.
pub(crate) fn page_limit(given: Option<i64>) -> ApiResult<u32> {
    u32::try_from(given.unwrap_or(100))
        .ok()
        .filter(|l| (1..=1000).contains(l))
        .ok_or_else(|| ApiError::bad_request("limit must be 1 to 1000"))
}

/// For handlers that must turn a rejected extractor into our error shape.
pub(crate) fn rejection(status: StatusCode, message: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "too_large", message),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "unsupported_media_type", message)
        }
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::unprocessable(message),
        StatusCode::NOT_FOUND => ApiError::not_found(message),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(status, "method_not_allowed", message),
        StatusCode::UNAUTHORIZED => ApiError::new(status, "unauthorized", message),
        s if s.is_server_error() => ApiError::new(s, "internal", message),
        s if s.is_client_error() => ApiError::new(s, "bad_request", message),
        _ => ApiError::bad_request(message),
    }
}
