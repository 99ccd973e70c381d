//! The lab's JSON admin API: what each device looks like from the inside (version, boot
//! variable, flash, reload count, faults, last commands), and fault injection.
//!
//! - `GET    /api/devices`                      all device states
//! - `GET    /api/devices/{name}`               one device
//! - `POST   /api/devices/{name}/faults`        `{"fault": "tftp-timeout"}` adds a fault
//! - `DELETE /api/devices/{name}/faults`        clears all faults
//! - `DELETE /api/devices/{name}/faults/{kind}` clears one fault

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use super::device::{Device, DeviceState};
use super::{Fault, LabError};
use crate::shutdown::Shutdown;

type Devices = Arc<Vec<Arc<Device>>>;

enum AdminError {
    NoDevice(String),
    BadFault(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            AdminError::NoDevice(name) => (
                StatusCode::NOT_FOUND,
                "device_not_found",
                format!("no lab device named {name}"),
            ),
            AdminError::BadFault(message) => (StatusCode::BAD_REQUEST, "bad_fault", message),
        };
        (
            status,
            Json(serde_json::json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

fn find(devices: &Devices, name: &str) -> Result<Arc<Device>, AdminError> {
    devices
        .iter()
        .find(|d| d.name == name)
        .cloned()
        .ok_or_else(|| AdminError::NoDevice(name.to_string()))
}

async fn list(State(devices): State<Devices>) -> Json<Vec<DeviceState>> {
    Json(devices.iter().map(|d| d.snapshot()).collect())
}

async fn one(
    State(devices): State<Devices>,
    Path(name): Path<String>,
) -> Result<Json<DeviceState>, AdminError> {
    Ok(Json(find(&devices, &name)?.snapshot()))
}

#[derive(Deserialize)]
struct AddFault {
    fault: String,
}

async fn add_fault(
    State(devices): State<Devices>,
    Path(name): Path<String>,
    body: Result<Json<AddFault>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<DeviceState>, AdminError> {
    let dev = find(&devices, &name)?;
    let Json(body) = body.map_err(|e| {
        AdminError::BadFault(format!(
            "expected a JSON body like {{\"fault\": \"tftp-timeout\"}}: {e}"
        ))
    })?;
    let fault: Fault = body.fault.parse().map_err(AdminError::BadFault)?;
    dev.set_fault(fault);
    Ok(Json(dev.snapshot()))
}

async fn clear_faults(
    State(devices): State<Devices>,
    Path(name): Path<String>,
) -> Result<Json<DeviceState>, AdminError> {
    let dev = find(&devices, &name)?;
    dev.clear_faults();
    Ok(Json(dev.snapshot()))
}

async fn clear_fault(
    State(devices): State<Devices>,
    Path((name, kind)): Path<(String, String)>,
) -> Result<Json<DeviceState>, AdminError> {
    let dev = find(&devices, &name)?;
    let fault: Fault = kind.parse().map_err(AdminError::BadFault)?;
    dev.clear_fault(fault);
    Ok(Json(dev.snapshot()))
}

pub(super) fn router(devices: Vec<Arc<Device>>) -> Router {
    Router::new()
        .route("/api/devices", get(list))
        .route("/api/devices/{name}", get(one))
        .route(
            "/api/devices/{name}/faults",
            delete(clear_faults).post(add_fault),
        )
        .route("/api/devices/{name}/faults/{kind}", delete(clear_fault))
        .with_state(Arc::new(devices))
}

/// Bind and serve until shutdown; returns the bound address.
pub(super) async fn start(
    addr: SocketAddr,
    devices: Vec<Arc<Device>>,
    shutdown: Shutdown,
) -> Result<SocketAddr, LabError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| LabError::AdminBind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| LabError::AdminBind { addr, source })?;
    let app = router(devices);
    let token = shutdown.token.clone();
    shutdown.tasks.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "lab admin API stopped");
        }
    });
    Ok(bound)
}
