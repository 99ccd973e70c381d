//! The HTTP side of a sync: read a source's device list, page by page, and write a device's
//! running version back to a custom field.
//!
//! Pages are requested by offset (`limit`/`offset`), not by following the `next` link, so the
//! token is only ever sent to the URL the operator gave. Each page is read to at most
//! [`MAX_PAGE_BYTES`], and a sync to at most [`MAX_DEVICES`] devices.

use std::time::Duration;

use serde_json::Value;

use super::{Filter, Mapped, PlatformMap, SourceKind, SyncRecord, SyncSkip, map_device};

/// Devices asked for per page.
pub const PAGE: usize = 500;
/// The most bytes one page may take.
pub const MAX_PAGE_BYTES: usize = 64 << 20;
/// The most devices one sync reads.
pub const MAX_DEVICES: usize = 200_000;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A source of truth to read.
#[derive(Clone)]
pub struct Source {
    pub kind: SourceKind,
    /// The base URL (`https://nautobot.example.com`, or with a path prefix).
    pub url: reqwest::Url,
    pub token: String,
    pub filter: Filter,
    pub platforms: PlatformMap,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("kind", &self.kind)
            .field("url", &self.url.as_str())
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{kind} at {url}: {message}")]
    Failed {
        kind: SourceKind,
        url: String,
        message: String,
    },
}

/// What a source holds now.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<SyncRecord>,
    pub skipped: Vec<SyncSkip>,
}

/// Parse `--url`: absolute, http or https, with a host.
pub fn parse_url(s: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(s.trim()).map_err(|e| {
        format!("{s:?} is not a URL ({e}); write it whole, e.g. https://nautobot.example.com")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{s:?}: the source's URL must be http:// or https:// with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{s:?}: give the token with --token-env, not in the URL"
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    // A base that `join` extends rather than replaces.
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

impl Source {
    /// The scope this source keeps (kind, URL, filter).
    pub fn scope(&self) -> String {
        super::scope(self.kind, &self.url, &self.filter)
    }

    fn failed(&self, message: impl Into<String>) -> SourceError {
        SourceError::Failed {
            kind: self.kind,
            url: self.url.as_str().trim_end_matches('/').to_string(),
            message: message.into(),
        }
    }

    fn authorization(&self) -> String {
        // NetBox 4.5's v2 tokens (`nbt_…`) are bearer tokens; v1 tokens and Nautobot's are
        // `Token …`.
        if self.token.starts_with("nbt_") {
            format!("Bearer {}", self.token)
        } else {
            format!("Token {}", self.token)
        }
    }

    fn endpoint(&self, path: &str) -> Result<reqwest::Url, SourceError> {
        self.url
            .join(path)
            .map_err(|e| self.failed(format!("cannot build the URL of {path}: {e}")))
    }

    /// Every device the source holds within the filter, mapped.
    pub async fn fetch(&self, client: &reqwest::Client) -> Result<Fetched, SourceError> {
        let mut out = Fetched::default();
        let mut offset = 0usize;
        loop {
            let mut url = self.endpoint("api/dcim/devices/")?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("limit", &PAGE.to_string());
                q.append_pair("offset", &offset.to_string());
                match self.kind {
                    // Nested objects carry their names only at depth 1.
                    SourceKind::Nautobot => q.append_pair("depth", "1"),
                    // The rendered config context can be large, and is not needed.
                    SourceKind::Netbox => q.append_pair("exclude", "config_context"),
                };
                for (k, v) in self.filter.query(self.kind) {
                    q.append_pair(k, &v);
                }
            }
            let page = self.get_json(client, url).await?;
            let results = page["results"].as_array().ok_or_else(|| {
                self.failed("the device list has no `results` array; is this the right URL?")
            })?;
            for d in results {
                match map_device(d, &self.platforms, &self.filter) {
                    Mapped::Device(r) => out.records.push(r),
                    Mapped::Skip(s) => out.skipped.push(s),
                    Mapped::Filtered => {}
                }
            }
            offset += results.len();
            if offset > MAX_DEVICES {
                return Err(self.failed(format!(
                    "more than {MAX_DEVICES} devices; narrow the sync with --filter"
                )));
            }
            let total = page["count"].as_u64().map(|c| c as usize);
            let more = page["next"].as_str().is_some_and(|n| !n.is_empty());
            if results.is_empty() || !more || total.is_some_and(|t| offset >= t) {
                break;
            }
        }
        Ok(out)
    }

    async fn get_json(
        &self,
        client: &reqwest::Client,
        url: reqwest::Url,
    ) -> Result<Value, SourceError> {
        let shown = url.to_string();
        let mut resp = client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                self.failed(format!(
                    "GET {shown}: {}",
                    crate::http_client::error_chain(&e.without_url())
                ))
            })?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            self.failed(format!(
                "GET {shown}: {}",
                crate::http_client::error_chain(&e.without_url())
            ))
        })? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(self.failed(format!(
                    "GET {shown}: the answer is larger than {} MiB",
                    MAX_PAGE_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.failed(format!(
                "the token was refused ({status}): {}",
                excerpt(&body)
            )));
        }
        if !status.is_success() {
            return Err(self.failed(format!("GET {shown} answered {status}: {}", excerpt(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| {
            self.failed(format!(
                "GET {shown} did not answer JSON ({e}): {}",
                excerpt(&body)
            ))
        })
    }

    /// Write a device's running version to one of its custom fields.
    pub async fn write_back(
        &self,
        client: &reqwest::Client,
        id: &str,
        field: &str,
        version: &str,
    ) -> Result<(), SourceError> {
        let url = self.endpoint(&format!("api/dcim/devices/{}/", crate::client::segment(id)))?;
        let shown = url.to_string();
        let resp = client
            .patch(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(REQUEST_TIMEOUT)
            .json(&serde_json::json!({ "custom_fields": { field: version } }))
            .send()
            .await
            .map_err(|e| {
                self.failed(format!(
                    "PATCH {shown}: {}",
                    crate::http_client::error_chain(&e.without_url())
                ))
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(self.failed(format!(
            "PATCH {shown} answered {status}: {}",
            excerpt(&body)
        )))
    }
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().is_empty() {
        "(empty body)".into()
    } else {
        text.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_bases_without_credentials() {
        assert_eq!(
            parse_url("https://nb.example.com/netbox").unwrap().as_str(),
            "https://nb.example.com/netbox/"
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(
            parse_url("https://u:p@nb.example.com")
                .unwrap_err()
                .contains("--token-env")
        );
        assert!(parse_url("nb.example.com").is_err());
    }
}
