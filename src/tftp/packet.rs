//! TFTP wire format (RFC 1350, options per RFC 2347): decoding and encoding of datagrams.
//!
//! Decoding borrows the payload of DATA packets so a received block is copied once, into its
//! destination. Nothing here knows about sessions, sockets or time.

use std::fmt;

/// Block size of plain RFC 1350 transfers.
pub(crate) const DEFAULT_BLKSIZE: u16 = 512;
/// Largest block size RFC 2348 allows (65535 minus IP and UDP headers).
pub(crate) const MAX_BLKSIZE: u16 = 65464;
/// Smallest block size RFC 2348 allows.
pub(crate) const MIN_BLKSIZE: u16 = 8;
/// RFC 2347 limits a request, options included, to 512 octets.
pub(crate) const MAX_REQUEST_LEN: usize = 512;
/// A request may carry at most this many options; real clients send four or five.
pub const MAX_OPTIONS: usize = 16;

/// Error codes of RFC 1350 and RFC 2347.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    OptionRefused = 8,
}

impl ErrorCode {
    pub(crate) fn code(self) -> u16 {
        self as u16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Octet => "octet",
            Mode::Netascii => "netascii",
        }
    }
}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub filename: String,
    pub mode: Mode,
    /// Option names lower-cased (they are case-insensitive), in the order received.
    pub options: Vec<(String, String)>,
}

impl Request {
    #[cfg(test)]
    pub(crate) fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request),
    Wrq(Request),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: String },
    Oack { options: Vec<(String, String)> },
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet of {0} bytes is too short for a TFTP packet")]
    Truncated(usize),
    #[error("unknown TFTP opcode {0}")]
    UnknownOpcode(u16),
    #[error("{0} is not terminated by a NUL byte")]
    Unterminated(&'static str),
    #[error("{0} is not valid text")]
    NotText(&'static str),
    #[error("unknown transfer mode {0:?} (expected octet or netascii; mail is not supported)")]
    UnknownMode(String),
    #[error("request of {0} bytes exceeds the {MAX_REQUEST_LEN}-byte limit of RFC 2347")]
    RequestTooLong(usize),
    #[error("request carries more than {MAX_OPTIONS} options")]
    TooManyOptions,
    #[error("option {0:?} appears twice")]
    DuplicateOption(String),
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    #[error("empty file name")]
    EmptyFileName,
    #[error("OACK acknowledges no option")]
    EmptyOack,
}

impl Packet<'_> {
    pub fn decode(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
        if buf.len() < 4 {
            // Even the shortest packets (ACK, ERROR with an empty message needs 5) have 4 bytes.
            return Err(PacketError::Truncated(buf.len()));
        }
        let opcode = u16::from_be_bytes([buf[0], buf[1]]);
        let body = &buf[2..];
        match opcode {
            1 | 2 => {
                if buf.len() > MAX_REQUEST_LEN {
                    return Err(PacketError::RequestTooLong(buf.len()));
                }
                let req = decode_request(body)?;
                Ok(if opcode == 1 {
                    Packet::Rrq(req)
                } else {
                    Packet::Wrq(req)
                })
            }
            3 => Ok(Packet::Data {
                block: u16::from_be_bytes([body[0], body[1]]),
                data: &body[2..],
            }),
            4 => Ok(Packet::Ack {
                block: u16::from_be_bytes([body[0], body[1]]),
            }),
            5 => {
                let code = u16::from_be_bytes([body[0], body[1]]);
                // Some implementations omit the terminating NUL of the message: accept that.
                let raw = &body[2..];
                let raw = match raw.iter().position(|&b| b == 0) {
                    Some(i) => &raw[..i],
                    None => raw,
                };
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(raw).into_owned(),
                })
            }
            6 => {
                let mut fields = Fields { rest: body };
                let options = decode_options(&mut fields)?;
                // An OACK answers options (RFC 2347); one with none (NUL padding only) would
                // encode to two bytes, which are not a packet.
                if options.is_empty() {
                    return Err(PacketError::EmptyOack);
                }
                Ok(Packet::Oack { options })
            }
            other => Err(PacketError::UnknownOpcode(other)),
        }
    }

    /// Append the encoded packet to `buf`.
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>) {
        match self {
            Packet::Rrq(r) | Packet::Wrq(r) => {
                let op: u16 = if matches!(self, Packet::Rrq(_)) { 1 } else { 2 };
                buf.extend_from_slice(&op.to_be_bytes());
                put_str(buf, &r.filename);
                put_str(buf, r.mode.as_str());
                for (k, v) in &r.options {
                    put_str(buf, k);
                    put_str(buf, v);
                }
            }
            Packet::Data { block, data } => {
                put_data_header(buf, *block);
                buf.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                buf.extend_from_slice(&4u16.to_be_bytes());
                buf.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                buf.extend_from_slice(&5u16.to_be_bytes());
                buf.extend_from_slice(&code.to_be_bytes());
                put_str(buf, message);
            }
            Packet::Oack { options } => {
                buf.extend_from_slice(&6u16.to_be_bytes());
                for (k, v) in options {
                    put_str(buf, k);
                    put_str(buf, v);
                }
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }
}

/// Append the 4-byte DATA header; the caller appends the payload.
pub(crate) fn put_data_header(buf: &mut Vec<u8>, block: u16) {
    buf.extend_from_slice(&3u16.to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
}

/// An encoded ERROR packet. NUL bytes in the message would cut it short on the wire, so they
/// are replaced.
pub(crate) fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    Packet::Error {
        code: code.code(),
        message: message.replace('\0', " "),
    }
    .to_vec()
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next(&mut self, what: &'static str) -> Result<&'a str, PacketError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PacketError::Unterminated(what))?;
        let field = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        std::str::from_utf8(field).map_err(|_| PacketError::NotText(what))
    }
}

