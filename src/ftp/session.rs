//! One control connection: login, commands, and the transfers it starts.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::auth::Login;
use super::command::{self, Command, MAX_LINE, ParseError};
use super::data::{self, DataConn, SendError};
use super::listing::{self, Target};
use super::{Shared, local_ip_for, locked_out};
use crate::images::ResolveError;
use crate::shutdown::Shutdown;
use crate::transfers::Protocol;

/// The control stream, before and after AUTH TLS.
enum Control {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-memory stream standing for the connection, through which the fuzz target drives a
    /// session (no TLS upgrade on it).
    Memory(tokio::io::DuplexStream),
    /// Only while the stream is being upgraded.
    Upgrading,
}

impl AsyncRead for Control {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Control::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Control::Memory(s) => Pin::new(s).poll_read(cx, buf),
            Control::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Control {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Control::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Control::Memory(s) => Pin::new(s).poll_write(cx, buf),
            Control::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_flush(cx),
            Control::Tls(s) => Pin::new(s).poll_flush(cx),
            Control::Memory(s) => Pin::new(s).poll_flush(cx),
            Control::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Control::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Control::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Control::Memory(s) => Pin::new(s).poll_shutdown(cx),
            Control::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// How the next data connection will be made.
enum DataSetup {
    None,
    Passive(TcpListener),
    Active(SocketAddr),
}

enum Flow {
    Continue,
    Close,
}

/// What happened on the control connection while a transfer ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    None,
    Abor,
    Shutdown,
    ControlClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    List,
    Nlst,
    Mlsd,
}

/// Command lines kept while a transfer runs. A client pipelines one or two (lftp sends the
/// next REST/RETR); with more waiting, the control socket is left unread, as vsftpd leaves it,
/// so a flood of lines stays in the kernel's socket buffers (bounded, and TCP makes the client
/// wait) instead of in this process. Each line is at most [`MAX_LINE`] bytes, so a session
/// holds at most `MAX_PENDING * MAX_LINE` bytes of queued input plus its `inbuf`.
pub(super) const MAX_PENDING: usize = 4;

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Shutdown,
    ctl: Control,
    /// Bytes read from the control stream and not yet consumed as a line.
    inbuf: Vec<u8>,
    /// Commands that arrived while a transfer was running, processed after it. At most
    /// [`MAX_PENDING`]: beyond that the control socket is not read until the transfer ends.
    pending: VecDeque<Vec<u8>>,
    user: Option<String>,
    login: Option<Login>,
    rest: u64,
    ascii: bool,
    data: DataSetup,
    epsv_all: bool,
    prot_private: bool,
}

/// Reply text with every control character shown as `?`: replies repeat what the client sent
/// (a verb, a file name, a user name), and a CR, LF or escape sequence in it must not start a
/// reply line of its own or reach a client's terminal.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: Shutdown,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    // Clients send the Telnet DM before ABOR as TCP urgent data; inline (RFC 6093, as vsftpd
    // does) it is just a byte the parser drops.
    if let Err(e) = socket2::SockRef::from(&stream).set_out_of_band_inline(true) {
        tracing::debug!(%peer, error = %e, "FTP: cannot set SO_OOBINLINE");
    }
    serve_control(shared, Control::Plain(stream), peer, local, shutdown).await;
}

/// Serve one session over an in-memory stream standing for a control connection from `peer`
/// to `local`; data connections can be set up but not made.
pub(super) async fn run_in_memory(
    shared: Arc<Shared>,
    stream: tokio::io::DuplexStream,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Shutdown,
) {
    serve_control(shared, Control::Memory(stream), peer, local, shutdown).await;
}

async fn serve_control(
    shared: Arc<Shared>,
    ctl: Control,
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Shutdown,
) {
    let mut s = Session {
        shared,
        peer,
        local,
        shutdown,
        ctl,
        inbuf: Vec::new(),
        pending: VecDeque::new(),
        user: None,
        login: None,
        rest: 0,
        ascii: false,
        data: DataSetup::None,
        epsv_all: false,
        prot_private: false,
    };
    match s.serve().await {
        Ok(()) => tracing::debug!(%peer, "FTP session ended"),
        Err(e) => tracing::debug!(%peer, error = %e, "FTP session ended with an error"),
    }
    let _ = s.ctl.shutdown().await;
}

