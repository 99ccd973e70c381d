//! `fleetup device configs NAME`: the configuration backups the service kept of a device,
//! one backup's text (`--show ID`), or the running configuration's diff before and after a
//! rollout (`--diff`). The service serves them only with the token.

use super::{Client, ClientError, segment};
use crate::api::{ConfigDiffView, ConfigList, ConfigText};

/// What to print.
#[derive(Debug, Clone, Default)]
pub struct ConfigsRequest {
    pub device: String,
    /// Only this rollout's backups; the rollout of `--diff` (default: the latest with both).
    pub rollout: Option<String>,
    /// Print this backup's text.
    pub show: Option<i64>,
    /// Print the diff of the running configuration before and after.
    pub diff: bool,
}

/// The text to print for `req`.
pub async fn device_configs(c: &Client, req: &ConfigsRequest) -> Result<String, ClientError> {
    let base = format!("/devices/{}/configs", segment(&req.device));
    if let Some(id) = req.show {
        let t: ConfigText = c.get_json(&format!("{base}/{id}")).await?;
        return Ok(t.text);
    }
    let query = req
        .rollout
        .as_deref()
        .map(|r| format!("?rollout={}", segment(r)))
        .unwrap_or_default();
    let list: ConfigList = c.get_json(&format!("{base}{query}")).await?;
    if req.diff {
        // The rollout asked for, else the latest that kept an `after`.
        let rollout = req.rollout.clone().or_else(|| {
            list.backups
                .iter()
                .rev()
                .find(|b| b.moment == crate::configs::Moment::After)
                .map(|b| b.rollout_id.clone())
        });
        let Some(rollout) = rollout else {
            return Ok(format!(
                "{}: no rollout kept its running configuration before and after\n",
                req.device
            ));
        };
        let d: ConfigDiffView = c
            .get_json(&format!("{base}/diff/{}", segment(&rollout)))
            .await?;
        return Ok(diff_text(&req.device, &d));
    }
    let mut out = format!(
        "{:<6} {:<26} {:<8} {:<7} {:<26} {:>8}  SHA-256\n",
        "ID", "ROLLOUT", "KIND", "WHEN", "TAKEN AT", "BYTES"
    );
    for b in &list.backups {
        out.push_str(&format!(
            "{:<6} {:<26} {:<8} {:<7} {:<26} {:>8}  {}\n",
            b.id,
            b.rollout_id,
            kind_str(b.kind),
            moment_str(b.moment),
            b.taken_at,
            b.size,
            b.sha256
        ));
    }
    out.push_str(&format!("{} backup(s)\n", list.backups.len()));
    Ok(out)
}

fn kind_str(k: crate::configs::ConfigKind) -> &'static str {
    k.as_str()
}

fn moment_str(m: crate::configs::Moment) -> &'static str {
    m.as_str()
}

/// The diff as printed: a header naming the two backups, then the unified lines.
pub(crate) fn diff_text(device: &str, d: &ConfigDiffView) -> String {
    let mut out = format!(
        "--- {device} running-config before rollout {} (backup {}, {})\n+++ {device} running-config after (backup {}, {})\n",
        d.rollout_id, d.before.id, d.before.taken_at, d.after.id, d.after.taken_at
    );
    if d.too_different {
        out.push_str("(the configurations differ in too many lines for a diff: compare the two backups with --show)\n");
    } else if d.added + d.removed == 0 {
        out.push_str("(no change, volatile lines aside)\n");
    } else {
        out.push_str(&d.diff);
        out.push_str(&format!(
            "{} line(s) added, {} removed\n",
            d.added, d.removed
        ));
    }
    out
}
