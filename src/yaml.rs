//! YAML input (inventories, playbooks, personas) with errors that point at a line and column.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A problem in a YAML document, located so that the user can go straight to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    /// 1-based; 0 when the problem concerns the whole document.
    pub line: u64,
    /// 1-based; 0 when the problem concerns the whole document.
    pub column: u64,
    pub message: String,
}

impl YamlError {
    pub(crate) fn new(line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            line,
            column,
            message: message.into(),
        }
    }
}

/// Deserialize `text` into `T`; unknown fields are rejected by `T`'s own
/// `#[serde(deny_unknown_fields)]`.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        YamlError {
            line,
            column,
            message: strip_location(&e.to_string()),
        }
    })
}

/// serde-saphyr renders its messages as `error: line X column Y: …` (or with a trailing
/// `at line X column Y`); the location is kept in separate fields and said once by
/// [`YamlError`]'s Display, so keep only the message itself.
fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg).trim();
    let first = first.strip_prefix("error:").map_or(first, str::trim_start);
    let first = leading_position(first).unwrap_or(first);
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// The text after a leading `line X column Y: `, if the message starts with one.
fn leading_position(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("line ")?;
    let (line, rest) = rest.split_once(" column ")?;
    let (column, rest) = rest.split_once(": ")?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(line) && numeric(column)).then_some(rest)
}

/// Serialize a value as YAML.
pub(crate) fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        port: u16,
    }

    #[test]
    fn unknown_field_is_located() {
        let err = from_str::<Doc>("name: a\nport: 22\nbogus: 1\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("bogus"), "{err}");
    }

    #[test]
    fn message_says_its_location_nowhere() {
        for text in ["name: a\nport: 22\nbogus: 1\n", "name: a\nport: [x\n"] {
            let err = from_str::<Doc>(text).unwrap_err();
            assert!(!err.message.contains("line"), "{:?}", err.message);
            assert!(!err.message.starts_with("error"), "{:?}", err.message);
        }
    }

    #[test]
    fn wrong_type_is_located() {
        let err = from_str::<Doc>("name: a\nport: banana\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }
}
