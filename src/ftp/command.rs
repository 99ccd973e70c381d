//! FTP control-channel commands: one line in, one [`Command`] out. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest command line accepted; a longer one closes the session (no client needs more).
pub(crate) const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    User(String),
    Pass(String),
    Acct,
    Auth(String),
    Pbsz(String),
    Prot(String),
    Ccc,
    Quit,
    Noop,
    Syst,
    Feat,
    Opts(String),
    Help,
    Pwd,
    Cwd(String),
    Cdup,
    Type(String),
    Mode(String),
    Stru(String),
    Pasv,
    Epsv(Option<String>),
    Port(String),
    Eprt(String),
    Rest(String),
    Retr(String),
    Size(String),
    Mdtm(String),
    List(Option<String>),
    Nlst(Option<String>),
    Mlsd(Option<String>),
    Mlst(Option<String>),
    Stat(Option<String>),
    Abor,
    Allo,
    /// A verb that would change the store (STOR, DELE, ...): always refused.
    Write(&'static str),
    Site,
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("command line is not valid UTF-8")]
    NotUtf8,
    #[error("empty command line")]
    Empty,
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
}

/// Parse one control line (with or without its CR LF).
///
/// Telnet IAC sequences are dropped: clients send `IAC IP IAC DM` before `ABOR` to signal an
/// interrupt, and the command after it must still be recognised.
pub(crate) fn parse(raw: &[u8]) -> Result<Command, ParseError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == 0xff {
            // IAC plus a command byte (>= 0xF0). A lone IAC is what is left of `IAC DM` when
            // the DM byte went out of band as TCP urgent data, as lftp sends it.
            i += if raw.get(i + 1).is_some_and(|b| *b >= 0xf0) {
                2
            } else {
                1
            };
            continue;
        }
        bytes.push(raw[i]);
        i += 1;
    }
    while matches!(bytes.last(), Some(b'\r' | b'\n')) {
        bytes.pop();
    }
    let line = String::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)?;
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v, a),
        None => (line.as_str(), ""),
    };
    if verb.is_empty() {
        return Err(ParseError::Empty);
    }
    let verb = verb.to_ascii_uppercase();
    let opt = || (!arg.trim().is_empty()).then(|| arg.to_string());
    let need = |name: &'static str| -> Result<String, ParseError> {
        if arg.trim().is_empty() {
            Err(ParseError::MissingArgument(name))
        } else {
            Ok(arg.to_string())
        }
    };
    Ok(match verb.as_str() {
        "USER" => Command::User(need("USER")?),
        // An empty password is a wrong password, not a syntax error.
        "PASS" => Command::Pass(arg.to_string()),
        "ACCT" => Command::Acct,
        "AUTH" => Command::Auth(need("AUTH")?.trim().to_ascii_uppercase()),
        "PBSZ" => Command::Pbsz(need("PBSZ")?.trim().to_string()),
        "PROT" => Command::Prot(need("PROT")?.trim().to_ascii_uppercase()),
        "CCC" => Command::Ccc,
        "QUIT" => Command::Quit,
        "NOOP" => Command::Noop,
        "SYST" => Command::Syst,
        "FEAT" => Command::Feat,
        "OPTS" => Command::Opts(need("OPTS")?),
        "HELP" => Command::Help,
        "PWD" | "XPWD" => Command::Pwd,
        "CWD" | "XCWD" => Command::Cwd(need("CWD")?),
        "CDUP" | "XCUP" => Command::Cdup,
        "TYPE" => Command::Type(need("TYPE")?.trim().to_ascii_uppercase()),
        "MODE" => Command::Mode(need("MODE")?.trim().to_ascii_uppercase()),
        "STRU" => Command::Stru(need("STRU")?.trim().to_ascii_uppercase()),
        "PASV" => Command::Pasv,
        "EPSV" => Command::Epsv(opt()),
        "PORT" => Command::Port(need("PORT")?),
        "EPRT" => Command::Eprt(need("EPRT")?),
        "REST" => Command::Rest(need("REST")?),
        "RETR" => Command::Retr(need("RETR")?),
        "SIZE" => Command::Size(need("SIZE")?),
        "MDTM" => Command::Mdtm(need("MDTM")?),
        "LIST" => Command::List(opt()),
        "NLST" => Command::Nlst(opt()),
        "MLSD" => Command::Mlsd(opt()),
        "MLST" => Command::Mlst(opt()),
        "STAT" => Command::Stat(opt()),
        "ABOR" => Command::Abor,
        "ALLO" => Command::Allo,
        "STOR" => Command::Write("STOR"),
        "STOU" => Command::Write("STOU"),
        "APPE" => Command::Write("APPE"),
        "DELE" => Command::Write("DELE"),
        "RNFR" => Command::Write("RNFR"),
        "RNTO" => Command::Write("RNTO"),
        "MKD" | "XMKD" => Command::Write("MKD"),
        "RMD" | "XRMD" => Command::Write("RMD"),
        "MFMT" => Command::Write("MFMT"),
        "MFCT" => Command::Write("MFCT"),
        "SITE" => Command::Site,
        _ => Command::Unknown(verb),
    })
}

