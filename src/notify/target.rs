//! Webhook targets as written in the config file and in playbooks: a URL checked where it is
//! written (so a bad one is reported with its line and column), a payload format, the
//! notifications it wants, and the environment variable holding its signing secret.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

use super::NotificationKind;
use crate::yaml::YamlError;

/// The body a target receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// fleetup's own JSON: `{id, kind, rollout, rollout_name, device, wave, message, at}`.
    #[default]
    Json,
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// A Microsoft Teams incoming webhook (Workflows): a message with an Adaptive Card.
    Teams,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Format> {
        [Format::Json, Format::Slack, Format::Teams]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// A webhook's address: absolute, `http` or `https`, with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(reqwest::Url);

impl WebhookUrl {
    pub fn parse(s: &str) -> Result<WebhookUrl, String> {
        let url = reqwest::Url::parse(s.trim()).map_err(|e| {
            format!(
                "{s:?} is not a URL ({e}); write it whole, e.g. https://hooks.example.com/fleetup"
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{s:?}: a webhook URL must be http:// or https://, not {}:",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{s:?}: a webhook URL needs a host"));
        }
        Ok(WebhookUrl(url))
    }

    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// The URL as it may be shown and stored: no user or password, no query, and only the
    /// path's first segment (Slack and Teams put the webhook's secret in the path).
    pub fn redacted(&self) -> String {
        let u = &self.0;
        let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
        if let Some(port) = u.port() {
            out.push_str(&format!(":{port}"));
        }
        let mut segments = u.path().split('/').filter(|s| !s.is_empty());
        match segments.next() {
            Some(first) => {
                out.push('/');
                out.push_str(first);
                if segments.next().is_some() {
                    out.push_str("/…");
                }
            }
            None => out.push('/'),
        }
        if u.query().is_some() {
            out.push_str("?…");
        }
        out
    }
}

impl fmt::Display for WebhookUrl {
    /// Redacted: a URL is shown only so.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WebhookUrl::parse(&s).map_err(de::Error::custom)
    }
}

/// One webhook and what it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub url: Spanned<WebhookUrl>,
    #[serde(default)]
    pub format: Format,
    /// The notifications it wants; empty (or left out) means all of them.
    #[serde(default)]
    pub events: Vec<NotificationKind>,
    /// The environment variable of the service holding the HMAC-SHA256 key; without it the
    /// deliveries are not signed.
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
}

impl Target {
    pub(crate) fn wants(&self, kind: NotificationKind) -> bool {
        self.events.is_empty() || self.events.contains(&kind)
    }

    /// The signing key, read from the service's environment when a delivery is built (never
    /// stored). `Err` names the variable that is not set.
    pub(crate) fn secret(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(var) = &self.secret_env else {
            return Ok(None);
        };
        match std::env::var_os(&var.value) {
            Some(v) if !v.is_empty() => Ok(Some(v.into_encoded_bytes())),
            _ => Err(format!(
                "the signing secret's variable {} is not set in the service's environment",
                var.value
            )),
        }
    }
}

/// Every target can be used by this service: its secret variable is set in this process's
/// environment. A playbook that fails this is refused at submission, a config file at start,
/// not at the first delivery.
pub fn check_usable(targets: &[Target]) -> Result<(), YamlError> {
    for t in targets {
        if let (Some(var), Err(e)) = (&t.secret_env, t.secret()) {
            return Err(YamlError::new(
                var.referenced.line(),
                var.referenced.column(),
                format!("notify.secret_env: {e}; set it where `fleetup serve` runs"),
            ));
        }
    }
    Ok(())
}

/// The service-wide targets of a config file: its `notify:` list (other keys are the flags',
/// read by [`crate::config`]).
pub fn targets_from_yaml(text: &str) -> Result<Vec<Target>, YamlError> {
    #[derive(Deserialize)]
    struct Section {
        #[serde(default)]
        notify: Vec<Target>,
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let section: Section = crate::yaml::from_str(text)?;
    Ok(section.notify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert!(WebhookUrl::parse("https://hooks.example.com/x").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook").is_ok());
        let e = WebhookUrl::parse("ftp://example.com/x").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
        assert!(WebhookUrl::parse("hooks.example.com/x").is_err());
        assert!(WebhookUrl::parse("file:///etc/passwd").is_err());
    }

    #[test]
    fn redaction_hides_credentials_queries_and_secret_paths() {
        let r = |s: &str| WebhookUrl::parse(s).unwrap().redacted();
        assert_eq!(
            r("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com/services/…"
        );
        assert_eq!(
            r("https://user:pw@example.com:8443/hook?token=abc"),
            "https://example.com:8443/hook?…"
        );
        assert_eq!(r("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        for s in [
            r("https://user:pw@example.com/a/b?token=abc"),
            r("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
        ] {
            assert!(!s.contains("pw") && !s.contains("abc") && !s.contains("SECRET"));
        }
    }

    #[test]
    fn config_targets_default_to_json_and_every_event() {
        let t = targets_from_yaml(
            "data-dir: /x\nnotify:\n  - url: https://a.example.com/h\n  - url: https://b.example.com/h\n    format: slack\n    events: [halted, finished]\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].format, Format::Json);
        assert!(NotificationKind::ALL.iter().all(|k| t[0].wants(*k)));
        assert_eq!(t[1].format, Format::Slack);
        assert!(t[1].wants(NotificationKind::Halted));
        assert!(!t[1].wants(NotificationKind::WaveDone));
        assert!(targets_from_yaml("tftp: off\n").unwrap().is_empty());
    }

    #[test]
    fn a_bad_target_is_located() {
        let e = targets_from_yaml("notify:\n  - url: gopher://x/y\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("http:// or https://"), "{e}");
        let e =
            targets_from_yaml("notify:\n  - url: https://x/y\n    events: [lunch]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = targets_from_yaml("notify:\n  - url: https://x/y\n    colour: red\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
