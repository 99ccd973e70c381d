//! The SSH face of a lab device: a russh server on the device's own loopback address, and the
//! supervisor that closes it on reload and opens it again once the device has booted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use russh::keys::{Algorithm, PrivateKey};
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, MethodSet};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cli::{Cli, Flow, Output};
use super::device::{Device, Power};
use super::{Fault, LabError, LabShared, WhileReloading};
use crate::shutdown::Shutdown;

/// The device's host key, created once and kept in its state directory so that clients'
/// `known_hosts` stay valid across lab restarts.
pub(super) fn host_key(device: &str, dir: &Path) -> Result<PrivateKey, LabError> {
    let path = dir.join("ssh_host_ed25519_key");
    let io = |source| LabError::HostKey {
        device: device.to_string(),
        path: path.clone(),
        message: format!("{source}"),
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io)?;
        return PrivateKey::from_openssh(text).map_err(|e| LabError::HostKey {
            device: device.to_string(),
            path: path.clone(),
            message: format!("{e}; delete the file to get a new key"),
        });
    }
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| {
        LabError::HostKey {
            device: device.to_string(),
            path: path.clone(),
            message: e.to_string(),
        }
    })?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| LabError::HostKey {
            device: device.to_string(),
            path: path.clone(),
            message: e.to_string(),
        })?;
    std::fs::write(&path, text.as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(key)
}

pub(super) fn server_config(key: PrivateKey, methods: MethodSet) -> russh::server::Config {
    russh::server::Config {
        // Matches the Cisco banner so scripts that log it see a familiar name.
        server_id: russh::SshId::Standard("SSH-2.0-Cisco-1.25".into()),
        methods,
        auth_rejection_time: std::time::Duration::from_millis(300),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys: vec![key],
        inactivity_timeout: Some(std::time::Duration::from_secs(3600)),
        nodelay: true,
        ..Default::default()
    }
}

/// Bind the device's SSH listener; a clear error says which flag to change.
pub(super) async fn bind(device: &str, addr: SocketAddr) -> Result<TcpListener, LabError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| LabError::Bind {
            device: device.to_string(),
            addr,
            source,
        })
}

/// Run the device until shutdown: serve SSH while up, go dark for the boot time on reload.
pub(super) async fn supervise(
    dev: Arc<Device>,
    lab: Arc<LabShared>,
    config: Arc<russh::server::Config>,
    first: TcpListener,
    shutdown: Shutdown,
) {
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match rebind(&dev, &shutdown).await {
                Some(l) => l,
                None => return,
            },
        };
        let epoch = shutdown.token.child_token();
        dev.power_up();
        loop {
            tokio::select! {
                _ = shutdown.token.cancelled() => return,
                _ = dev.reload_requested.notified() => break,
                accepted = l.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let conn = Conn {
                        dev: dev.clone(),
                        lab: lab.clone(),
                        peer,
                        epoch: epoch.clone(),
                        gone: CancellationToken::new(),
                        user: String::new(),
                        inputs: HashMap::new(),
                        channels: HashMap::new(),
                        tasks: shutdown.tasks.clone(),
                    };
                    let config = config.clone();
                    let epoch = epoch.clone();
                    shutdown.tasks.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let Ok(session) = russh::server::run_stream(config, stream, conn).await else {
                            return;
                        };
                        let handle = session.handle();
                        tokio::select! {
                            _ = epoch.cancelled() => {
                                let _ = handle
                                    .disconnect(Disconnect::ByApplication, String::new(), String::new())
                                    .await;
                            }
                            _ = session => {}
                        }
                    });
                }
            }
        }
        // The port goes quiet first, so nobody gets in while the sessions are dropped.
        let silenced = match lab.while_reloading {
            WhileReloading::Refuse => {
                drop(l);
                None
            }
            WhileReloading::Silent => match Silenced::start(l) {
                Ok(s) => tokio::select! {
                    s = s.fill() => Some(s),
                    _ = shutdown.token.cancelled() => return,
                },
                Err(e) => {
                    tracing::warn!(device = %dev.name, error = %e, "cannot keep the SSH port silent during the reload; it refuses connections instead");
                    None
                }
            },
        };
        dev.power.send_replace(Power::Reloading);
        epoch.cancel();
        tracing::info!(device = %dev.name, "reloading");
        loop {
            let changed = dev.faults_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !dev.has_fault(Fault::ReloadNeverReturns) {
                break;
            }
            tokio::select! {
                _ = changed => {}
                _ = shutdown.token.cancelled() => return,
            }
        }
        // No device restarts twice within one second: `show version` prints the restart time
        // to the second, and fleetup may tell a restart by it.
        let boot = lab
            .boot_time
            .max(until_next_second_after(dev.state().booted_at));
        tokio::select! {
            _ = tokio::time::sleep(boot) => {}
            _ = shutdown.token.cancelled() => return,
        }
        dev.boot();
        listener = silenced.and_then(|s| match s.reopen() {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(device = %dev.name, error = %e, "cannot reopen the silent SSH port; binding it again");
                None
            }
        });
        tracing::info!(device = %dev.name, version = %dev.state().version, "booted");
    }
}

