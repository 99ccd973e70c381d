//! The device as the driver sees it: where it is, how to log in, which host key to expect.

use std::path::PathBuf;

use super::transcript::Transcript;
use crate::inventory::{Login, Platform};

/// One device as the driver needs it.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub platform: Platform,
    pub login: Login,
    /// A private key file for public-key login, tried before the password.
    pub private_key: Option<PathBuf>,
    /// The pinned host key (`ssh-ed25519 AAAA...`); `None` trusts the key seen on first use.
    pub known_host_key: Option<String>,
    /// Where every session with this device records what was sent and answered; `None`
    /// keeps nothing.
    pub transcript: Option<Transcript>,
}

impl Target {
    /// The driver's view of an inventory device: address, platform, resolved credentials and
    /// the pinned host key.
    pub(crate) fn from_device(device: &crate::inventory::Device) -> Result<Target, String> {
        Ok(Target {
            name: device.name().to_string(),
            host: device.spec.host.clone(),
            port: device.spec.port,
            platform: device.spec.platform,
            login: device.login()?,
            private_key: None,
            known_host_key: device.host_key.clone(),
            transcript: None,
        })
    }
}
