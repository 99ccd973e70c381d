//! SCP push into a device's flash (placeholder until the SCP client lands).

use std::path::Path;

use super::{DeviceError, Target, Timeouts};

pub(crate) async fn push(
    target: &Target,
    _local: &Path,
    _remote: &str,
    _size: u64,
    _timeouts: &Timeouts,
) -> Result<u64, DeviceError> {
    Err(DeviceError::Session {
        device: target.name.clone(),
        message: "scp-push is not available in this build".into(),
    })
}
