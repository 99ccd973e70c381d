//! FTP: the control-line parser with the argument parsers behind it, and whole sessions driven
//! through an in-memory control connection.

use std::cell::RefCell;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Fixture, HIDDEN_SIZE, IMAGE_SIZE, SECRET_SIZE};
use crate::ftp::command::{Command, MAX_LINE, ParseError, parse, parse_eprt, parse_port};
use crate::ftp::listing::{self, Target};
use crate::ftp::{FtpConfig, FtpCredentials};

pub(super) const TOKENS: &[&[u8]] = &[
    b"USER fleetup\r\n",
    b"PASS fuzz-Pa55word\r\n",
    b"USER anonymous\r\n",
    b"RETR ",
    b"SIZE ",
    b"MDTM ",
    b"MLST ",
    b"LIST -la ",
    b"CWD ",
    b"PORT 127,0,0,1,4,1",
    b"EPRT |2|::1|6446|",
    b"REST 100\r\n",
    b"TYPE I\r\n",
    b"ABOR\r\n",
    b"FEAT\r\n",
    b"OPTS UTF8 ON\r\n",
    b"\xff\xf4\xff\xf2",
    b"\r\n",
    b"../",
    b"escape.bin",
    b"partial.bin",
    b".incoming/0123.part",
    b"c2960x-universalk9-mz.152-7.E8.bin",
];

/// Parse one control line. A parsed command, written back as a line, parses to itself; PORT
/// and EPRT addresses written back parse to the same address; every path argument names either
/// the root or a file the store serves (the image, never a hidden, partial or outside file),
/// and the listing lines for it are single lines.
pub fn ftp_command(fixture: &Fixture, data: &[u8]) {
    match parse(data) {
        Ok(cmd) => {
            if let Some(line) = render(&cmd) {
                assert_eq!(
                    parse(line.as_bytes()).as_ref(),
                    Ok(&cmd),
                    "{line:?} does not parse back"
                );
            }
            match &cmd {
                Command::Port(a) => {
                    if let Ok(addr) = parse_port(a) {
                        let std::net::IpAddr::V4(ip) = addr.ip() else {
                            panic!("PORT gave an IPv6 address");
                        };
                        let [a, b, c, d] = ip.octets();
                        let p = addr.port();
                        let again = format!("{a},{b},{c},{d},{},{}", p >> 8, p & 0xff);
                        assert_eq!(parse_port(&again), Ok(addr));
                    }
                }
                Command::Eprt(a) => {
                    if let Ok(addr) = parse_eprt(a) {
                        let family = if addr.is_ipv4() { 1 } else { 2 };
                        let again = format!("|{family}|{}|{}|", addr.ip(), addr.port());
                        assert_eq!(parse_eprt(&again), Ok(addr));
                    }
                }
                Command::Retr(n) | Command::Size(n) | Command::Mdtm(n) => check_entry(fixture, n),
                Command::Cwd(n) => check_target(fixture, n),
                Command::List(a) => {
                    check_target(fixture, listing::strip_list_options(a.as_deref()))
                }
                Command::Nlst(Some(a)) | Command::Mlsd(Some(a)) | Command::Mlst(Some(a)) => {
                    check_target(fixture, a)
                }
                _ => {}
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let ParseError::MissingArgument(verb) = e {
                assert!(!verb.is_empty());
            }
        }
    }
}

/// The canonical line for a command, if it has one.
fn render(cmd: &Command) -> Option<String> {
    let with = |verb: &str, arg: &str| format!("{verb} {arg}\r\n");
    let opt = |verb: &str, arg: &Option<String>| match arg {
        Some(a) => format!("{verb} {a}\r\n"),
        None => format!("{verb}\r\n"),
    };
    Some(match cmd {
        Command::User(a) => with("USER", a),
        Command::Pass(a) => with("PASS", a),
        Command::Acct => "ACCT\r\n".into(),
        Command::Auth(a) => with("AUTH", a),
        Command::Pbsz(a) => with("PBSZ", a),
        Command::Prot(a) => with("PROT", a),
        Command::Ccc => "CCC\r\n".into(),
        Command::Quit => "QUIT\r\n".into(),
        Command::Noop => "NOOP\r\n".into(),
        Command::Syst => "SYST\r\n".into(),
        Command::Feat => "FEAT\r\n".into(),
        Command::Opts(a) => with("OPTS", a),
        Command::Help => "HELP\r\n".into(),
        Command::Pwd => "PWD\r\n".into(),
        Command::Cwd(a) => with("CWD", a),
        Command::Cdup => "CDUP\r\n".into(),
        Command::Type(a) => with("TYPE", a),
        Command::Mode(a) => with("MODE", a),
        Command::Stru(a) => with("STRU", a),
        Command::Pasv => "PASV\r\n".into(),
        Command::Epsv(a) => opt("EPSV", a),
        Command::Port(a) => with("PORT", a),
        Command::Eprt(a) => with("EPRT", a),
        Command::Rest(a) => with("REST", a),
        Command::Retr(a) => with("RETR", a),
        Command::Size(a) => with("SIZE", a),
        Command::Mdtm(a) => with("MDTM", a),
        Command::List(a) => opt("LIST", a),
        Command::Nlst(a) => opt("NLST", a),
        Command::Mlsd(a) => opt("MLSD", a),
        Command::Mlst(a) => opt("MLST", a),
        Command::Stat(a) => opt("STAT", a),
        Command::Abor => "ABOR\r\n".into(),
        Command::Allo => "ALLO\r\n".into(),
        Command::Write(v) => format!("{v}\r\n"),
        Command::Site => "SITE\r\n".into(),
        // A verb with a CR or LF of its own has no line that reads back to it.
        Command::Unknown(v) if v.ends_with(['\r', '\n']) => return None,
        Command::Unknown(v) => format!("{v}\r\n"),
    })
}

fn check_target(fixture: &Fixture, arg: &str) {
    match listing::target(arg) {
        Target::Root => assert!(arg.trim_end_matches('/').len() <= 2, "{arg:?} taken for /"),
        Target::File(name) => check_entry(fixture, &name),
    }
}

fn check_entry(fixture: &Fixture, name: &str) {
    if let Ok(e) = listing::entry(&fixture.root, name) {
        assert_eq!(
            e.size, IMAGE_SIZE,
            "{name:?} served a file other than the image"
        );
        assert!(
            !e.name.contains('/') && !e.name.starts_with('.'),
            "{:?}",
            e.name
        );
        let real = std::fs::canonicalize(&e.path).expect("served file exists");
        let root = std::fs::canonicalize(&fixture.root).expect("fixture root");
        assert!(real.starts_with(&root), "{name:?} served {real:?}");
        let line = listing::list_line(&e, jiff::Timestamp::UNIX_EPOCH);
        assert!(line.ends_with("\r\n") && !line[..line.len() - 2].contains(['\r', '\n']));
        assert!(!listing::mlsx_facts(&e).contains(['\r', '\n']));
    }
}

/// The account the session target logs in with (and that its seed corpus uses).
const USER: &str = "fleetup";
const PASSWORD: &str = "fuzz-Pa55word";

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

/// Commands a session can accept before a login.
fn before_login(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::User(_)
            | Command::Pass(_)
            | Command::Auth(_)
            | Command::Pbsz(_)
            | Command::Prot(_)
            | Command::Feat
            | Command::Syst
            | Command::Quit
            | Command::Noop
            | Command::Help
            | Command::Opts(_)
    )
}

