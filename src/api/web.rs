//! The dashboard: static assets from `web/`, compiled into the binary (debug builds read the
//! directory from disk, so editing a page needs no rebuild).

use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use super::AppState;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Assets;

pub(super) fn router() -> Router<AppState> {
    Router::new().fallback(serve_asset)
}

/// The dashboard file a request path names, if any; what the fuzz target checks never leaves
/// `web/`.
pub(crate) fn asset(path: &str) -> Option<rust_embed::EmbeddedFile> {
    Assets::get(path)
}

/// Every dashboard file's path.
pub(crate) fn asset_names() -> impl Iterator<Item = std::borrow::Cow<'static, str>> {
    Assets::iter()
}

async fn serve_asset(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    match asset(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
            ],
            file.data,
        )
            .into_response(),
        None if !path.contains('.') => match Assets::get("index.html") {
            // Client-side routes of the single-page dashboard.
            Some(file) => (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                file.data,
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        None => super::ApiError::not_found(format!("no such page: /{path}")).into_response(),
    }
}
