//! `/images`: the image store over HTTP. Uploads are streamed to disk chunk by chunk.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{BadPath, Internal, StorageFull};
use super::{ApiError, ApiResult, AppState, ErrorBody, rejection};
use crate::images::{ImageError, ImageMeta, ImageRecord};
use crate::inventory::Platform;

pub(super) fn router() -> OpenApiRouter<AppState> {
    let upload = OpenApiRouter::new()
        .routes(routes!(upload_image))
        .layer(DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .routes(routes!(list_images))
        .routes(routes!(get_image, delete_image))
        .merge(upload)
}

#[derive(Serialize, serde::Deserialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageRecord>,
}

/// Images in the store, with their checksums.
#[utoipa::path(get, path = "/images", tag = "images", responses((status = 200, body = ImageList), Internal))]
async fn list_images(State(state): State<AppState>) -> ApiResult<Json<ImageList>> {
    Ok(Json(ImageList {
        images: state.images.list().await?,
    }))
}

/// Multipart form of an upload. Other fields are refused.
#[allow(dead_code)] // the OpenAPI description of what `upload_image` reads
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadForm {
    /// The image file; its file name is kept unless `file_name` is given.
    #[schema(value_type = String, format = Binary)]
    file: String,
    /// Store under this name instead of the uploaded file's name.
    #[schema(schema_with = file_name_schema, required = false)]
    file_name: Option<String>,
    /// ios, iosxe or nxos (guessed from the file name when absent).
    #[schema(nullable = false)]
    platform: Option<Platform>,
    /// Version as `show version` prints it (guessed from the file name when absent).
    #[schema(max_length = 256, nullable = false)]
    version: Option<String>,
}

fn file_name_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(crate::images::FILE_NAME_PATTERN))
        .build()
}

/// Upload an image (`multipart/form-data` with a `file` field, streamed to disk). MD5 and
/// SHA-256 are computed on the way; the same content twice is refused with 409.
#[utoipa::path(post, path = "/images", tag = "images",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = ImageRecord),
              (status = 400, body = ErrorBody, description = "`bad_request`: not a multipart form, a broken one, an unknown field, no `file` field or two, a text field that is not UTF-8"),
              (status = 409, body = ErrorBody, description = "`conflict`: an image of that name or with the same content is stored"),
              (status = 413, body = ErrorBody, description = "`too_large`: the image is above --max-image-size, or a text field above 256 bytes"),
              (status = 422, body = ErrorBody, description = "`invalid`: no file name, a file name a device cannot copy, an unknown platform, or a platform or version that cannot be guessed"),
              Internal, StorageFull))]
async fn upload_image(
    State(state): State<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<ImageRecord>)> {
    let mut multipart = multipart.map_err(|r| rejection(r.status(), r.body_text()))?;
    let mut upload = None;
    let mut meta = ImageMeta::default();
    let mut uploaded_name = None;
    let bad = |e: axum::extract::multipart::MultipartError| {
        rejection(
            e.status(),
            format!("reading the upload failed: {}", e.body_text()),
        )
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                if upload.is_some() {
                    return Err(ApiError::bad_request("only one `file` field per upload"));
                }
                uploaded_name = field.file_name().map(str::to_string);
                let mut up = state.images.begin_upload().await?;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    up.write(&chunk).await?;
                }
                upload = Some(up);
            }
            "file_name" => {
                meta.file_name = text_field(&mut field, "file_name").await?;
                // An empty field would silently fall back to the uploaded file's name.
                if meta.file_name.is_empty() {
                    return Err(ApiError::unprocessable(
                        "form field `file_name` is empty: leave it out to keep the uploaded file's name",
                    ));
                }
            }
            "platform" => {
                let p = text_field(&mut field, "platform").await?;
                if Platform::parse(&p).is_none() {
                    return Err(ImageError::BadPlatform(p).into());
                }
                meta.platform = Some(p);
            }
            "version" => meta.version = Some(text_field(&mut field, "version").await?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field {other:?} (expected file, file_name, platform, version)"
                )));
            }
        }
    }
    let upload = upload.ok_or_else(|| ApiError::bad_request("the form has no `file` field"))?;
    meta.file_name = crate::images::upload_name(&meta.file_name, uploaded_name.as_deref());
    if meta.file_name.is_empty() {
        return Err(ApiError::unprocessable(
            "the upload has no file name: send one with the file or in a `file_name` field",
        ));
    }
    let record = upload.finish(meta).await?;
    tracing::info!(image = %record.file_name, size = record.size, md5 = %record.md5, "image stored");
    Ok((StatusCode::CREATED, Json(record)))
}

/// Longest text field of an upload form (`file_name`, `platform`, `version`), in characters
/// (the OpenAPI document's `maxLength`): far more than any Cisco file name or version needs.
pub const MAX_FORM_FIELD: usize = 256;

/// A text field of the upload form, as sent; read chunk by chunk and refused (413) as soon as
/// it grows beyond [`MAX_FORM_FIELD`] characters (at most 4 bytes each), so a huge field is
/// never held in memory.
async fn text_field(
    field: &mut axum::extract::multipart::Field<'_>,
    name: &str,
) -> ApiResult<String> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        rejection(
            e.status(),
            format!("reading the upload failed: {}", e.body_text()),
        )
    })? {
        if text.len() + chunk.len() > 4 * MAX_FORM_FIELD {
            return Err(too_long(name));
        }
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text)
        .map_err(|_| ApiError::bad_request(format!("form field `{name}` is not UTF-8 text")))?;
    if text.chars().count() > MAX_FORM_FIELD {
        return Err(too_long(name));
    }
    Ok(text)
}

fn too_long(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("form field `{name}` is longer than {MAX_FORM_FIELD} characters"),
    )
}

/// One image.
#[utoipa::path(get, path = "/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image file name")),
    responses((status = 200, body = ImageRecord), BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: no image of that name"), Internal))]
async fn get_image(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ImageRecord>> {
    Ok(Json(state.images.get(&name).await?))
}

/// Delete an image; refused (409) while a rollout that has not ended uses it.
#[utoipa::path(delete, path = "/images/{name}", tag = "images",
    params(("name" = String, Path, description = "image file name")),
    responses((status = 204, description = "deleted"), BadPath,
              (status = 404, body = ErrorBody, description = "`not_found`: no image of that name"),
              (status = 409, body = ErrorBody, description = "`conflict`: a rollout that has not ended uses it"),
              Internal, StorageFull))]
async fn delete_image(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.images.delete(&name).await?;
    tracing::info!(image = %name, "image deleted");
    Ok(StatusCode::NO_CONTENT)
}