impl Session {
    fn idle(&self) -> std::time::Duration {
        self.shared.config.idle_timeout
    }

    async fn reply(&mut self, code: u16, text: &str) -> io::Result<()> {
        self.send(format!("{code} {}\r\n", printable(text))).await
    }

    async fn send(&mut self, raw: String) -> io::Result<()> {
        tracing::trace!(peer = %self.peer, reply = raw.trim_end(), "FTP reply");
        self.ctl.write_all(raw.as_bytes()).await?;
        self.ctl.flush().await
    }

    async fn reply_multi(
        &mut self,
        code: u16,
        first: &str,
        lines: &[String],
        last: &str,
    ) -> io::Result<()> {
        let mut out = format!("{code}-{}\r\n", printable(first));
        for l in lines {
            out.push(' ');
            out.push_str(&printable(l));
            out.push_str("\r\n");
        }
        out.push_str(&format!("{code} {}\r\n", printable(last)));
        self.send(out).await
    }

    /// Next line from the control stream, `None` at end of stream. Cancel-safe: the only await
    /// is a single read whose bytes land in `inbuf` in the same poll.
    async fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.inbuf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.inbuf.drain(..=pos).collect();
                return Ok(Some(line));
            }
            if self.inbuf.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "command line too long",
                ));
            }
            let mut chunk = [0u8; 1024];
            let n = self.ctl.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.inbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn serve(&mut self) -> io::Result<()> {
        if self.shared.config.tls.is_some() {
            self.reply(
                220,
                "fleetup FTP server ready (read-only image store; AUTH TLS available).",
            )
            .await?;
        } else {
            self.reply(220, "fleetup FTP server ready (read-only image store).")
                .await?;
        }
        let token = self.shutdown.token.clone();
        let login_timeout = self.shared.config.login_timeout;
        let login_deadline = tokio::time::Instant::now() + login_timeout;
        loop {
            let line = match self.pending.pop_front() {
                Some(l) => l,
                None => {
                    let idle = self.idle();
                    // Before login the wait ends at the login deadline, whatever the client sends.
                    let deadline = match self.login {
                        None => login_deadline.min(tokio::time::Instant::now() + idle),
                        Some(_) => tokio::time::Instant::now() + idle,
                    };
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => {
                            self.reply(421, "Service shutting down; closing control connection.").await?;
                            return Ok(());
                        }
                        r = tokio::time::timeout_at(deadline, self.read_line()) => match r {
                            Err(_) if self.login.is_none() && deadline >= login_deadline => {
                                tracing::info!(peer = %self.peer, "FTP: no login within the login timeout");
                                self.reply(421, &format!("Not logged in within {} s; closing control connection.", login_timeout.as_secs())).await?;
                                return Ok(());
                            }
                            Err(_) => {
                                self.reply(421, &format!("No command for {} s; closing control connection.", idle.as_secs())).await?;
                                return Ok(());
                            }
                            Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                                self.reply(500, "Command line too long; closing control connection.").await?;
                                return Ok(());
                            }
                            Ok(r) => match r? {
                                Some(l) => l,
                                None => return Ok(()),
                            },
                        }
                    }
                }
            };
            if let Flow::Close = self.handle(&line).await? {
                return Ok(());
            }
        }
    }

    async fn handle(&mut self, line: &[u8]) -> io::Result<Flow> {
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e @ ParseError::Empty) => {
                self.reply(500, &format!("Syntax error: {e}.")).await?;
                return Ok(Flow::Continue);
            }
            Err(e) => {
                self.reply(501, &format!("Syntax error: {e}.")).await?;
                return Ok(Flow::Continue);
            }
        };
        if !matches!(cmd, Command::Pass(_)) {
            tracing::trace!(peer = %self.peer, ?cmd, "FTP command");
        }
        let before_login = matches!(
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
        );
        if self.login.is_none() && !before_login {
            self.reply(530, "Log in with USER and PASS first.").await?;
            return Ok(Flow::Continue);
        }
        match cmd {
            Command::User(name) => {
                if self.login.is_some() {
                    self.reply(503, "Already logged in.").await?;
                } else {
                    self.reply(331, &format!("Password required for {name}."))
                        .await?;
                    self.user = Some(name);
                }
            }
            Command::Pass(pw) => return self.pass(pw).await,
            Command::Acct => self.reply(202, "ACCT not needed.").await?,
            Command::Auth(mech) => return self.auth(mech).await,
            Command::Pbsz(_) => {
                if self.is_tls() {
                    self.reply(200, "PBSZ=0").await?;
                } else {
                    self.reply(503, "PBSZ needs AUTH TLS first.").await?;
                }
            }
            Command::Prot(level) => {
                if !self.is_tls() {
                    self.reply(503, "PROT needs AUTH TLS first.").await?;
                } else if level == "P" {
                    self.prot_private = true;
                    self.reply(200, "Data connections will be encrypted.")
                        .await?;
                } else if level == "C" {
                    self.prot_private = false;
                    self.reply(200, "Data connections will be in the clear.")
                        .await?;
                } else {
                    self.reply(536, &format!("PROT {level} not supported; use C or P."))
                        .await?;
                }
            }
            Command::Ccc => {
                self.reply(534, "CCC refused: the control connection stays encrypted.")
                    .await?
            }
            Command::Quit => {
                self.reply(221, "Goodbye.").await?;
                return Ok(Flow::Close);
            }
            Command::Noop => self.reply(200, "NOOP ok.").await?,
            Command::Syst => self.reply(215, "UNIX Type: L8").await?,
            Command::Feat => {
                let mut f: Vec<String> = Vec::new();
                if self.shared.config.tls.is_some() {
                    f.extend(["AUTH TLS".into(), "PBSZ".into(), "PROT".into()]);
                }
                if self.shared.config.active {
                    f.push("EPRT".into());
                }
                f.extend([
                    "EPSV".into(),
                    "MDTM".into(),
                    "MLST type*;size*;modify*;perm*;".into(),
                    "PASV".into(),
                    "REST STREAM".into(),
                    "SIZE".into(),
                    "TVFS".into(),
                    "UTF8".into(),
                ]);
                self.reply_multi(211, "Features:", &f, "End").await?;
            }
            Command::Opts(opt) => {
                let upper = opt.to_ascii_uppercase();
                if upper.starts_with("UTF8") {
                    self.reply(200, "UTF8 is always on.").await?;
                } else if upper.starts_with("MLST") {
                    self.reply(200, "MLST OPTS type;size;modify;perm;").await?;
                } else {
                    self.reply(501, &format!("Option {opt:?} not supported."))
                        .await?;
                }
            }
            Command::Help => {
                self.reply(
                    214,
                    "Read-only image server. USER PASS AUTH PBSZ PROT PASV EPSV PORT EPRT TYPE \
                     REST RETR SIZE MDTM LIST NLST MLSD MLST PWD CWD FEAT STAT ABOR NOOP QUIT.",
                )
                .await?
            }
            Command::Pwd => self.reply(257, "\"/\" is the current directory.").await?,
            Command::Cwd(dir) => match listing::target(&dir) {
                Target::Root => self.reply(250, "Directory is /.").await?,
                Target::File(_) => {
                    tracing::debug!(peer = %self.peer, dir, "FTP: CWD refused");
                    self.reply(
                        550,
                        &format!("{dir}: no such directory; the image store has only /."),
                    )
                    .await?
                }
            },
            Command::Cdup => {
                self.reply(550, "Already at / , the top of the image store.")
                    .await?
            }
            Command::Type(t) => match t.as_str() {
                "I" | "L 8" | "L8" => {
                    self.ascii = false;
                    self.reply(200, "Switching to Binary mode.").await?
                }
                "A" | "A N" => {
                    self.ascii = true;
                    self.reply(
                        200,
                        "Switching to ASCII mode (images are still sent unchanged).",
                    )
                    .await?
                }
                _ => {
                    self.reply(504, &format!("TYPE {t} not supported; use I or A."))
                        .await?
                }
            },
            Command::Mode(m) => match m.as_str() {
                "S" => self.reply(200, "Mode set to S.").await?,
                _ => {
                    self.reply(504, &format!("MODE {m} not supported; use S."))
                        .await?
                }
            },
            Command::Stru(s) => match s.as_str() {
                "F" => self.reply(200, "Structure set to F.").await?,
                _ => {
                    self.reply(504, &format!("STRU {s} not supported; use F."))
                        .await?
                }
            },
            Command::Pasv => self.pasv().await?,
            Command::Epsv(arg) => self.epsv(arg).await?,
            Command::Port(arg) => {
                let target = command::parse_port(&arg);
                self.active(target.map_err(|e| e.to_string()), "PORT")
                    .await?
            }
            Command::Eprt(arg) => {
                let target = command::parse_eprt(&arg);
                self.active(target.map_err(|e| e.to_string()), "EPRT")
                    .await?
            }
            Command::Rest(arg) => match arg.trim().parse::<u64>() {
                Ok(n) => {
                    self.rest = n;
                    self.reply(350, &format!("Restarting at {n}; send RETR to resume."))
                        .await?
                }
                Err(_) => self.reply(501, "REST needs a byte offset.").await?,
            },
            Command::Retr(name) => return self.retr(name).await,
            Command::Size(name) => match listing::entry(&self.shared.root, &name) {
                Ok(e) => self.reply(213, &e.size.to_string()).await?,
                Err(e) => self.refuse_path(&name, e).await?,
            },
            Command::Mdtm(name) => match listing::entry(&self.shared.root, &name) {
                Ok(e) => self.reply(213, &listing::mdtm(e.modified)).await?,
                Err(e) => self.refuse_path(&name, e).await?,
            },
            Command::List(arg) => return self.listing(ListKind::List, arg).await,
            Command::Nlst(arg) => return self.listing(ListKind::Nlst, arg).await,
            Command::Mlsd(arg) => return self.listing(ListKind::Mlsd, arg).await,
            Command::Mlst(arg) => match listing::target(arg.as_deref().unwrap_or("")) {
                Target::Root => {
                    self.reply_multi(250, "Listing /", &["type=cdir;perm=el; /".into()], "End")
                        .await?
                }
                Target::File(name) => match listing::entry(&self.shared.root, &name) {
                    Ok(e) => {
                        let facts = listing::mlsx_facts(&e);
                        self.reply_multi(250, &format!("Listing {name}"), &[facts], "End")
                            .await?
                    }
                    Err(e) => self.refuse_path(&name, e).await?,
                },
            },
            Command::Stat(None) => {
                let who = match &self.login {
                    Some(Login::Service(u) | Login::Temporary(u)) => u.clone(),
                    Some(Login::Anonymous) => "anonymous".into(),
                    None => "-".into(),
                };
                let lines = vec![
                    format!("Connected from {}", self.peer),
                    format!("Logged in as {who}"),
                    format!("TYPE: {}", if self.ascii { "ASCII" } else { "BINARY" }),
                    format!(
                        "Control connection is {}",
                        if self.is_tls() { "TLS" } else { "plain" }
                    ),
                ];
                self.reply_multi(211, "fleetup FTP server status:", &lines, "End of status")
                    .await?
            }
            Command::Stat(Some(_)) => {
                self.reply(502, "STAT with a path is not supported; use LIST.")
                    .await?
            }
            Command::Abor => {
                self.data = DataSetup::None;
                self.reply(226, "No transfer to abort.").await?
            }
            Command::Allo => self.reply(202, "ALLO not needed.").await?,
            Command::Write(verb) => {
                tracing::info!(peer = %self.peer, verb, "FTP: write command refused");
                self.data = DataSetup::None;
                self.reply(
                    550,
                    &format!(
                        "{verb} refused: this FTP server is read-only; add images with \
                         `fleetup image add` or the API."
                    ),
                )
                .await?
            }
            Command::Site => {
                self.reply(
                    502,
                    "SITE commands are not available on this read-only server.",
                )
                .await?
            }
            Command::Unknown(verb) => self.reply(502, &format!("{verb} not implemented.")).await?,
        }
        Ok(Flow::Continue)
    }

    fn is_tls(&self) -> bool {
        matches!(self.ctl, Control::Tls(_))
    }

    async fn refuse_path(&mut self, name: &str, e: ResolveError) -> io::Result<()> {
        match e {
            ResolveError::Forbidden(why) => {
                tracing::info!(peer = %self.peer, name, why, "FTP: path refused");
                self.reply(550, &format!("{name}: refused ({why}).")).await
            }
            ResolveError::NotFound => self.reply(550, &format!("{name}: no such file.")).await,
        }
    }

    /// The account this session logged in with; what ties a download to a device job.
    fn logged_in_as(&self) -> Option<&str> {
        match &self.login {
            Some(Login::Service(u) | Login::Temporary(u)) => Some(u.as_str()),
            Some(Login::Anonymous) | None => None,
        }
    }

    async fn pass(&mut self, pw: String) -> io::Result<Flow> {
        if self.login.is_some() {
            self.reply(503, "Already logged in.").await?;
            return Ok(Flow::Continue);
        }
        let Some(user) = self.user.take() else {
            self.reply(503, "Send USER first.").await?;
            return Ok(Flow::Continue);
        };
        let ip = self.peer.ip().to_canonical();
        if let Some(left) = self.shared.locked_for(ip) {
            self.reply(421, &locked_out(ip, left)).await?;
            return Ok(Flow::Close);
        }
        match self.shared.config.credentials.verify(&user, &pw) {
            Some(login) => {
                self.shared.lockout().record_success(ip);
                tracing::info!(peer = %self.peer, user, "FTP login");
                self.login = Some(login);
                self.reply(230, "Logged in; the image store is read-only.")
                    .await?;
            }
            None => {
                let locked = self.shared.lockout().record_failure(ip, Instant::now());
                tracing::warn!(peer = %self.peer, user, locked, "FTP login failed");
                if locked {
                    let secs = self.shared.config.lockout_duration.as_secs();
                    let msg = format!(
                        "Login incorrect; too many failures: {ip} is locked out for {secs} s."
                    );
                    self.reply(530, &msg).await?;
                    return Ok(Flow::Close);
                }
                self.reply(530, "Login incorrect.").await?;
            }
        }
        Ok(Flow::Continue)
    }

    async fn auth(&mut self, mech: String) -> io::Result<Flow> {
        if !matches!(mech.as_str(), "TLS" | "TLS-C" | "SSL") {
            self.reply(504, &format!("AUTH {mech} not supported; use AUTH TLS."))
                .await?;
            return Ok(Flow::Continue);
        }
        let Some(tls) = self.shared.config.tls.clone() else {
            self.reply(
                502,
                "FTPS is not configured on this server (--ftp-tls-cert, --ftp-tls-key).",
            )
            .await?;
            return Ok(Flow::Continue);
        };
        if self.is_tls() {
            self.reply(503, "TLS is already active.").await?;
            return Ok(Flow::Continue);
        }
        if !self.inbuf.is_empty() {
            // Plaintext sent after AUTH could be injected by anyone on the path.
            self.reply(503, "Data after AUTH TLS; closing.").await?;
            return Ok(Flow::Close);
        }
        self.reply(234, "Proceed with TLS negotiation.").await?;
        let Control::Plain(tcp) = std::mem::replace(&mut self.ctl, Control::Upgrading) else {
            return Ok(Flow::Close);
        };
        let acceptor = TlsAcceptor::from(tls.config);
        match tokio::time::timeout(self.idle(), acceptor.accept(tcp)).await {
            Ok(Ok(s)) => {
                self.ctl = Control::Tls(Box::new(s));
                // RFC 4217: a new security context starts a new login.
                self.user = None;
                self.login = None;
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer, error = %e, "FTPS handshake failed");
                Ok(Flow::Close)
            }
            Err(_) => Ok(Flow::Close),
        }
    }

    async fn pasv(&mut self) -> io::Result<()> {
        if self.epsv_all {
            return self.reply(503, "EPSV ALL in effect; use EPSV.").await;
        }
        let announce = self
            .shared
            .config
            .public_host
            .unwrap_or(local_ip_for(self.local));
        let IpAddr::V4(v4) = announce else {
            return self.reply(522, "PASV needs IPv4; use EPSV.").await;
        };
        let Some(port) = self.open_passive().await? else {
            return Ok(());
        };
        let [a, b, c, d] = v4.octets();
        let msg = format!(
            "Entering Passive Mode ({a},{b},{c},{d},{},{}).",
            port >> 8,
            port & 0xff
        );
        self.reply(227, &msg).await
    }

    async fn epsv(&mut self, arg: Option<String>) -> io::Result<()> {
        let family = if local_ip_for(self.local).is_ipv4() {
            "1"
        } else {
            "2"
        };
        match arg.as_deref().map(str::trim) {
            None => {}
            Some(a) if a.eq_ignore_ascii_case("ALL") => {
                self.epsv_all = true;
                return self.reply(200, "EPSV ALL ok.").await;
            }
            Some(a) if a == family => {}
            Some("1" | "2") => {
                return self
                    .reply(
                        522,
                        &format!("Network protocol not supported, use ({family})"),
                    )
                    .await;
            }
            Some(a) => {
                return self
                    .reply(501, &format!("EPSV argument {a:?} not understood."))
                    .await;
            }
        }
        let Some(port) = self.open_passive().await? else {
            return Ok(());
        };
        self.reply(229, &format!("Entering Extended Passive Mode (|||{port}|)"))
            .await
    }

    /// Bind a passive listener; on failure the reply is already sent and `None` returned.
    async fn open_passive(&mut self) -> io::Result<Option<u16>> {
        self.data = DataSetup::None;
        let listener = match self.shared.passive.bind(local_ip_for(self.local)) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "FTP passive port");
                self.reply(425, &format!("{e}.")).await?;
                return Ok(None);
            }
        };
        let port = listener.local_addr()?.port();
        self.data = DataSetup::Passive(listener);
        Ok(Some(port))
    }

    async fn active(&mut self, target: Result<SocketAddr, String>, verb: &str) -> io::Result<()> {
        if !self.shared.config.active {
            return self
                .reply(
                    502,
                    "Active mode is disabled on this server (--ftp-active off); use PASV or EPSV.",
                )
                .await;
        }
        if self.epsv_all {
            return self.reply(503, "EPSV ALL in effect; use EPSV.").await;
        }
        let target = match target {
            Ok(t) => SocketAddr::new(t.ip().to_canonical(), t.port()),
            Err(e) => return self.reply(501, &format!("{verb}: {e}.")).await,
        };
        let client = self.peer.ip().to_canonical();
        if !data::same_host(target.ip(), client) {
            tracing::warn!(peer = %self.peer, %target, "FTP: {verb} to a foreign address refused (FTP bounce)");
            self.data = DataSetup::None;
            let msg = format!(
                "{verb} refused: data connections go only to {client}, the address of this control connection."
            );
            return self.reply(500, &msg).await;
        }
        if target.port() < 1024 {
            self.data = DataSetup::None;
            return self
                .reply(
                    500,
                    &format!(
                        "{verb} refused: port {} is a privileged port.",
                        target.port()
                    ),
                )
                .await;
        }
        self.data = DataSetup::Active(target);
        self.reply(200, &format!("{verb} command successful."))
            .await
    }

    /// Make the data connection set up by PASV/EPSV/PORT/EPRT; on failure, the reply line.
    async fn open_data(&mut self) -> Result<TcpStream, String> {
        let idle = self.idle();
        let client = self.peer.ip();
        let local = local_ip_for(self.local);
        let token = self.shutdown.token.clone();
        let connect = async {
            match std::mem::replace(&mut self.data, DataSetup::None) {
                DataSetup::None => Err("425 Use PASV, EPSV, PORT or EPRT first.".to_string()),
                DataSetup::Passive(l) => data::accept_from(&l, client, idle)
                    .await
                    .map_err(|e| format!("425 No data connection: {e}.")),
                DataSetup::Active(target) => data::connect_active(local, target, idle)
                    .await
                    .map_err(|e| format!("425 Cannot open data connection to {target}: {e}.")),
            }
        };
        tokio::select! {
            r = connect => r,
            _ = token.cancelled() => Err("421 Service shutting down.".to_string()),
        }
    }

    /// Wrap the data connection in TLS after PROT P.
    async fn protect(&self, tcp: TcpStream) -> Result<DataConn, String> {
        let tls = match (&self.shared.config.tls, self.prot_private) {
            (Some(tls), true) => tls.config.clone(),
            _ => return Ok(DataConn::Plain(tcp)),
        };
        match tokio::time::timeout(self.idle(), TlsAcceptor::from(tls).accept(tcp)).await {
            Ok(Ok(s)) => Ok(DataConn::Tls(Box::new(s))),
            Ok(Err(e)) => Err(format!(
                "425 TLS handshake on the data connection failed: {e}."
            )),
            Err(_) => Err("425 TLS handshake on the data connection timed out.".into()),
        }
    }

    /// Send a raw reply line like "425 ..." built by a helper.
    async fn send_line(&mut self, line: String) -> io::Result<()> {
        self.send(format!("{line}\r\n")).await
    }

    /// Open the data connection and say 150; `None` if that failed (reply already sent).
    async fn start_data(&mut self, opening: &str) -> io::Result<Option<DataConn>> {
        let tcp = match self.open_data().await {
            Ok(t) => t,
            Err(line) => {
                self.send_line(line).await?;
                return Ok(None);
            }
        };
        self.reply(150, opening).await?;
        match self.protect(tcp).await {
            Ok(c) => Ok(Some(c)),
            Err(line) => {
                self.send_line(line).await?;
                Ok(None)
            }
        }
    }

    /// Run a transfer while still listening on the control connection for ABOR. Other commands
    /// wait in `pending` until the transfer is over; once [`MAX_PENDING`] wait, the control
    /// connection is no longer read until the transfer ends.
    async fn during_transfer<T>(
        &mut self,
        transfer: impl Future<Output = T>,
        cancel: &CancellationToken,
    ) -> (T, Interrupt) {
        tokio::pin!(transfer);
        let token = self.shutdown.token.clone();
        let mut interrupt = Interrupt::None;
        loop {
            tokio::select! {
                out = &mut transfer => return (out, interrupt),
                _ = token.cancelled(), if interrupt == Interrupt::None => {
                    interrupt = Interrupt::Shutdown;
                    cancel.cancel();
                }
                // A full queue stops reading: the rest waits in the socket buffers.
                line = self.read_line(), if interrupt == Interrupt::None && self.pending.len() < MAX_PENDING => match line {
                    Ok(Some(l)) => match command::parse(&l) {
                        Ok(Command::Abor) => {
                            interrupt = Interrupt::Abor;
                            cancel.cancel();
                        }
                        // QUIT included: RFC 959 lets a transfer in progress finish first.
                        _ => self.pending.push_back(l),
                    },
                    Ok(None) | Err(_) => {
                        interrupt = Interrupt::ControlClosed;
                        cancel.cancel();
                    }
                },
            }
        }
    }

    /// The replies after an interrupted transfer; whether the session goes on.
    async fn after_interrupt(&mut self, interrupt: Interrupt) -> io::Result<Flow> {
        match interrupt {
            Interrupt::None => Ok(Flow::Continue),
            Interrupt::Abor => {
                self.reply(426, "Transfer aborted.").await?;
                self.reply(226, "ABOR successful.").await?;
                Ok(Flow::Continue)
            }
            Interrupt::Shutdown => {
                self.reply(426, "Transfer aborted.").await?;
                self.reply(421, "Service shutting down; closing control connection.")
                    .await?;
                Ok(Flow::Close)
            }
            Interrupt::ControlClosed => Ok(Flow::Close),
        }
    }

    async fn retr(&mut self, name: String) -> io::Result<Flow> {
        let offset = std::mem::take(&mut self.rest);
        let entry = match listing::entry(&self.shared.root, &name) {
            Ok(e) => e,
            Err(e) => {
                self.data = DataSetup::None;
                self.refuse_path(&name, e).await?;
                return Ok(Flow::Continue);
            }
        };
        let opened = std::fs::File::open(&entry.path).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((f, len))
        });
        let (file, len) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.data = DataSetup::None;
                tracing::warn!(path = %entry.path.display(), error = %e, "FTP: cannot open image");
                self.reply(550, &format!("{name}: cannot be read on the server: {e}."))
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        if offset > len {
            self.data = DataSetup::None;
            let msg = format!("REST offset {offset} is beyond the end of {name} ({len} bytes).");
            self.reply(554, &msg).await?;
            return Ok(Flow::Continue);
        }
        let remaining = len - offset;
        let mode = if self.ascii { "ASCII" } else { "BINARY" };
        // The whole file's size, whatever the REST offset, as vsftpd does: clients read it as
        // the file size (lftp's ftp:catch-size), and lftp pget stalled on its last segment
        // when given the remaining length instead.
        let opening = format!(
            "Opening {mode} mode data connection for {} ({len} bytes).",
            entry.name
        );
        let Some(conn) = self.start_data(&opening).await? else {
            return Ok(Flow::Continue);
        };
        let handle = self.shared.transfers.start_as(
            Protocol::Ftp,
            self.peer,
            self.logged_in_as(),
            &entry.name,
            "download",
            Some(remaining),
        );
        let cancel = CancellationToken::new();
        let send = conn.send_file(file, offset, remaining, &handle, &cancel, self.idle());
        let (result, interrupt) = self.during_transfer(send, &cancel).await;
        match result {
            Ok(n) => {
                tracing::info!(peer = %self.peer, file = entry.name, offset, bytes = n, "FTP download complete");
                handle.complete();
                self.reply(226, &format!("Transfer complete ({n} bytes)."))
                    .await?;
                match interrupt {
                    Interrupt::None => Ok(Flow::Continue),
                    Interrupt::Abor => {
                        self.reply(226, "ABOR: the transfer had already completed.")
                            .await?;
                        Ok(Flow::Continue)
                    }
                    Interrupt::Shutdown => {
                        self.reply(421, "Service shutting down; closing control connection.")
                            .await?;
                        Ok(Flow::Close)
                    }
                    Interrupt::ControlClosed => Ok(Flow::Close),
                }
            }
            Err(e) => {
                let why = match interrupt {
                    Interrupt::Abor => "aborted by the client (ABOR)".to_string(),
                    Interrupt::Shutdown => "server shutting down".to_string(),
                    Interrupt::ControlClosed => "client closed the control connection".to_string(),
                    Interrupt::None => e.to_string(),
                };
                tracing::info!(peer = %self.peer, file = entry.name, offset, reason = why, "FTP download ended early");
                handle.fail(why.clone());
                if interrupt == Interrupt::None {
                    let msg = match e {
                        SendError::Stalled(_) => format!("Transfer aborted: {why}."),
                        _ => format!("Data connection closed: {why}."),
                    };
                    self.reply(426, &msg).await?;
                    return Ok(Flow::Continue);
                }
                self.after_interrupt(interrupt).await
            }
        }
    }

    async fn listing(&mut self, kind: ListKind, arg: Option<String>) -> io::Result<Flow> {
        let path = match kind {
            ListKind::List => listing::strip_list_options(arg.as_deref()).to_string(),
            _ => arg.unwrap_or_default(),
        };
        let entries = match listing::target(&path) {
            Target::Root => match listing::entries(&self.shared.root) {
                Ok(e) => e,
                Err(e) => {
                    self.data = DataSetup::None;
                    self.reply(550, &format!("Cannot read the image store: {e}."))
                        .await?;
                    return Ok(Flow::Continue);
                }
            },
            Target::File(_) if kind == ListKind::Mlsd => {
                self.data = DataSetup::None;
                self.reply(501, &format!("{path}: not a directory; MLSD lists /."))
                    .await?;
                return Ok(Flow::Continue);
            }
            Target::File(name) => match listing::entry(&self.shared.root, &name) {
                Ok(e) => vec![e],
                Err(e) => {
                    self.data = DataSetup::None;
                    self.refuse_path(&name, e).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        let now = jiff::Timestamp::now();
        let body: String = entries
            .iter()
            .map(|e| match kind {
                ListKind::List => listing::list_line(e, now),
                ListKind::Nlst => format!("{}\r\n", e.name),
                ListKind::Mlsd => format!("{}\r\n", listing::mlsx_facts(e)),
            })
            .collect();
        let Some(conn) = self.start_data("Here comes the directory listing.").await? else {
            return Ok(Flow::Continue);
        };
        let cancel = CancellationToken::new();
        let idle = self.idle();
        let send = async {
            tokio::select! {
                r = conn.send_bytes(body.as_bytes(), idle) => r,
                _ = cancel.cancelled() => Err(SendError::Aborted),
            }
        };
        let (result, interrupt) = self.during_transfer(send, &cancel).await;
        match (result, interrupt) {
            (Ok(()), Interrupt::None) => {
                self.reply(226, "Directory send OK.").await?;
                Ok(Flow::Continue)
            }
            (Err(e), Interrupt::None) => {
                self.reply(426, &format!("Data connection closed: {e}."))
                    .await?;
                Ok(Flow::Continue)
            }
            (_, i) => self.after_interrupt(i).await,
        }
    }
}