/// A device's SSH port while it reloads, as a real device's looks: a connection attempt gets
/// no answer at all and times out. The listening socket stays, with its accept queue kept
/// full by the lab's own connections, so the kernel drops every other SYN; nothing is
/// accepted until [`Silenced::reopen`]. (Closing the port instead would answer with a reset:
/// a refusal that a client notices at once, which no booting device gives.)
struct Silenced {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    fillers: Vec<tokio::net::TcpStream>,
}

impl Silenced {
    fn start(l: TcpListener) -> std::io::Result<Silenced> {
        let addr = l.local_addr()?;
        // Non-blocking, and no longer watched by the runtime.
        let listener = l.into_std()?;
        // Connections the device had not taken yet die with the reload.
        drain(&listener);
        socket2::SockRef::from(&listener).listen(0)?;
        Ok(Silenced {
            listener,
            addr,
            fillers: Vec::new(),
        })
    }

    /// Fill the accept queue: connect until an attempt gets no answer (Linux queues one
    /// connection at backlog 0). The first must get in, so it may take its time on a busy
    /// machine; after that, a short wait tells a full queue.
    async fn fill(mut self) -> Silenced {
        for wait_ms in [2000, 50, 50, 50] {
            let attempt = tokio::net::TcpStream::connect(self.addr);
            match tokio::time::timeout(std::time::Duration::from_millis(wait_ms), attempt).await {
                Ok(Ok(s)) => self.fillers.push(s),
                _ => break,
            }
        }
        self
    }

    /// Answer again: drop the queued connections (the lab's own, and any that slipped in
    /// before the queue was full), restore the backlog and accept as before.
    fn reopen(self) -> std::io::Result<TcpListener> {
        drain(&self.listener);
        socket2::SockRef::from(&self.listener).listen(1024)?;
        drop(self.fillers);
        TcpListener::from_std(self.listener)
    }
}

/// How long until the wall clock is past the given Unix second (zero when it already is).
fn until_next_second_after(unix_second: i64) -> std::time::Duration {
    let now = jiff::Timestamp::now();
    let next = jiff::Timestamp::from_second(unix_second.saturating_add(1)).unwrap_or(now);
    now.duration_until(next)
        .max(jiff::SignedDuration::ZERO)
        .unsigned_abs()
}

/// Accept and close every connection waiting in a non-blocking listener's queue.
fn drain(l: &std::net::TcpListener) {
    while l.accept().is_ok() {}
}

/// Bind the same address again after a reload; another process may hold it for a moment.
async fn rebind(dev: &Device, shutdown: &Shutdown) -> Option<TcpListener> {
    let addr = dev.ssh_addr();
    let mut delay = std::time::Duration::from_millis(50);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => {
                tracing::warn!(device = %dev.name, %addr, error = %e, "cannot listen again after reload; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.token.cancelled() => return None,
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
        }
    }
}

/// One SSH connection.
struct Conn {
    dev: Arc<Device>,
    lab: Arc<LabShared>,
    peer: SocketAddr,
    epoch: CancellationToken,
    /// Cancelled when the connection ends: whatever its channels were running (a copy) ends
    /// with it, as on IOS.
    gone: CancellationToken,
    user: String,
    inputs: HashMap<ChannelId, mpsc::UnboundedSender<Vec<u8>>>,
    /// Channels opened and not yet given a request: an `scp -t` takes its own (its data is
    /// read with the channel's flow control); a shell or CLI exec drops it.
    channels: HashMap<ChannelId, Channel<Msg>>,
    tasks: tokio_util::task::TaskTracker,
}

