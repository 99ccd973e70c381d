//! How long each kind of wait on a device may take.

use std::time::Duration;

/// How long each kind of wait may take.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// TCP connect plus SSH key exchange.
    pub connect: Duration,
    pub auth: Duration,
    /// An ordinary command (`show version`, `dir`, `write memory`).
    pub command: Duration,
    /// `copy URL flash:` (a 1 GB image over TFTP takes many minutes).
    pub copy: Duration,
    /// `verify /md5` of a large image.
    pub verify: Duration,
    /// IOS-XE `install add ... activate commit`, NX-OS `install all` up to the reload.
    pub install: Duration,
    /// From the reload to the device answering `show version` again.
    pub reload: Duration,
    /// Pause between reachability probes while the device boots.
    pub poll_interval: Duration,
    /// SSH keepalive interval while a long command prints nothing.
    pub keepalive: Duration,
    /// IOS-XE install mode: the `install activate auto-abort-timer` (whole minutes, 30 to
    /// 1200): not committed by then, the device rolls itself back.
    pub commit: Duration,
    /// Stacks and dual supervisors: after the active unit is back on the new version, how
    /// long every member and the standby supervisor may take to be Ready (HOT) on it.
    pub members: Duration,
}

impl Timeouts {
    /// The auto-abort timer in the minutes IOS-XE takes (30 to 1200).
    pub(crate) fn commit_minutes(&self) -> u64 {
        self.commit.as_secs().div_ceil(60).clamp(30, 1200)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            auth: Duration::from_secs(30),
            command: Duration::from_secs(120),
            copy: Duration::from_secs(3 * 3600),
            verify: Duration::from_secs(900),
            install: Duration::from_secs(3600),
            reload: Duration::from_secs(1800),
            poll_interval: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            commit: Duration::from_secs(30 * 60),
            members: Duration::from_secs(15 * 60),
        }
    }
}
