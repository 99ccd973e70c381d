//! `fleetup golden set|list|unset` and `fleetup compliance`.

use serde_json::{Value, json};

use super::{Client, ClientError, segment};
use crate::api::{ComplianceReport, GoldenList, GoldenView};
use crate::rollout::report::csv_field as field;

/// Where a golden image applies; a field left out matches any device.
#[derive(Debug, Clone, Default)]
pub struct ScopeArgs {
    pub platform: Option<String>,
    pub model: Option<String>,
    pub site: Option<String>,
    pub role: Option<String>,
}

impl ScopeArgs {
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("platform", &self.platform),
            ("model", &self.model),
            ("site", &self.site),
            ("role", &self.role),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// Set the golden image of a scope; the line that says what is set now.
pub async fn set(c: &Client, image: &str, scope: &ScopeArgs) -> Result<String, ClientError> {
    let mut body = json!({ "image": image });
    for (k, v) in scope.pairs() {
        body[k] = Value::String(v.to_string());
    }
    let v: GoldenView = c.put_json("/golden", &body).await?;
    Ok(format!(
        "golden image of {}: {} ({})\n",
        v.scope,
        v.image,
        v.version.as_deref().unwrap_or("version unknown")
    ))
}

/// Forget the golden image of exactly this scope.
pub async fn unset(c: &Client, scope: &ScopeArgs) -> Result<String, ClientError> {
    let query: Vec<String> = scope
        .pairs()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", segment(v)))
        .collect();
    let path = if query.is_empty() {
        "/golden".to_string()
    } else {
        format!("/golden?{}", query.join("&"))
    };
    c.delete(&path).await?;
    Ok("golden image unset\n".to_string())
}

/// The table of golden images.
pub async fn list(c: &Client) -> Result<String, ClientError> {
    let list: GoldenList = c.get_json("/golden").await?;
    let mut out = format!("{:<40} {:<14} IMAGE\n", "SCOPE", "VERSION");
    for g in &list.golden {
        out.push_str(&format!(
            "{:<40} {:<14} {}\n",
            g.scope,
            g.version.as_deref().unwrap_or("-"),
            g.image
        ));
    }
    out.push_str(&format!("{} golden image(s)\n", list.golden.len()));
    Ok(out)
}

/// The compliance report: a table with roll-ups, or CSV (one row per device).
pub async fn compliance(c: &Client, site: Option<&str>, csv: bool) -> Result<String, ClientError> {
    let path = match site {
        Some(s) => format!("/compliance?site={}", segment(s)),
        None => "/compliance".to_string(),
    };
    let r: ComplianceReport = c.get_json(&path).await?;
    Ok(if csv { to_csv(&r) } else { table(&r) })
}

fn table(r: &ComplianceReport) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{:<24} {:<12} {:<18} {:<14} {:<14} {:<10} REASON\n",
        "DEVICE", "SITE", "MODEL", "VERSION", "GOLDEN", "STATUS"
    );
    for d in &r.devices {
        out.push_str(&format!(
            "{:<24} {:<12} {:<18} {:<14} {:<14} {:<10} {}\n",
            d.device,
            dash(&d.site),
            dash(&d.model),
            dash(&d.version),
            dash(&d.golden_version),
            d.status.as_str(),
            d.reason
        ));
    }
    for (title, rows) in [("SITE", &r.sites), ("MODEL", &r.models)] {
        out.push_str(&format!(
            "\n{title:<24} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "COMPLIANT", "OUTDATED", "AHEAD", "UNKNOWN", "TOTAL"
        ));
        for c in rows.iter() {
            let name = if c.name.is_empty() { "-" } else { &c.name };
            out.push_str(&format!(
                "{name:<24} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
                c.compliant, c.outdated, c.ahead, c.unknown, c.total
            ));
        }
    }
    out
}

fn to_csv(r: &ComplianceReport) -> String {
    let mut out = String::from(
        "device,site,platform,model,version,last_seen,golden_image,golden_version,golden_scope,status,reason\n",
    );
    for d in &r.devices {
        let cols = [
            d.device.clone(),
            d.site.clone().unwrap_or_default(),
            d.platform.to_string(),
            d.model.clone().unwrap_or_default(),
            d.version.clone().unwrap_or_default(),
            d.last_seen.clone().unwrap_or_default(),
            d.golden_image.clone().unwrap_or_default(),
            d.golden_version.clone().unwrap_or_default(),
            d.golden_scope.clone().unwrap_or_default(),
            d.status.as_str().to_string(),
            d.reason.clone(),
        ];
        let line: Vec<String> = cols.iter().map(|c| field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}