/// Why a PORT/EPRT argument was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    #[error("expected h1,h2,h3,h4,p1,p2")]
    BadPort,
    #[error("expected |1|IPv4|port| or |2|IPv6|port|")]
    BadEprt,
    #[error("address family {0} not supported; use 1 (IPv4) or 2 (IPv6)")]
    Family(String),
}

/// `PORT h1,h2,h3,h4,p1,p2`.
pub(crate) fn parse_port(arg: &str) -> Result<SocketAddr, AddressError> {
    let parts: Vec<u8> = arg
        .trim()
        .split(',')
        .map(|p| p.trim().parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| AddressError::BadPort)?;
    let [a, b, c, d, p1, p2] = parts[..] else {
        return Err(AddressError::BadPort);
    };
    let port = u16::from(p1) << 8 | u16::from(p2);
    Ok(SocketAddr::new(Ipv4Addr::new(a, b, c, d).into(), port))
}

/// `EPRT |proto|addr|port|` (RFC 2428); the delimiter is the first character.
pub(crate) fn parse_eprt(arg: &str) -> Result<SocketAddr, AddressError> {
    let arg = arg.trim();
    let delim = arg.chars().next().ok_or(AddressError::BadEprt)?;
    let fields: Vec<&str> = arg.split(delim).collect();
    let ["", proto, addr, port, ""] = fields[..] else {
        return Err(AddressError::BadEprt);
    };
    let port: u16 = port.parse().map_err(|_| AddressError::BadEprt)?;
    let ip: IpAddr = match proto {
        "1" => addr
            .parse::<Ipv4Addr>()
            .map_err(|_| AddressError::BadEprt)?
            .into(),
        "2" => addr
            .parse::<Ipv6Addr>()
            .map_err(|_| AddressError::BadEprt)?
            .into(),
        other => return Err(AddressError::Family(other.to_string())),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_keep_arguments_verbatim() {
        assert_eq!(
            parse(b"retr my file.bin\r\n"),
            Ok(Command::Retr("my file.bin".into()))
        );
        assert_eq!(parse(b"USER dev\r\n"), Ok(Command::User("dev".into())));
        assert_eq!(parse(b"type i\r\n"), Ok(Command::Type("I".into())));
        assert_eq!(parse(b"LIST\r\n"), Ok(Command::List(None)));
        assert_eq!(
            parse(b"LIST -la\r\n"),
            Ok(Command::List(Some("-la".into())))
        );
        assert_eq!(parse(b"PASS\r\n"), Ok(Command::Pass(String::new())));
    }

    #[test]
    fn write_verbs_are_recognised_as_writes() {
        for (line, verb) in [
            (&b"STOR x"[..], "STOR"),
            (b"DELE x", "DELE"),
            (b"RNFR x", "RNFR"),
            (b"RNTO y", "RNTO"),
            (b"MKD d", "MKD"),
            (b"XMKD d", "MKD"),
            (b"RMD d", "RMD"),
            (b"APPE x", "APPE"),
            (b"STOU", "STOU"),
        ] {
            assert_eq!(parse(line), Ok(Command::Write(verb)));
        }
        assert_eq!(parse(b"SITE CHMOD 777 x"), Ok(Command::Site));
    }

    #[test]
    fn bad_lines_are_errors() {
        assert_eq!(parse(b"\r\n"), Err(ParseError::Empty));
        assert_eq!(parse(b"RETR\r\n"), Err(ParseError::MissingArgument("RETR")));
        assert_eq!(parse(b"CWD  \r\n"), Err(ParseError::MissingArgument("CWD")));
        assert_eq!(parse(b"RETR \xc3\x28"), Err(ParseError::NotUtf8));
        assert_eq!(parse(b"XYZZY"), Ok(Command::Unknown("XYZZY".into())));
    }

    #[test]
    fn telnet_interrupt_before_abor_is_ignored() {
        assert_eq!(parse(b"\xff\xf4\xff\xf2ABOR\r\n"), Ok(Command::Abor));
        // The DM byte was sent as urgent data and is not in the stream.
        assert_eq!(parse(b"\xff\xf4\xffABOR\r\n"), Ok(Command::Abor));
    }

    #[test]
    fn port_and_eprt_arguments() {
        assert_eq!(
            parse_port("127,0,0,1,4,1"),
            Ok("127.0.0.1:1025".parse().unwrap())
        );
        assert_eq!(parse_port("127,0,0,1,4"), Err(AddressError::BadPort));
        assert_eq!(parse_port("127,0,0,1,4,256"), Err(AddressError::BadPort));
        assert_eq!(
            parse_eprt("|1|10.0.0.2|6446|"),
            Ok("10.0.0.2:6446".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("|2|::1|6446|"),
            Ok("[::1]:6446".parse().unwrap())
        );
        assert_eq!(
            parse_eprt("!1!10.0.0.2!6446!"),
            Ok("10.0.0.2:6446".parse().unwrap())
        );
        assert_eq!(parse_eprt("|3|x|1|"), Err(AddressError::Family("3".into())));
        assert_eq!(parse_eprt("|1|::1|1|"), Err(AddressError::BadEprt));
        assert_eq!(parse_eprt("|1|10.0.0.2|99999|"), Err(AddressError::BadEprt));
        assert_eq!(parse_eprt(""), Err(AddressError::BadEprt));
    }
}
