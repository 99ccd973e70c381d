//! Syncs that `fleetup serve` runs itself: the config file's `sync:` list, each entry read
//! at start and then every `every`, and the write-back of the running version to a custom
//! field of the source when a device's job ends.
//!
//! ```yaml
//! sync:
//!   - from: nautobot
//!     url: https://nautobot.example.com
//!     token_env: NAUTOBOT_TOKEN
//!     filter: site=dc1,status=active
//!     every: 1h
//!     username: netops
//!     password_env: DEVICE_PASSWORD
//!     write_back: fleetup_version
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::source::Source;
use super::{Filter, PlatformMap, SourceKind, SyncDefaults};
use crate::inventory::Platform;
use crate::rollout::model::{Event, EventKind};
use crate::shutdown::Shutdown;
use crate::store::Db;
use crate::yaml::YamlError;

/// The default time between two syncs of one entry.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(3600);

/// One entry of the config file's `sync:` list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncEntry {
    pub from: SourceKind,
    pub url: Spanned<String>,
    /// The environment variable of the service holding the source's API token.
    pub token_env: Spanned<String>,
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// How often: `30m`, `1h`, `1d` (default 1h).
    #[serde(default)]
    pub every: Option<Spanned<String>>,
    /// Source platform (network driver, slug or name) → `ios`, `iosxe` or `nxos`.
    #[serde(default)]
    pub platform_map: BTreeMap<String, Platform>,
    /// SSH port of the devices the sync creates (22).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub enable_secret_env: Option<String>,
    /// A custom field of the source's devices that gets the running version after each job.
    #[serde(default)]
    pub write_back: Option<Spanned<String>>,
    /// Only report what would change (in the log).
    #[serde(default)]
    pub dry_run: bool,
}

/// An entry ready to run: its source (token read), scope, defaults and interval.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub source: Source,
    pub scope: String,
    pub defaults: SyncDefaults,
    pub every: Duration,
    pub write_back: Option<String>,
    pub dry_run: bool,
}

/// The `sync:` list of a config file (none without one), checked where it is written: URLs,
/// filters, intervals, and that each token variable is set for the service.
pub fn from_yaml(text: &str) -> Result<Vec<Scheduled>, YamlError> {
    #[derive(Deserialize)]
    struct Section {
        #[serde(default)]
        sync: Vec<SyncEntry>,
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let section: Section = crate::yaml::from_str(text)?;
    section.sync.into_iter().map(ready).collect()
}

fn at<T>(s: &Spanned<T>, message: String) -> YamlError {
    YamlError::new(s.referenced.line(), s.referenced.column(), message)
}

fn ready(e: SyncEntry) -> Result<Scheduled, YamlError> {
    let url =
        super::source::parse_url(&e.url.value).map_err(|m| at(&e.url, format!("sync.url: {m}")))?;
    let filter = match &e.filter {
        Some(f) => Filter::parse(&f.value).map_err(|m| at(f, format!("sync.filter: {m}")))?,
        None => Filter::default(),
    };
    let every = match &e.every {
        Some(s) => {
            let secs = crate::playbook::parse_duration(&s.value)
                .map_err(|m| at(s, format!("sync.every: {m}")))?;
            if secs < 60 {
                return Err(at(s, "sync.every: at least 1m".into()));
            }
            Duration::from_secs(secs)
        }
        None => DEFAULT_EVERY,
    };
    let token = match std::env::var(&e.token_env.value) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            return Err(at(
                &e.token_env,
                format!(
                    "sync.token_env: {} is not set in the service's environment",
                    e.token_env.value
                ),
            ));
        }
    };
    let write_back = match e.write_back {
        Some(w) => {
            let ok = !w.value.is_empty()
                && w.value.len() <= 50
                && w.value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(at(
                    &w,
                    "sync.write_back: a custom field's key, 1 to 50 letters, digits and _".into(),
                ));
            }
            Some(w.value)
        }
        None => None,
    };
    let defaults = SyncDefaults {
        port: e.port,
        username: e.username,
        password_env: e.password_env,
        enable_secret_env: e.enable_secret_env,
    };
    let source = Source {
        kind: e.from,
        url,
        token,
        filter,
        platforms: PlatformMap::from_pairs(e.platform_map),
    };
    Ok(Scheduled {
        scope: source.scope(),
        source,
        defaults,
        every,
        write_back,
        dry_run: e.dry_run,
    })
}