/// Drive a whole session: the input is what the client sends on the control connection (PASV
/// and EPSV are replaced by NOOP, as a data connection cannot be made in memory, and active
/// mode is off). Invariants:
///
/// - the server answers with well-formed replies (a code, one line or a proper multi-line
///   reply, each line ending in CR LF with no other control character: nothing a client sent
///   can start a reply line of its own), one final reply per command line until it closes;
/// - nothing but the allowed commands is answered before a login other than with 530, and a
///   login succeeds only with the right password;
/// - no reply shows the size of the secret outside the store or of a hidden or partial file;
/// - a line longer than the limit closes the session instead of growing a buffer.
pub fn ftp_session(fixture: &Fixture, data: &[u8]) {
    let data = &data[..data.len().min(64 * 1024)];
    // The lines as the server will see them, with PASV and EPSV made harmless.
    let mut input = Vec::with_capacity(data.len());
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
        let (line, tail) = rest.split_at(pos + 1);
        rest = tail;
        let line = match parse(line) {
            Ok(Command::Pasv | Command::Epsv(_)) => b"NOOP\r\n".to_vec(),
            _ => line.to_vec(),
        };
        input.extend_from_slice(&line);
        lines.push(line);
    }
    input.extend_from_slice(rest);
    let credentials = FtpCredentials::new(USER, PASSWORD);
    let config = FtpConfig {
        credentials,
        active: false,
        lockout_after: 3,
        ..FtpConfig::default()
    };
    let peer: SocketAddr = "192.0.2.10:40000".parse().expect("constant");
    let local: SocketAddr = "192.0.2.1:21".parse().expect("constant");
    let root = fixture.root.clone();
    let output = RUNTIME.with(|rt| {
        let mut rt = rt.borrow_mut();
        let rt = rt.get_or_insert_with(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        });
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(256 * 1024);
            let (mut rd, mut wr) = tokio::io::split(client);
            let session = crate::ftp::session_in_memory(root, config, server, peer, local);
            let write = async {
                // The server may close first (QUIT, a long line); then the rest is not read.
                let _ = wr.write_all(&input).await;
                let _ = wr.shutdown().await;
            };
            let mut out = Vec::new();
            let read = async {
                let _ = rd.read_to_end(&mut out).await;
            };
            tokio::join!(session, write, read);
            out
        })
    });
    check_replies(&lines, data.len(), &output);
}

