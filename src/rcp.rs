//! The rcp protocol that `scp` speaks over an SSH exec channel (OpenSSH's legacy SCP, `scp
//! -O`, and what IOS, IOS-XE and NX-OS speak): the remote command line (`scp -f FILE` to
//! send a file, `scp -t FILE` to receive one), the file header `C0644 SIZE NAME`, and the
//! one-byte replies (`\0` ok, `\x01` + message + `\n` an error, `\x02` + message a fatal
//! one). Pure: shared by the image server (source), the lab's devices (sink, and source
//! when they fetch), and fleetup's push to a device (source).

/// Longest header or error line accepted: a file name and a size, or a device's message.
pub(crate) const MAX_LINE: usize = 1024;

/// What the remote side of `scp` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `-f` ("from"): send the file.
    Source,
    /// `-t` ("to"): receive a file.
    Sink,
}

/// An `scp` command line received in an exec request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub mode: Mode,
    pub path: String,
    /// `-p`: the times go first, as a `T` line.
    pub preserve: bool,
}

/// Parse an exec request's command line. `None` when it is no `scp` command at all;
/// `Some(Err(reason))` when it is one this side does not do (several files, directories).
pub(crate) fn parse_command(line: &str) -> Option<Result<Command, String>> {
    let line = line.trim();
    let (first, mut rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    if first != "scp" {
        return None;
    }
    let (mut mode, mut preserve) = (None, false);
    // Options first; the rest of the line is the one path (it may hold quoted spaces).
    loop {
        rest = rest.trim_start();
        let (w, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if w == "--" {
            rest = after;
            break;
        }
        if w.len() < 2 || !w.starts_with('-') {
            break;
        }
        for c in w[1..].chars() {
            match c {
                'f' => mode = Some(Mode::Source),
                't' => mode = Some(Mode::Sink),
                'p' => preserve = true,
                // Verbose, "target should be a directory" and quiet: no effect on one file.
                'v' | 'd' | 'q' => {}
                'r' => return Some(Err("directories are not copied (-r)".into())),
                other => return Some(Err(format!("unknown scp option -{other}"))),
            }
        }
        rest = after;
    }
    let Some(mode) = mode else {
        return Some(Err("scp needs -f (send) or -t (receive)".into()));
    };
    let path = unquote(rest.trim()).to_string();
    if path.is_empty() {
        return Some(Err("no file named".into()));
    }
    Some(Ok(Command {
        mode,
        path,
        preserve,
    }))
}

/// OpenSSH quotes the remote path for the shell; undo one level of quotes.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// The header that announces one file of `size` bytes.
pub(crate) fn file_header(size: u64, name: &str) -> String {
    format!("C0644 {size} {name}\n")
}

/// The `T` line of `-p`: modification and access times, in Unix seconds.
pub(crate) fn times_line(mtime: u64) -> String {
    format!("T{mtime} 0 {mtime} 0\n")
}

/// An error reply: `\x01` (the transfer of this file failed) or, `fatal`, `\x02` (give up).
pub(crate) fn error_reply(message: &str, fatal: bool) -> Vec<u8> {
    let mut out = vec![if fatal { 2 } else { 1 }];
    out.extend(message.bytes().filter(|b| *b != b'\n').take(MAX_LINE - 2));
    out.push(b'\n');
    out
}

/// What a side answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Ok,
    /// `\x01` or `\x02` with the message, as the other side worded it.
    Error(String),
}

/// Take one reply from the front of `buf`; `None` while it is incomplete. A message longer
/// than [`MAX_LINE`] is cut there, so a peer cannot grow the buffer without bound.
pub(crate) fn take_reply(buf: &mut Vec<u8>) -> Option<Reply> {
    let first = *buf.first()?;
    if first == 0 {
        buf.drain(..1);
        return Some(Reply::Ok);
    }
    let (line, used) = match buf.iter().position(|b| *b == b'\n') {
        Some(nl) => (&buf[1..nl], nl + 1),
        None if buf.len() >= MAX_LINE => (&buf[1..], buf.len()),
        None => return None,
    };
    let text = if first == 1 || first == 2 {
        String::from_utf8_lossy(line).trim().to_string()
    } else {
        // Not a reply at all: show what came, so the error says what the peer is.
        format!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..used]).trim()
        )
    };
    buf.drain(..used);
    Some(Reply::Error(text))
}

/// One line a source sends a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// `C`: a file follows.
    File { mode: u32, size: u64, name: String },
    /// `T`: times for the next file (`-p`).
    Times,
    /// `D` or `E`: a directory starts or ends (`-r`).
    Directory,
    /// `\x01` or `\x02`: the source reports an error instead.
    Error(String),
}