/// Run one sync of an entry: fetch, check, apply. The report, or why it failed.
pub async fn run_once(
    db: &Db,
    client: &reqwest::Client,
    s: &Scheduled,
) -> Result<super::SyncReport, String> {
    let fetched = s.source.fetch(client).await.map_err(|e| e.to_string())?;
    let req = super::SyncRequest {
        scope: s.scope.clone(),
        dry_run: s.dry_run,
        devices: fetched.records,
        skipped: fetched.skipped,
        defaults: s.defaults.clone(),
    };
    let checked = super::validate(&req)?;
    db.sync_devices(&req.scope, &checked.records, &checked.skipped, req.dry_run)
        .await
        .map_err(|e| e.to_string())
}

/// Start every entry's loop, and the write-back of those that have one.
pub fn start(
    db: Db,
    entries: Vec<Scheduled>,
    events: tokio::sync::broadcast::Receiver<Event>,
    shutdown: Shutdown,
) {
    let client = crate::http_client::client();
    for s in entries.iter().cloned() {
        let (db, client, cancel) = (db.clone(), client.clone(), shutdown.token.clone());
        shutdown.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = run_once(&db, &client, &s) => match r {
                        Ok(report) => report.log(),
                        Err(e) => tracing::warn!(scope = %s.scope, error = %e, "inventory sync failed; the inventory is unchanged"),
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(s.every) => {}
                }
            }
        });
    }
    let writers: Vec<Scheduled> = entries
        .into_iter()
        .filter(|s| s.write_back.is_some())
        .collect();
    if !writers.is_empty() {
        let cancel = shutdown.token.clone();
        shutdown
            .tasks
            .spawn(write_back_loop(db, client, writers, events, cancel));
    }
}

/// After each device job that ended, write the device's running version back to its source.
async fn write_back_loop(
    db: Db,
    client: reqwest::Client,
    writers: Vec<Scheduled>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    cancel: tokio_util::sync::CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "sync write-back fell behind the events; some versions are not written back until the next job");
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if !matches!(
            event.kind,
            EventKind::DeviceSucceeded | EventKind::DeviceFailed | EventKind::DeviceRolledBack
        ) {
            continue;
        }
        let Some(name) = event.device.as_deref() else {
            continue;
        };
        if let Err(e) = write_back_one(&db, &client, &writers, name).await {
            tracing::warn!(device = name, error = %e, "writing the running version back to the source of truth failed");
        }
    }
}

/// Write one device's running version back, when a writer keeps its scope.
pub async fn write_back_one(
    db: &Db,
    client: &reqwest::Client,
    writers: &[Scheduled],
    name: &str,
) -> Result<bool, String> {
    let Some((scope, source_id)) = db.source_id_of(name).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let Some(w) = writers.iter().find(|w| w.scope == scope) else {
        return Ok(false);
    };
    let Some(field) = &w.write_back else {
        return Ok(false);
    };
    let device = db.device_by_name(name).await.map_err(|e| e.to_string())?;
    let Some(version) = device.facts.version else {
        return Ok(false);
    };
    w.source
        .write_back(client, &source_id, field, &version)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(device = name, %version, field = %field, "running version written back to the source of truth");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_entry_is_checked_where_it_is_written() {
        // PATH is set wherever the tests run: it stands in for the token's variable.
        let ok = "data-dir: /x\nsync:\n  - from: nautobot\n    url: https://nautobot.example.com\n    token_env: PATH\n    filter: site=dc1,status=active\n    every: 30m\n    platform_map: {cisco-ios-17: iosxe}\n    write_back: fleetup_version\n";
        let entries = from_yaml(ok).unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            e.scope,
            "nautobot https://nautobot.example.com site=dc1,status=active"
        );
        assert_eq!(e.every, Duration::from_secs(1800));
        assert_eq!(e.write_back.as_deref(), Some("fleetup_version"));

        for (text, line, says) in [
            (
                "sync:\n  - from: nautobot\n    url: nautobot.example.com\n    token_env: PATH\n",
                3,
                "sync.url",
            ),
            (
                "sync:\n  - from: netbox\n    url: https://nb.example.com\n    token_env: FLEETUP_NO_SUCH_TOKEN_VAR\n",
                4,
                "FLEETUP_NO_SUCH_TOKEN_VAR is not set",
            ),
            (
                "sync:\n  - from: netbox\n    url: https://nb.example.com\n    token_env: PATH\n    filter: rack=1\n",
                5,
                "unknown filter key",
            ),
            (
                "sync:\n  - from: netbox\n    url: https://nb.example.com\n    token_env: PATH\n    every: 5s\n",
                5,
                "at least 1m",
            ),
            (
                "sync:\n  - from: netbox\n    url: https://nb.example.com\n    token_env: PATH\n    write_back: \"my field\"\n",
                5,
                "custom field",
            ),
        ] {
            let e = from_yaml(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let e = from_yaml("sync:\n  - from: infoblox\n    url: https://x\n    token_env: PATH\n")
            .unwrap_err();
        assert!(e.to_string().contains("infoblox"), "{e}");
    }
}
