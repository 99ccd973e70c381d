//! The only request target served: `/j/TOKEN/FILE` (pure).
//!
//! The raw target is split at `/` first and each segment percent-decoded after, so an encoded
//! `%2f` can never make a separator; a segment that decodes to `/`, `\`, NUL, a control
//! character or no UTF-8 is refused. Whether the token is live and the file exists is the
//! caller's question ([`crate::grants::Grants`], [`crate::images::resolve_in`]).

/// Longest request target accepted (a token and an image name are far shorter).
pub(crate) const MAX_TARGET: usize = 1024;

/// A well-formed request for one file under one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    pub token: String,
    pub file: String,
}

/// Why a target is not of the served form; the reason goes to the log, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotServed {
    #[error("request target longer than {MAX_TARGET} bytes")]
    TooLong,
    #[error("not of the form /j/TOKEN/FILE")]
    Shape,
    #[error("bad percent-encoding")]
    Encoding,
    #[error("a segment decodes to a separator, NUL or control character")]
    Forbidden,
}

/// Read `target` as `/j/TOKEN/FILE`; a query (`?…`) is ignored.
pub(crate) fn route(target: &str) -> Result<Route, NotServed> {
    if target.len() > MAX_TARGET {
        return Err(NotServed::TooLong);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let mut parts = path.split('/');
    let (Some(""), Some("j"), Some(token), Some(file), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(NotServed::Shape);
    };
    let token = segment(token)?;
    let file = segment(file)?;
    if token.is_empty() || file.is_empty() {
        return Err(NotServed::Shape);
    }
    Ok(Route { token, file })
}

/// Percent-decode one path segment.
fn segment(raw: &str) -> Result<String, NotServed> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(NotServed::Encoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| NotServed::Encoding)?;
            let b = u8::from_str_radix(hex, 16).map_err(|_| NotServed::Encoding)?;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| NotServed::Encoding)?;
    if text.contains(['/', '\\']) || text.chars().any(char::is_control) {
        return Err(NotServed::Forbidden);
    }
    Ok(text)
}

/// A token as the log shows it: enough to tell two apart, too little to use.
pub(crate) fn token_hint(token: &str) -> String {
    let shown: String = token.chars().take(4).collect();
    format!("{shown:?}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(token: &str, file: &str) -> Result<Route, NotServed> {
        Ok(Route {
            token: token.into(),
            file: file.into(),
        })
    }

    #[test]
    fn the_served_form() {
        assert_eq!(route("/j/abc123/c2960x.bin"), ok("abc123", "c2960x.bin"));
        assert_eq!(
            route("/j/abc123/c2960x.bin?x=1"),
            ok("abc123", "c2960x.bin")
        );
        assert_eq!(route("/j/abc/a%20b.bin"), ok("abc", "a b.bin"));
        // Decoded `..` is a name like any other here; the grant and resolve_in refuse it.
        assert_eq!(route("/j/abc/%2e%2e"), ok("abc", ".."));
    }

    #[test]
    fn everything_else_is_not_served() {
        for (target, why) in [
            ("/", NotServed::Shape),
            ("/j/", NotServed::Shape),
            ("/j/abc", NotServed::Shape),
            ("/j/abc/", NotServed::Shape),
            ("/j//file", NotServed::Shape),
            ("/j/abc/../x", NotServed::Shape),
            ("/j/abc/x/", NotServed::Shape),
            ("//etc/passwd", NotServed::Shape),
            ("/etc/passwd", NotServed::Shape),
            ("http://host/j/abc/x", NotServed::Shape),
            ("*", NotServed::Shape),
            ("j/abc/x", NotServed::Shape),
            ("/j/abc/%2e%2e%2fetc%2fpasswd", NotServed::Forbidden),
            ("/j/abc/%2Fetc", NotServed::Forbidden),
            ("/j/abc/..%5cx", NotServed::Forbidden),
            ("/j/abc/x%00.bin", NotServed::Forbidden),
            ("/j/abc/x%0a", NotServed::Forbidden),
            ("/j/abc/x%", NotServed::Encoding),
            ("/j/abc/x%2", NotServed::Encoding),
            ("/j/abc/x%zz", NotServed::Encoding),
            ("/j/abc/x%ff", NotServed::Encoding),
        ] {
            assert_eq!(route(target), Err(why), "{target:?}");
        }
        let long = format!("/j/abc/{}", "a".repeat(MAX_TARGET));
        assert_eq!(route(&long), Err(NotServed::TooLong));
    }

    #[test]
    fn token_hints_are_short() {
        assert_eq!(token_hint("abcdefghijkl"), "\"abcd\"…");
        assert_eq!(token_hint("a\n"), "\"a\\n\"…");
    }
}