fn decode_request(body: &[u8]) -> Result<Request, PacketError> {
    let mut fields = Fields { rest: body };
    let filename = fields.next("file name")?.to_string();
    if filename.is_empty() {
        return Err(PacketError::EmptyFileName);
    }
    let mode = fields.next("transfer mode")?;
    let mode = match mode.to_ascii_lowercase().as_str() {
        "octet" => Mode::Octet,
        "netascii" => Mode::Netascii,
        _ => return Err(PacketError::UnknownMode(mode.to_string())),
    };
    let options = decode_options(&mut fields)?;
    Ok(Request {
        filename,
        mode,
        options,
    })
}

fn decode_options(fields: &mut Fields<'_>) -> Result<Vec<(String, String)>, PacketError> {
    let mut options: Vec<(String, String)> = Vec::new();
    while !fields.is_empty() {
        // Some clients pad requests with NUL bytes; an empty name ends the list.
        if fields.rest.iter().all(|&b| b == 0) {
            break;
        }
        let name = fields.next("option name")?.to_ascii_lowercase();
        let value = match fields.next("option value") {
            Ok(v) => v.to_string(),
            Err(PacketError::Unterminated(_)) => return Err(PacketError::OptionWithoutValue(name)),
            Err(e) => return Err(e),
        };
        if options.iter().any(|(n, _)| *n == name) {
            return Err(PacketError::DuplicateOption(name));
        }
        if options.len() == MAX_OPTIONS {
            return Err(PacketError::TooManyOptions);
        }
        options.push((name, value));
    }
    Ok(options)
}

impl fmt::Display for Packet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Packet::Rrq(r) => write!(f, "RRQ {:?} {}", r.filename, r.mode.as_str()),
            Packet::Wrq(r) => write!(f, "WRQ {:?} {}", r.filename, r.mode.as_str()),
            Packet::Data { block, data } => write!(f, "DATA {block} ({} bytes)", data.len()),
            Packet::Ack { block } => write!(f, "ACK {block}"),
            Packet::Error { code, message } => write!(f, "ERROR {code} {message:?}"),
            Packet::Oack { options } => write!(f, "OACK {options:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_with_options() {
        let p = Packet::Rrq(Request {
            filename: "c2960x.bin".into(),
            mode: Mode::Octet,
            options: vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "0".into()),
            ],
        });
        let bytes = p.to_vec();
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn option_names_and_mode_are_case_insensitive() {
        let bytes = b"\x00\x01f.bin\x00OCTET\x00BlkSize\x001024\x00";
        match Packet::decode(bytes).unwrap() {
            Packet::Rrq(r) => {
                assert_eq!(r.mode, Mode::Octet);
                assert_eq!(r.option("blksize"), Some("1024"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn data_ack_error_oack_round_trip() {
        let payload = [7u8; 100];
        for p in [
            Packet::Data {
                block: 65535,
                data: &payload,
            },
            Packet::Data {
                block: 0,
                data: &[],
            },
            Packet::Ack { block: 0 },
            Packet::Error {
                code: 1,
                message: "file not found".into(),
            },
            Packet::Oack {
                options: vec![("windowsize".into(), "16".into())],
            },
        ] {
            assert_eq!(Packet::decode(&p.to_vec()).unwrap(), p);
        }
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(Packet::decode(b""), Err(PacketError::Truncated(0)));
        assert_eq!(
            Packet::decode(b"\x00\x04\x00"),
            Err(PacketError::Truncated(3))
        );
        assert_eq!(
            Packet::decode(b"\x00\x09\x00\x00"),
            Err(PacketError::UnknownOpcode(9))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01file"),
            Err(PacketError::Unterminated("file name"))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01file\x00octet"),
            Err(PacketError::Unterminated("transfer mode"))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01file\x00mail\x00"),
            Err(PacketError::UnknownMode("mail".into()))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01\x00octet\x00"),
            Err(PacketError::EmptyFileName)
        );
        assert_eq!(
            Packet::decode(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(PacketError::OptionWithoutValue("blksize".into()))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01f\x00octet\x00tsize\x000\x00TSIZE\x000\x00"),
            Err(PacketError::DuplicateOption("tsize".into()))
        );
        assert_eq!(
            Packet::decode(b"\x00\x01f\xff\x00octet\x00"),
            Err(PacketError::NotText("file name"))
        );
    }

    #[test]
    fn rejects_oversized_option_lists() {
        let mut bytes = b"\x00\x01f\x00octet\x00".to_vec();
        for i in 0..(MAX_OPTIONS + 1) {
            bytes.extend_from_slice(format!("x{i}\x001\x00").as_bytes());
        }
        assert_eq!(Packet::decode(&bytes), Err(PacketError::TooManyOptions));
        let mut long = b"\x00\x01f\x00octet\x00".to_vec();
        long.extend_from_slice(format!("{}\x001\x00", "a".repeat(600)).as_bytes());
        assert!(matches!(
            Packet::decode(&long),
            Err(PacketError::RequestTooLong(_))
        ));
    }

    #[test]
    fn an_oack_without_options_is_refused() {
        // Found by the tftp_packet fuzz target: it decoded to an OACK that encodes to 2 bytes.
        assert_eq!(
            Packet::decode(b"\x00\x06\x00\x00\x00"),
            Err(PacketError::EmptyOack)
        );
        assert_eq!(Packet::decode(b"\x00\x06"), Err(PacketError::Truncated(2)));
    }

    #[test]
    fn error_message_without_nul_is_accepted() {
        assert_eq!(
            Packet::decode(b"\x00\x05\x00\x02nope").unwrap(),
            Packet::Error {
                code: 2,
                message: "nope".into()
            }
        );
    }
}
