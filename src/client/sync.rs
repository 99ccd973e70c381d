//! `fleetup inventory sync`: read Nautobot or NetBox from here (with the token of this
//! shell's environment) and send the mapped devices to the service, which applies them.

use super::{Client, ClientError};
use crate::sync::source::Source;
use crate::sync::{SyncDefaults, SyncReport, SyncRequest};

/// Why a sync did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] crate::sync::source::SourceError),
    #[error(transparent)]
    Service(#[from] ClientError),
}

/// Read the source, then apply (or, dry, compare) on the service.
pub async fn sync(
    c: &Client,
    source: &Source,
    defaults: SyncDefaults,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let fetched = source.fetch(&crate::http_client::client()).await?;
    let req = SyncRequest {
        scope: source.scope(),
        dry_run,
        devices: fetched.records,
        skipped: fetched.skipped,
        defaults,
    };
    let body = serde_json::to_value(&req).map_err(|e| ClientError::Decode(e.to_string()))?;
    Ok(c.post_json("/inventory/sync", &body).await?)
}