struct ChannelOut {
    handle: Handle,
    channel: ChannelId,
}

impl Output for ChannelOut {
    async fn write(&mut self, data: Vec<u8>) -> Result<(), ()> {
        self.handle.data(self.channel, data).await.map_err(|_| ())
    }
}

impl Conn {
    fn start(&mut self, channel: ChannelId, session: &mut Session, exec: Option<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inputs.insert(channel, tx);
        let handle = session.handle();
        let out = ChannelOut {
            handle: session.handle(),
            channel,
        };
        let cli = Cli::new(
            self.dev.clone(),
            self.lab.clone(),
            out,
            rx,
            self.user.clone(),
            self.peer.ip(),
        );
        let epoch = self.epoch.clone();
        let gone = self.gone.clone();
        self.tasks.spawn(async move {
            let flow = tokio::select! {
                _ = epoch.cancelled() => return,
                _ = gone.cancelled() => return,
                flow = async {
                    match exec {
                        Some(line) => cli.run_exec(&line).await,
                        None => cli.run().await,
                    }
                } => flow,
            };
            match flow {
                Flow::Drop => {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, String::new(), String::new())
                        .await;
                }
                Flow::Exit | Flow::Continue => {
                    let _ = handle.exit_status_request(channel, 0).await;
                    let _ = handle.eof(channel).await;
                    let _ = handle.close(channel).await;
                }
            }
        });
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

impl Conn {
    /// Refused: the client may try the lab's other methods.
    fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.lab.methods()),
            partial_success: false,
        }
    }

    /// Whether `user` with a secret that was `secret_ok` may log in (the lab's user, and the
    /// device not faulted with `wrong-credentials`).
    fn may_log_in(&self, user: &str, secret_ok: bool) -> bool {
        secret_ok && user == self.lab.username && !self.dev.has_fault(Fault::WrongCredentials)
    }

    /// Accept and remember the user, or reject.
    fn log_in(&mut self, user: &str, secret_ok: bool) -> Auth {
        if self.may_log_in(user, secret_ok) {
            self.user = user.to_string();
            Auth::Accept
        } else {
            self.reject()
        }
    }

    fn key_known(&self, key: &russh::keys::PublicKey) -> bool {
        self.lab
            .authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let secret_ok = !self.lab.keyboard_interactive && password == self.lab.password;
        let auth = self.log_in(user, secret_ok);
        if auth != Auth::Accept {
            tracing::debug!(device = %self.dev.name, user, "login refused");
        }
        Ok(auth)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.may_log_in(user, self.key_known(offer.public_key)) {
            Auth::Accept
        } else {
            self.reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self.key_known(key.public_key);
        Ok(self.log_in(user, known))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if !self.lab.keyboard_interactive {
            return Ok(self.reject());
        }
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        let answer = response.next().unwrap_or_default();
        let secret_ok = answer.as_ref() == self.lab.password.as_bytes();
        Ok(self.log_in(user, secret_ok))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.channels.remove(&channel);
        self.start(channel, session, None);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let line = String::from_utf8_lossy(data).into_owned();
        let own = self.channels.remove(&channel);
        if let (Some(Ok(cmd)), Some(own)) = (crate::rcp::parse_command(&line), own)
            && cmd.mode == crate::rcp::Mode::Sink
        {
            let (dev, lab, peer) = (self.dev.clone(), self.lab.clone(), self.peer);
            let (epoch, gone) = (self.epoch.clone(), self.gone.clone());
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = epoch.cancelled() => {}
                    _ = gone.cancelled() => {}
                    _ = super::scp_sink::receive(dev, lab, own, cmd.path, peer) => {}
                }
            });
            return Ok(());
        }
        self.start(channel, session, Some(line));
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.inputs.get(&channel) {
            let _ = tx.send(data.to_vec());
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.inputs.remove(&channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.inputs.remove(&channel);
        self.channels.remove(&channel);
        Ok(())
    }
}