/// One reply: its code, its lines.
struct Reply {
    code: u16,
    text: String,
}

fn check_replies(lines: &[Vec<u8>], input_len: usize, output: &[u8]) {
    let text = std::str::from_utf8(output).unwrap_or_else(|_| panic!("reply is not UTF-8"));
    assert!(
        output.len() <= 4096 + 2 * input_len + 400 * lines.len(),
        "{} bytes of replies to {input_len} bytes of commands",
        output.len()
    );
    let mut replies = Vec::new();
    let mut multi: Option<(u16, String)> = None;
    let raw_lines: Vec<&str> = text.split_inclusive('\n').collect();
    for raw in &raw_lines {
        let line = raw
            .strip_suffix("\r\n")
            .unwrap_or_else(|| panic!("reply line not ended by CR LF: {raw:?}"));
        assert!(
            !line.chars().any(char::is_control),
            "control character inside a reply line: {line:?}"
        );
        if let Some((code, _)) = &multi {
            let end = format!("{code} ");
            if line.starts_with(&end) {
                let (code, first) = multi.take().expect("in a multi-line reply");
                replies.push(Reply { code, text: first });
            } else {
                assert!(line.starts_with(' '), "continuation line {line:?}");
                if let Some((_, t)) = &mut multi {
                    t.push('\n');
                    t.push_str(line);
                }
            }
            continue;
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("reply without a code: {line:?}"));
        assert!((100..600).contains(&code), "reply code {code}");
        match line.as_bytes().get(3) {
            Some(b' ') => replies.push(Reply {
                code,
                text: line[4..].to_string(),
            }),
            Some(b'-') => multi = Some((code, line[4..].to_string())),
            _ => panic!("reply {line:?} is neither single nor multi-line"),
        }
    }
    assert!(multi.is_none(), "unterminated multi-line reply");
    let (greeting, answers) = replies
        .split_first()
        .unwrap_or_else(|| panic!("no greeting"));
    assert_eq!(greeting.code, 220, "greeting {}", greeting.text);
    for r in answers {
        for bad in [SECRET_SIZE, HIDDEN_SIZE] {
            assert!(
                !(r.code == 213 && r.text == bad.to_string()),
                "SIZE of a file outside the store or hidden: {}",
                r.text
            );
            assert!(
                !r.text.contains(&format!("size={bad};")),
                "MLST of a file outside the store or hidden: {}",
                r.text
            );
        }
    }
    // One final reply per command line, until the server closes.
    let closes = |r: &Reply| {
        r.code == 221
            || r.code == 421
            || (r.code == 500 && r.text.starts_with("Command line too long"))
            || (r.code == 530 && r.text.contains("locked out"))
    };
    let closed_at = answers.iter().position(closes);
    match closed_at {
        Some(i) => assert_eq!(answers.len(), i + 1, "replies after the session closed"),
        None => {
            let long = lines.iter().any(|l| l.len() > MAX_LINE + 1024);
            if !long {
                assert_eq!(
                    answers.len(),
                    lines.len(),
                    "{} replies to {} command lines",
                    answers.len(),
                    lines.len()
                );
            }
        }
    }
    let mut logged_in = false;
    for (line, reply) in lines.iter().zip(answers) {
        let cmd = parse(line);
        if reply.code == 230 {
            assert!(
                matches!(&cmd, Ok(Command::Pass(pw)) if pw == PASSWORD),
                "230 in answer to {:?}",
                String::from_utf8_lossy(line)
            );
            logged_in = true;
        }
        if !logged_in
            && let Ok(c) = &cmd
            && !before_login(c)
        {
            assert_eq!(
                reply.code,
                530,
                "{:?} answered {} {} before a login",
                String::from_utf8_lossy(line),
                reply.code,
                reply.text
            );
        }
        if closes(reply) {
            break;
        }
    }
}
