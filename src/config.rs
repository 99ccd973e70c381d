//! Settings of `fleetup serve`: command-line flags, `FLEETUP_*` environment variables and an
//! optional YAML config file, in that order of precedence.
//!
//! The config file holds the same names as the long flags (`data-dir: /var/lib/fleetup`,
//! `tftp: off`, `ftp-passive-ports: 30000-30100`). It is applied by exporting each entry as
//! its `FLEETUP_*` variable before the flags are parsed, unless that variable is already set,
//! so one mechanism (clap's `env`) gives every setting the same precedence rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::yaml::YamlError;

/// `ADDR` or `off` for the file servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "no" | "false" | "disabled" => Ok(Listen::Off),
            _ => s
                .trim()
                .parse()
                .map(Listen::On)
                .map_err(|_| format!("{s:?} is not ADDRESS:PORT (e.g. 0.0.0.0:69) or off")),
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(a) => write!(f, "{a}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}, {error}")]
    Yaml { path: PathBuf, error: YamlError },
}

/// Find `--config FILE` (or `FLEETUP_CONFIG`) in the raw arguments, before clap runs.
pub fn config_file_from_args(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("FLEETUP_CONFIG").map(PathBuf::from)
}

/// Read a config file and return `(FLEETUP_* variable, value)` pairs; keys must be among
/// `known` (long flag names).
pub fn read_config_file(
    path: &Path,
    known: &BTreeSet<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config(&text, known).map_err(|error| ConfigError::Yaml {
        path: path.to_path_buf(),
        error,
    })
}

/// The webhook targets of a config file's `notify:` list (none without one).
pub fn read_notify_targets(path: &Path) -> Result<Vec<crate::notify::Target>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let yaml = |error| ConfigError::Yaml {
        path: path.to_path_buf(),
        error,
    };
    let targets = crate::notify::targets_from_yaml(&text).map_err(yaml)?;
    crate::notify::check_usable(&targets).map_err(yaml)?;
    Ok(targets)
}

/// The source-of-truth syncs of a config file's `sync:` list (none without one).
pub fn read_sync_entries(
    path: &Path,
) -> Result<Vec<crate::sync::schedule::Scheduled>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    crate::sync::schedule::from_yaml(&text).map_err(|error| ConfigError::Yaml {
        path: path.to_path_buf(),
        error,
    })
}

fn parse_config(text: &str, known: &BTreeSet<String>) -> Result<Vec<(String, String)>, YamlError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let map: BTreeMap<String, Spanned<serde_json::Value>> = crate::yaml::from_str(text)?;
    let mut out = Vec::new();
    for (key, value) in map {
        let loc = value.referenced;
        // Webhook targets and source-of-truth syncs: lists, read by
        // `crate::notify::targets_from_yaml` and `crate::sync::schedule::from_yaml`.
        if key == "notify" || key == "sync" {
            continue;
        }
        if !known.contains(&key) || key == "config" {
            return Err(YamlError::new(
                loc.line(),
                loc.column(),
                format!(
                    "unknown setting {key:?}; settings are the long flags of `fleetup serve --help` without the dashes"
                ),
            ));
        }
        let v = match value.value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Null => continue,
            other => {
                return Err(YamlError::new(
                    loc.line(),
                    loc.column(),
                    format!("setting {key:?} must be a single value, not {other}"),
                ));
            }
        };
        out.push((env_name(&key), v));
    }
    Ok(out)
}

/// `data-dir` → `FLEETUP_DATA_DIR`.
pub(crate) fn env_name(flag: &str) -> String {
    format!("FLEETUP_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Parse a byte size such as `4GiB`, `500M`, `1048576`.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["data-dir", "tftp", "http"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn config_entries_become_env_pairs() {
        let pairs = parse_config("data-dir: /var/lib/fleetup\ntftp: off\n", &known()).unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "FLEETUP_DATA_DIR".to_string(),
                    "/var/lib/fleetup".to_string()
                ),
                // YAML 1.1 reads a bare `off` as false; `ADDR|off` settings accept both.
                ("FLEETUP_TFTP".to_string(), "false".to_string()),
            ]
        );
        assert_eq!("false".parse::<Listen>().unwrap(), Listen::Off);
    }

    #[test]
    fn notify_is_a_list_beside_the_flags() {
        let text = "data-dir: /x\nnotify:\n  - url: https://hooks.example.com/a\n";
        let pairs = parse_config(text, &known()).unwrap();
        assert_eq!(pairs.len(), 1, "{pairs:?}");
        let targets = crate::notify::targets_from_yaml(text).unwrap();
        assert_eq!(targets.len(), 1);
    }

    #[test]
    fn unknown_setting_is_located() {
        let err = parse_config("http: 127.0.0.1:1\nbogus: 1\n", &known()).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("bogus"));
    }

    #[test]
    fn listen_and_sizes_parse() {
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert!(matches!(
            "0.0.0.0:69".parse::<Listen>().unwrap(),
            Listen::On(_)
        ));
        assert!("nonsense".parse::<Listen>().is_err());
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("3 parsecs").is_err());
    }
}
