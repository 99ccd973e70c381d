//! `serve --facts-refresh DURATION`: re-read every device's facts in the background, so that
//! compliance stays true. The I/O shell beside the pure `golden` decisions.
//!
//! A round reads, at most [`CONCURRENCY`] at a time, the facts of every device not read within
//! the last half interval, leaving alone any device a rollout works on or may start on (a job
//! pending or running in a rollout that has not ended: checked before each read); then it
//! sleeps the interval. A device that cannot be read is logged and tried again next round.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::device::{DeviceError, Target, Timeouts};
use crate::shutdown::Shutdown;
use crate::store::Db;

/// Devices read at once.
pub const CONCURRENCY: usize = 4;

/// `--facts-refresh`: how often, or never (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval(pub Option<Duration>);

/// Parse `--facts-refresh`: a duration such as `24h`, `30m`, `90s` (at least 1 second), or
/// `off`.
pub fn parse_interval(v: &str) -> Result<Interval, String> {
    if v.trim() == "off" {
        return Ok(Interval(None));
    }
    let secs = crate::playbook::parse_duration(v)?;
    if secs == 0 {
        return Err("the facts refresh interval must be at least 1s (or `off`)".into());
    }
    Ok(Interval(Some(Duration::from_secs(secs))))
}

/// Start the background refresh on the service's shutdown.
pub(crate) fn start(db: Db, interval: Duration, shutdown: Shutdown) {
    let cancel = shutdown.token.clone();
    shutdown.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = round(&db, interval) => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    });
}

async fn busy(db: &Db, name: &str) -> bool {
    match db.devices_in_rollouts().await {
        Ok(busy) => busy.iter().any(|b| b == name),
        // Unsure: leave the device alone this round.
        Err(_) => true,
    }
}

/// One pass over the inventory.
async fn round(db: &Db, interval: Duration) {
    let devices = match db.all_devices().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(%e, "facts refresh: cannot list the devices");
            return;
        }
    };
    let now = jiff::Timestamp::now();
    let half = interval / 2;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut reads = tokio::task::JoinSet::new();
    for d in devices {
        // Gone from its source of truth: nobody expects fleetup to log in any more.
        if d.absent().is_some() {
            continue;
        }
        let fresh = d
            .facts
            .last_seen
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .is_some_and(|seen| {
                let age = now.duration_since(seen);
                !age.is_negative() && age.unsigned_abs() < half
            });
        if fresh {
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let db = db.clone();
        reads.spawn(async move {
            let _permit = permit;
            let name = d.name().to_string();
            if busy(&db, &name).await {
                tracing::debug!(device = %name, "facts refresh: in a rollout, left alone");
                return;
            }
            let target = match Target::from_device(&d) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(device = %name, %e, "facts refresh: cannot log in");
                    return;
                }
            };
            match crate::device::facts(&target, &Timeouts::default()).await {
                Ok((facts, new_key)) => {
                    if let Err(e) = db.set_facts(&name, &facts).await {
                        tracing::warn!(device = %name, %e, "facts refresh: not recorded");
                        return;
                    }
                    if let Some(key) = new_key
                        && db.set_host_key(&name, Some(&key)).await.is_ok()
                    {
                        tracing::info!(device = %name, "host key pinned on first contact");
                    }
                    tracing::debug!(device = %name, "facts refreshed");
                }
                Err(e @ DeviceError::HostKeyChanged { .. }) => {
                    tracing::warn!(device = %name, %e, "facts refresh: host key changed");
                }
                Err(e) => tracing::warn!(device = %name, %e, "facts refresh: cannot read"),
            }
        });
    }
    while reads.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let ok = |v: &str| parse_interval(v).map(|i| i.0);
        assert_eq!(ok("24h"), Ok(Some(Duration::from_secs(86_400))));
        assert_eq!(ok("90s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(ok("off"), Ok(None));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
