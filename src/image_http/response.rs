//! What to answer (pure): the status, the head's bytes and which body follows. `now` is passed
//! in.

use jiff::Timestamp;

use super::range::{self, Wanted};
use super::request::{Method, Request};

/// A served file as the response needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    pub size: u64,
    pub modified: Timestamp,
}

impl FileFacts {
    /// A strong validator from size and modification time, for `If-Range`: an image is
    /// written once, and a replaced one differs in both.
    fn etag(&self) -> String {
        format!(
            "\"{:x}-{:x}\"",
            self.size,
            self.modified.as_nanosecond().max(0)
        )
    }
}

/// The body after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    /// A short fixed text (errors).
    Text(&'static str),
    /// `len` bytes of the file from `offset`.
    File {
        offset: u64,
        len: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub head: String,
    pub body: Body,
    /// The connection closes after this response.
    pub close: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn http_date(t: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap_or_default()
}

fn head(status: u16, now: Timestamp, close: bool, fields: &[(&str, String)]) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nServer: fleetup\r\nDate: {}\r\n",
        reason(status),
        http_date(now)
    );
    for (name, value) in fields {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    }
    h.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    h
}

/// A refusal with a tiny text body. 404 keeps the connection when the client wants it (a
/// device may try another name); the others close it.
pub(crate) fn error(status: u16, method: Method, keep_alive: bool, now: Timestamp) -> Response {
    let text: &'static str = match status {
        404 => "not found\n",
        405 => "method not allowed\n",
        416 => "range not satisfiable\n",
        431 => "request head too large\n",
        503 => "too many connections; try again later\n",
        _ => "bad request\n",
    };
    let close = !(keep_alive && status == 404);
    let mut fields = vec![
        ("Content-Type", "text/plain; charset=utf-8".to_string()),
        ("Content-Length", text.len().to_string()),
    ];
    if status == 405 {
        fields.push(("Allow", "GET, HEAD".to_string()));
    }
    if status == 503 {
        fields.push(("Retry-After", "5".to_string()));
    }
    Response {
        status,
        head: head(status, now, close, &fields),
        body: if method == Method::Head {
            Body::None
        } else {
            Body::Text(text)
        },
        close,
    }
}

/// The answer to a GET or HEAD of a file the request may have.
pub(crate) fn for_file(req: &Request, file: FileFacts, now: Timestamp) -> Response {
    let close = !req.keep_alive;
    let etag = file.etag();
    let modified = http_date(file.modified);
    // A range holds only while the client's copy is the same file (RFC 9110 §13.1.5).
    let range = match req.if_range.as_deref() {
        Some(v) if v != etag && v != modified => None,
        _ => req.range.as_deref(),
    };
    let common = |len: u64| {
        vec![
            ("Content-Type", "application/octet-stream".to_string()),
            ("Content-Length", len.to_string()),
            ("Accept-Ranges", "bytes".to_string()),
            ("Last-Modified", modified.clone()),
            ("ETag", etag.clone()),
        ]
    };
    let (status, fields, offset, len) = match range::resolve(range, file.size) {
        Wanted::Whole => (200, common(file.size), 0, file.size),
        Wanted::Part { offset, len } => {
            let mut f = common(len);
            f.push((
                "Content-Range",
                format!("bytes {offset}-{}/{}", offset + len - 1, file.size),
            ));
            (206, f, offset, len)
        }
        Wanted::Unsatisfiable => {
            let text = "range not satisfiable\n";
            let fields = [
                ("Content-Type", "text/plain; charset=utf-8".to_string()),
                ("Content-Length", text.len().to_string()),
                ("Content-Range", format!("bytes */{}", file.size)),
            ];
            return Response {
                status: 416,
                head: head(416, now, close, &fields),
                body: if req.method == Method::Head {
                    Body::None
                } else {
                    Body::Text(text)
                },
                close,
            };
        }
    };
    Response {
        status,
        head: head(status, now, close, &fields),
        body: if req.method == Method::Head {
            Body::None
        } else {
            Body::File { offset, len }
        },
        close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, range: Option<&str>, if_range: Option<&str>) -> Request {
        Request {
            method,
            target: "/j/t/f".into(),
            http11: true,
            range: range.map(str::to_string),
            if_range: if_range.map(str::to_string),
            keep_alive: true,
            has_body: false,
        }
    }

    const FILE: FileFacts = FileFacts {
        size: 1000,
        modified: Timestamp::UNIX_EPOCH,
    };

    #[test]
    fn whole_part_and_unsatisfiable() {
        let now = Timestamp::UNIX_EPOCH;
        let r = for_file(&req(Method::Get, None, None), FILE, now);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            Body::File {
                offset: 0,
                len: 1000
            }
        );
        assert!(
            r.head.contains("\r\nContent-Length: 1000\r\n"),
            "{}",
            r.head
        );
        assert!(r.head.contains("\r\nAccept-Ranges: bytes\r\n"));
        assert!(
            r.head
                .contains("\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n")
        );
        assert!(r.head.ends_with("\r\n\r\n") && !r.close);

        let r = for_file(&req(Method::Get, Some("bytes=100-"), None), FILE, now);
        assert_eq!(r.status, 206);
        assert_eq!(
            r.body,
            Body::File {
                offset: 100,
                len: 900
            }
        );
        assert!(r.head.contains("\r\nContent-Range: bytes 100-999/1000\r\n"));
        assert!(r.head.contains("\r\nContent-Length: 900\r\n"));

        let r = for_file(&req(Method::Head, Some("bytes=-10"), None), FILE, now);
        assert_eq!(r.status, 206);
        assert_eq!(r.body, Body::None);

        let r = for_file(&req(Method::Get, Some("bytes=1000-"), None), FILE, now);
        assert_eq!(r.status, 416);
        assert!(r.head.contains("\r\nContent-Range: bytes */1000\r\n"));
    }

    #[test]
    fn if_range_with_another_validator_gives_the_whole_file() {
        let now = Timestamp::UNIX_EPOCH;
        let etag = FILE.etag();
        let r = for_file(&req(Method::Get, Some("bytes=5-"), Some(&etag)), FILE, now);
        assert_eq!(r.status, 206);
        let r = for_file(
            &req(
                Method::Get,
                Some("bytes=5-"),
                Some("Thu, 01 Jan 1970 00:00:00 GMT"),
            ),
            FILE,
            now,
        );
        assert_eq!(r.status, 206);
        let r = for_file(
            &req(Method::Get, Some("bytes=5-"), Some("\"old\"")),
            FILE,
            now,
        );
        assert_eq!(r.status, 200);
    }

    #[test]
    fn errors_are_tiny_and_405_says_allow() {
        let now = Timestamp::UNIX_EPOCH;
        let r = error(405, Method::Other, true, now);
        assert!(r.head.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(r.close);
        let r = error(404, Method::Get, true, now);
        assert!(!r.close);
        assert_eq!(r.body, Body::Text("not found\n"));
        let r = error(404, Method::Head, false, now);
        assert!(r.close);
        assert_eq!(r.body, Body::None);
        assert!(r.head.contains("\r\nContent-Length: 10\r\n"));
    }
}
