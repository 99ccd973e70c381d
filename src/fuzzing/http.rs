//! The image server's request path: a request head as a client sends it, through the head
//! parser, the `/j/TOKEN/FILE` route with its percent-decoding, the grant and the store's path
//! rules, to the response head and the byte range it sends.

use super::{Fixture, HIDDEN_SIZE, IMAGE, IMAGE_SIZE, SECRET_SIZE};
use crate::image_http::request::{self, MAX_HEAD, Method};
use crate::image_http::response::{self, Body, FileFacts};
use crate::image_http::route::{self, MAX_TARGET};
use crate::image_http::{locate, range};

pub(super) const TOKENS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b"\r\n\r\n",
    b"/j/TOKEN/",
    b"c2960x-universalk9-mz.152-7.E8.bin",
    b"escape.bin",
    b"partial.bin",
    b"hidden-link.bin",
    b"nxos.9.3.8.bin",
    b"Range: bytes=",
    b"If-Range: ",
    b"Connection: close\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"%2e%2e",
    b"%2f",
    b"%00",
    b"..",
    b"-",
    b",",
];

/// The one live token of the target, and the files its grant lists: the image and names the
/// store must refuse whatever a grant says.
const TOKEN: &str = "TOKEN";
const GRANTED: &[&str] = &[
    IMAGE,
    "nxos.9.3.8.bin",
    "escape.bin",
    "partial.bin",
    "hidden-link.bin",
    ".hidden.bin",
    "sub",
    "..",
];

/// - The parser takes no more than it was given nor more than `MAX_HEAD`.
/// - A routed token and file carry no separator, NUL or control character.
/// - A located file is the image (by size): never the secret outside, a hidden or partial file,
///   or a file no grant lists.
/// - A response head is one head (ends in one blank line, no line break from the request in
///   it); a file body lies within the file and matches `Content-Length`.
pub fn http_request(fixture: &Fixture, data: &[u8]) {
    let (req, used) = match request::parse(data) {
        Ok(Some(r)) => r,
        Ok(None) => {
            assert!(
                data.len() < MAX_HEAD,
                "a partial head of {} bytes",
                data.len()
            );
            return;
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(used <= data.len() && used <= MAX_HEAD, "took {used} bytes");
    if let Ok(r) = route::route(&req.target) {
        assert!(req.target.len() <= MAX_TARGET);
        for part in [&r.token, &r.file] {
            assert!(
                !part.is_empty()
                    && !part.contains(['/', '\\'])
                    && !part.chars().any(char::is_control),
                "{:?} routed to {part:?}",
                req.target
            );
        }
    }
    let found = locate(&fixture.root, &req.target, |t, f| {
        t == TOKEN && GRANTED.contains(&f)
    });
    let size = match found {
        Ok((r, path)) => {
            assert_eq!(r.token, TOKEN);
            let meta = std::fs::metadata(&path).expect("a located file exists");
            assert!(meta.is_file());
            assert_ne!(
                meta.len(),
                SECRET_SIZE,
                "{:?} read outside the store",
                req.target
            );
            assert_ne!(
                meta.len(),
                HIDDEN_SIZE,
                "{:?} read a hidden file",
                req.target
            );
            assert_eq!(
                meta.len(),
                IMAGE_SIZE,
                "{:?} read an unknown file",
                req.target
            );
            meta.len()
        }
        Err((why, _)) => {
            assert!(!why.is_empty());
            // Ranges over other lengths still go through the response.
            IMAGE_SIZE + (data.len() as u64 % 3)
        }
    };
    let file = FileFacts {
        size,
        modified: jiff::Timestamp::UNIX_EPOCH,
    };
    let resp = if req.method == Method::Other {
        response::error(405, req.method, req.keep_alive, jiff::Timestamp::UNIX_EPOCH)
    } else {
        response::for_file(&req, file, jiff::Timestamp::UNIX_EPOCH)
    };
    assert!(resp.head.ends_with("\r\n\r\n"));
    assert_eq!(resp.head.matches("\r\n\r\n").count(), 1, "{:?}", resp.head);
    assert!(!resp.head.replace("\r\n", "").contains(['\r', '\n']));
    let length: u64 = resp
        .head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    match resp.body {
        Body::File { offset, len } => {
            assert_eq!(len, length);
            assert!(len > 0 && offset + len <= size, "{offset}+{len} of {size}");
            if resp.status == 206 {
                assert!(matches!(
                    range::resolve(req.range.as_deref(), size),
                    range::Wanted::Part { .. }
                ));
            }
        }
        Body::Text(t) => assert_eq!(t.len() as u64, length),
        Body::None => assert_eq!(req.method, Method::Head),
    }
}
