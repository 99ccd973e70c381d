//! The request head: what a client asked for, parsed from bytes (pure, no I/O).

/// Largest request head (request line and headers) read; larger gets 431 and a close.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    /// Anything else: answered 405.
    Other,
}

/// One parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: Method,
    /// The request target as sent (origin form expected).
    pub target: String,
    /// HTTP/1.1 (true) or HTTP/1.0 (false).
    pub http11: bool,
    /// The `Range` field's value, when exactly one was sent.
    pub range: Option<String>,
    /// The `If-Range` field's value.
    pub if_range: Option<String>,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
    /// The request says a body follows (`Content-Length` > 0 or `Transfer-Encoding`): a GET
    /// or HEAD with a body is refused, as its length could be used to smuggle a request.
    pub has_body: bool,
}

/// Why a head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("request head larger than {MAX_HEAD} bytes or with more than {MAX_HEADERS} fields")]
    TooLarge,
}

/// Parse a head from the start of `buf`: `Ok(None)` while it is incomplete (read more),
/// else the request and the number of bytes it took.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if used > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or_default().to_string();
    let http11 = req.version == Some(1);
    let mut range = None;
    let mut ranges = 0;
    let mut if_range = None;
    let mut close = false;
    let mut keep = false;
    let mut has_body = false;
    let mut lengths = 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed(format!("field {} is not UTF-8", h.name)))?
            .trim();
        if h.name.eq_ignore_ascii_case("range") {
            ranges += 1;
            range = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("if-range") {
            if_range = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                close |= token.eq_ignore_ascii_case("close");
                keep |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            match value.parse::<u64>() {
                Ok(0) => {}
                Ok(_) => has_body = true,
                Err(_) => return Err(HeadError::Malformed("invalid Content-Length".into())),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    if lengths > 1 {
        return Err(HeadError::Malformed("more than one Content-Length".into()));
    }
    if ranges > 1 {
        // Two Range fields are no valid request; answer the whole file (a server may ignore
        // Range).
        range = None;
    }
    let keep_alive = if http11 { !close } else { keep && !close };
    Ok(Some((
        Request {
            method,
            target,
            http11,
            range,
            if_range,
            keep_alive,
            has_body,
        },
        used,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Ok(Some((r, n))) => {
                assert_eq!(n, text.len());
                r
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn curl_and_wget_requests_parse() {
        let r = one(
            "GET /j/abc/img.bin HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nRange: bytes=10-\r\n\r\n",
        );
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/j/abc/img.bin");
        assert!(r.http11 && r.keep_alive && !r.has_body);
        assert_eq!(r.range.as_deref(), Some("bytes=10-"));
        let r = one("HEAD /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(r.method, Method::Head);
        assert!(!r.http11 && r.keep_alive);
        let r = one("GET /x HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let r = one("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!r.keep_alive);
        assert_eq!(one("DELETE /x HTTP/1.1\r\n\r\n").method, Method::Other);
    }

    #[test]
    fn partial_too_large_and_malformed_heads() {
        assert_eq!(parse(b"GET /x HTTP/1.1\r\nHost:"), Ok(None));
        let big = format!("GET /x HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(big.as_bytes()), Err(HeadError::TooLarge));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET /x HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()), Err(HeadError::TooLarge));
        assert!(matches!(
            parse(b"GET /x FTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let r = one("GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert!(r.has_body);
        let r = one("GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.has_body);
        let r = one("GET /x HTTP/1.1\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n");
        assert_eq!(r.range, None);
    }
}
