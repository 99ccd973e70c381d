//! `/blobs/sha256/{sha256}`: an image's bytes by content, for the other fleetup nodes and the
//! site agents that lack it (`crate::images::cache`). The file is checked against its SHA-256
//! before it is sent; a node that lacks it fetches it from another node first, unless the
//! request itself comes from a node fetching (`x-fleetup-fetch-for` naming a node, not a site
//! agent), which keeps fetches from going round in circles.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, ErrorBody, Internal};
use super::{ApiError, ApiResult, AppState};
use crate::images::cache::PEER_HEADER;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_blob))
}

/// An image's bytes, by SHA-256 (what nodes and agents fetch); checked against the checksum
/// before they are sent.
#[utoipa::path(get, path = "/blobs/sha256/{sha256}", tag = "images",
    params(("sha256" = String, Path, description = "the image's SHA-256, 64 lower-case hex digits")),
    responses((status = 200, description = "the image's bytes", content_type = "application/octet-stream"),
              BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: no image with that SHA-256 (or not a SHA-256), or none whose file this node has or can fetch"),
              Internal))]
async fn get_blob(
    State(state): State<AppState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ApiError::not_found(
            "no image has that SHA-256 (64 lower-case hexadecimal digits)",
        ));
    }
    let record = match state.db.image_by_sha256(&sha256).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(ApiError::not_found("no image has that SHA-256")),
        Err(e) => return Err(e.into()),
    };
    // A node fetching for itself gets what this node has; a site agent (which serves no
    // blobs, so no fetch can come back round) gets what this node has or can fetch.
    let from_peers = match headers.get(PEER_HEADER).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(fetcher) => state.db.nodes().await.is_ok_and(|nodes| {
            nodes
                .iter()
                .any(|n| n.name == fetcher && n.kind == crate::store::leases::NodeKind::Agent)
        }),
    };
    let path = state.images.ensure_local(&record, from_peers).await?;
    // Evicted in between (another fetch made room): as if it were not here.
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::not_found("the image's file is not on this node"))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, record.size)
        .header(header::ETAG, format!("\"sha256:{sha256}\""))
        .body(Body::from_stream(
            tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024),
        ))
        .map_err(|e| ApiError::internal("blob response", &e))
}