/// Take one header line from the front of `buf`; `None` while incomplete, `Some(Err)` when
/// it is malformed (or longer than [`MAX_LINE`]).
pub(crate) fn take_header(buf: &mut Vec<u8>) -> Option<Result<Header, String>> {
    let nl = match buf.iter().position(|b| *b == b'\n') {
        Some(nl) => nl,
        None if buf.len() >= MAX_LINE => {
            buf.clear();
            return Some(Err("header line too long".into()));
        }
        None => return None,
    };
    let line: Vec<u8> = buf.drain(..=nl).collect();
    let text = String::from_utf8_lossy(&line[..nl]).into_owned();
    Some(parse_header(&text))
}

fn parse_header(text: &str) -> Result<Header, String> {
    let bad = || format!("malformed scp header {text:?}");
    let mut chars = text.chars();
    match chars.next() {
        Some('\u{1}') | Some('\u{2}') => Ok(Header::Error(chars.as_str().trim().to_string())),
        Some('T') => Ok(Header::Times),
        Some('D') | Some('E') => Ok(Header::Directory),
        Some('C') => {
            let mut parts = chars.as_str().splitn(3, ' ');
            let mode = parts
                .next()
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .ok_or_else(bad)?;
            let size = parts
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(bad)?;
            let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
            Ok(Header::File {
                mode,
                size,
                name: name.to_string(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_of_openssh_and_ios() {
        let c = parse_command("scp -f -- c2960x.bin").unwrap().unwrap();
        assert_eq!(
            c,
            Command {
                mode: Mode::Source,
                path: "c2960x.bin".into(),
                preserve: false
            }
        );
        let c = parse_command("scp -p -f '/a b.bin'").unwrap().unwrap();
        assert_eq!(c.path, "/a b.bin");
        assert!(c.preserve);
        let c = parse_command("scp -t flash:x.bin").unwrap().unwrap();
        assert_eq!((c.mode, c.path.as_str()), (Mode::Sink, "flash:x.bin"));
        assert_eq!(
            parse_command("scp -v -pt x").unwrap().unwrap().mode,
            Mode::Sink
        );
        assert!(parse_command("ls -l").is_none());
        assert!(parse_command("").is_none());
        assert!(parse_command("scp -r -f dir").unwrap().is_err());
        assert!(parse_command("scp -f").unwrap().is_err());
        assert!(parse_command("scp x").unwrap().is_err());
        assert_eq!(parse_command("scp -f -- a b").unwrap().unwrap().path, "a b");
    }

    #[test]
    fn replies_are_taken_whole_and_bounded() {
        let mut buf = vec![0, 1, b'n', b'o'];
        assert_eq!(take_reply(&mut buf), Some(Reply::Ok));
        assert_eq!(take_reply(&mut buf), None);
        buf.extend(b" such file\n\0");
        assert_eq!(
            take_reply(&mut buf),
            Some(Reply::Error("no such file".into()))
        );
        assert_eq!(take_reply(&mut buf), Some(Reply::Ok));
        assert!(buf.is_empty());
        let mut long = vec![2];
        long.extend(std::iter::repeat_n(b'x', MAX_LINE));
        assert!(matches!(take_reply(&mut long), Some(Reply::Error(_))));
        assert!(long.is_empty());
        let mut junk = b"Password:\n".to_vec();
        assert!(matches!(take_reply(&mut junk), Some(Reply::Error(m)) if m.contains("Password")));
    }

    #[test]
    fn headers_parse_and_round_trip() {
        let mut buf = file_header(1234, "x.bin").into_bytes();
        buf.extend(times_line(5).as_bytes());
        assert_eq!(
            take_header(&mut buf),
            Some(Ok(Header::File {
                mode: 0o644,
                size: 1234,
                name: "x.bin".into()
            }))
        );
        assert_eq!(take_header(&mut buf), Some(Ok(Header::Times)));
        assert_eq!(take_header(&mut buf), None);
        let mut e = error_reply("scp: x: No such file", false);
        assert_eq!(
            take_header(&mut e),
            Some(Ok(Header::Error("scp: x: No such file".into())))
        );
        let mut bad = b"C0644 lots x\n".to_vec();
        assert!(matches!(take_header(&mut bad), Some(Err(_))));
        let mut dir = b"D0755 0 d\n".to_vec();
        assert_eq!(take_header(&mut dir), Some(Ok(Header::Directory)));
    }
}
