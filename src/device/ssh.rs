//! The one place that does device I/O: a russh client with an interactive shell channel,
//! driving the pure [`CliSession`].

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle, Msg};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, MethodKind, Preferred, cipher, kex, mac};

use super::cli::{CliSession, Dialog, Event, Mode, Prompt};
use super::transcript::{EntryKind, Transcript};
use super::{DeviceError, Target, Timeouts};

/// Algorithms fleetup offers: russh's safe defaults first, then what older IOS and NX-OS
/// releases only speak (group14-sha1 and group-exchange-sha1 key exchange, CBC ciphers
/// including 3DES, HMAC-SHA1). A server that offers a modern algorithm gets it.
fn preferred() -> Preferred {
    let d = Preferred::default();
    let mut kex_list = d.kex.to_vec();
    // Extension markers must stay last-ish but order among them does not matter.
    let at = kex_list
        .iter()
        .position(|k| *k == kex::EXTENSION_SUPPORT_AS_CLIENT)
        .unwrap_or(kex_list.len());
    for (i, k) in [kex::DH_G14_SHA1, kex::DH_GEX_SHA1, kex::DH_G1_SHA1]
        .into_iter()
        .enumerate()
    {
        kex_list.insert(at + i, k);
    }
    let mut ciphers = d.cipher.to_vec();
    ciphers.extend([
        cipher::AES_256_CBC,
        cipher::AES_192_CBC,
        cipher::AES_128_CBC,
        cipher::TRIPLE_DES_CBC,
    ]);
    let mut macs = d.mac.to_vec();
    macs.extend([mac::HMAC_SHA1_ETM, mac::HMAC_SHA1]);
    Preferred {
        kex: Cow::Owned(kex_list),
        cipher: Cow::Owned(ciphers),
        mac: Cow::Owned(macs),
        ..d
    }
}

/// An SSH client connection to a device.
pub(crate) type SshHandle = Handle<HostKeyCheck>;

/// Host-key check: trust on first use, else the key must be the pinned one.
pub(crate) struct HostKeyCheck {
    pinned: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

/// `ssh-ed25519 AAAA...` without a comment, the form kept in the inventory.
pub(crate) fn openssh_key_text(key: &russh::keys::PublicKey) -> String {
    let text = key.to_openssh().unwrap_or_default();
    normalize_key(&text)
}

/// Algorithm and base64 of an OpenSSH public key line, comment dropped.
pub(crate) fn normalize_key(text: &str) -> String {
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                russh::keys::PublicKey::from(cert.public_key().clone())
            }
        };
        let text = openssh_key_text(&key);
        let ok = match &self.pinned {
            None => true,
            Some(pinned) => normalize_key(pinned) == text,
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(text);
        }
        Ok(ok)
    }
}

/// A logged-in interactive shell on one device.
pub(crate) struct Connection {
    device: String,
    handle: Handle<HostKeyCheck>,
    channel: Channel<Msg>,
    cli: CliSession,
    host_key: String,
    /// Every command line sent and every answer typed, with the output, when kept.
    transcript: Option<Transcript>,
    /// Answers typed during the running command: kept after the command's own line.
    answers: Vec<(String, String, jiff::Timestamp)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("device", &self.device)
            .field("hostname", &self.cli.hostname())
            .finish()
    }
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Connection {
    /// Connect, check the host key, log in, open a shell and wait for the first prompt.
    pub(crate) async fn open(
        target: &Target,
        timeouts: &Timeouts,
    ) -> Result<Connection, DeviceError> {
        let device = target.name.clone();
        let (handle, host_key) = connect(target, timeouts).await?;

        let channel = handle
            .channel_open_session()
            .await
            .map_err(|e| DeviceError::ssh(&device, "opening a session channel", e))?;
        // A wide terminal keeps IOS from wrapping long copy URLs in the echo.
        channel
            .request_pty(false, "vt100", 511, 24, 0, 0, &[])
            .await
            .map_err(|e| DeviceError::ssh(&device, "requesting a terminal", e))?;
        channel
            .request_shell(false)
            .await
            .map_err(|e| DeviceError::ssh(&device, "starting the shell", e))?;
        let deadline = now() + timeouts.command;
        let transcript = target.transcript.clone();
        if let Some(t) = &transcript {
            let login = &target.login;
            for secret in [&login.password, &login.enable_secret]
                .into_iter()
                .flatten()
            {
                t.add_secret(&secret.0);
            }
        }
        let mut conn = Connection {
            device,
            handle,
            channel,
            cli: CliSession::new(deadline),
            host_key,
            transcript,
            answers: Vec::new(),
        };
        conn.pump(None).await?;
        Ok(conn)
    }

    /// The host key the device presented (`ssh-ed25519 AAAA...`).
    pub(crate) fn host_key(&self) -> &str {
        &self.host_key
    }

    pub(crate) fn mode(&self) -> Option<Mode> {
        self.cli.mode()
    }

    pub(crate) fn device(&self) -> &str {
        &self.device
    }

    /// A value the transcript must never keep (the FTP password in a copy URL).
    pub(crate) fn keep_secret(&self, secret: &str) {
        if let Some(t) = &self.transcript {
            t.add_secret(secret);
        }
    }

    /// Run one command and return its output (echo and prompt removed). The command, the
    /// answers typed to its questions and what the device printed go to the transcript,
    /// whatever the outcome.
    pub(crate) async fn run(
        &mut self,
        command: &str,
        dialog: Dialog,
        timeout: Duration,
    ) -> Result<(String, Prompt), DeviceError> {
        let deadline = now() + timeout;
        let sent_at = jiff::Timestamp::now();
        self.cli
            .send(command, dialog, deadline)
            .map_err(|e| DeviceError::Session {
                device: self.device.clone(),
                message: e.to_string(),
            })?;
        self.answers.clear();
        let result = match self.pump(Some(command)).await {
            Ok(Some(done)) => Ok(done),
            Ok(None) => Err(DeviceError::Session {
                device: self.device.clone(),
                message: format!("`{command}` ended without output"),
            }),
            Err(e) => Err(e),
        };
        self.keep(command, sent_at, &result);
        result
    }

    fn keep(
        &mut self,
        command: &str,
        sent_at: jiff::Timestamp,
        result: &Result<(String, Prompt), DeviceError>,
    ) {
        let answers = std::mem::take(&mut self.answers);
        let Some(t) = &self.transcript else {
            return;
        };
        let output = match result {
            Ok((output, _)) => output.clone(),
            Err(DeviceError::CommandTimeout { tail, .. }) => {
                format!("{tail}\n[no prompt within the timeout]")
            }
            Err(DeviceError::ConnectionLost { .. }) => "[the connection closed]".to_string(),
            Err(e) => format!("[{e}]"),
        };
        t.record(EntryKind::Command, command, &output, sent_at);
        for (question, reply, at) in answers {
            t.record(EntryKind::Answer, &reply, &question, at);
        }
    }

    /// Move bytes between the channel and the CLI engine until the current command (or the
    /// first prompt) completes, times out, or the connection drops.
    async fn pump(
        &mut self,
        command: Option<&str>,
    ) -> Result<Option<(String, Prompt)>, DeviceError> {
        loop {
            while let Some(bytes) = self.cli.poll_transmit() {
                self.channel
                    .data(&bytes[..])
                    .await
                    .map_err(|_| DeviceError::ConnectionLost {
                        device: self.device.clone(),
                        command: command.map(str::to_string),
                    })?;
            }
            while let Some(event) = self.cli.poll_event() {
                match event {
                    Event::Ready(_) => return Ok(None),
                    Event::Done { output, prompt, .. } => return Ok(Some((output, prompt))),
                    Event::TimedOut { command, tail } => {
                        return Err(DeviceError::CommandTimeout {
                            device: self.device.clone(),
                            command: command
                                .unwrap_or_else(|| "(waiting for the first prompt)".into()),
                            tail,
                        });
                    }
                    Event::Answered { question, reply } => {
                        tracing::debug!(device = %self.device, %question, %reply, "answered");
                        if self.transcript.is_some() {
                            self.answers.push((question, reply, jiff::Timestamp::now()));
                        }
                    }
                    Event::Syslog(line) => tracing::debug!(device = %self.device, %line, "syslog"),
                }
            }
            let deadline = self.cli.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => self.cli.handle_input(&data, now()),
                    Some(ChannelMsg::ExtendedData { data, .. }) => self.cli.handle_input(&data, now()),
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                        return Err(DeviceError::ConnectionLost {
                            device: self.device.clone(),
                            command: command.map(str::to_string),
                        });
                    }
                    Some(_) => {}
                },
                _ = sleep => self.cli.handle_timeout(now()),
            }
        }
    }

    pub(crate) async fn close(self) {
        let _ = self.channel.close().await;
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A logged-in SSH connection to `target`, and the host key it presented: connect within
/// the connect timeout, check the host key against the pinned one, log in (key, password,
/// keyboard-interactive) within the auth timeout. The shell ([`Connection::open`]) and the
/// SCP push ([`crate::device::scp_push`]) both start here.
pub(crate) async fn connect(
    target: &Target,
    timeouts: &Timeouts,
) -> Result<(SshHandle, String), DeviceError> {
    let device = target.name.clone();
    let addr = format!("{}:{}", target.host, target.port);
    let config = Arc::new(client::Config {
        preferred: preferred(),
        keepalive_interval: Some(timeouts.keepalive),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    });
    let seen = Arc::new(Mutex::new(None));
    let handler = HostKeyCheck {
        pinned: target.known_host_key.clone(),
        seen: seen.clone(),
    };
    let connect = client::connect(config, (target.host.as_str(), target.port), handler);
    let result = tokio::time::timeout(timeouts.connect, connect).await;
    let seen_key = seen.lock().ok().and_then(|s| s.clone());
    let mut handle = match result {
        Err(_) => {
            return Err(DeviceError::ConnectTimeout {
                device,
                addr,
                secs: timeouts.connect.as_secs(),
            });
        }
        Ok(Err(russh::Error::UnknownKey)) => {
            return Err(DeviceError::HostKeyChanged {
                device,
                pinned: target.known_host_key.clone().unwrap_or_default(),
                seen: seen_key.unwrap_or_default(),
            });
        }
        Ok(Err(e)) => {
            return Err(DeviceError::Connect {
                device,
                addr,
                reason: e.to_string(),
            });
        }
        Ok(Ok(h)) => h,
    };
    let host_key = seen_key.unwrap_or_default();
    tokio::time::timeout(timeouts.auth, authenticate(&mut handle, target))
        .await
        .map_err(|_| DeviceError::AuthTimeout {
            device: device.clone(),
            secs: timeouts.auth.as_secs(),
        })??;

    Ok((handle, host_key))
}

async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    target: &Target,
) -> Result<(), DeviceError> {
    let device = &target.name;
    let user = target.login.username.clone();
    let failed = |detail: String| DeviceError::AuthFailed {
        device: device.clone(),
        user: user.clone(),
        detail,
    };
    let mut tried = Vec::new();
    if let Some(path) = &target.private_key {
        let key =
            russh::keys::load_secret_key(path, None).map_err(|e| DeviceError::PrivateKey {
                device: device.clone(),
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let hash: Option<HashAlg> = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| DeviceError::ssh(device, "negotiating the RSA hash", e))?
            .flatten();
        let res = handle
            .authenticate_publickey(
                user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| DeviceError::ssh(device, "public-key authentication", e))?;
        if res.success() {
            return Ok(());
        }
        tried.push("publickey");
    }
    let Some(password) = &target.login.password else {
        return Err(failed(if tried.is_empty() {
            "no password or private key in the inventory".into()
        } else {
            "the key was refused and there is no password in the inventory".into()
        }));
    };
    let res = handle
        .authenticate_password(user.clone(), password.0.clone())
        .await
        .map_err(|e| DeviceError::ssh(device, "password authentication", e))?;
    let remaining = match res {
        russh::client::AuthResult::Success => return Ok(()),
        russh::client::AuthResult::Failure {
            remaining_methods, ..
        } => remaining_methods,
    };
    tried.push("password");
    // Many IOS AAA setups only offer keyboard-interactive: answer every prompt with the password.
    if remaining.contains(&MethodKind::KeyboardInteractive) {
        tried.push("keyboard-interactive");
        let mut reply = handle
            .authenticate_keyboard_interactive_start(user.clone(), None)
            .await
            .map_err(|e| DeviceError::ssh(device, "keyboard-interactive authentication", e))?;
        for _round in 0..4 {
            match reply {
                client::KeyboardInteractiveAuthResponse::Success => return Ok(()),
                client::KeyboardInteractiveAuthResponse::Failure { .. } => break,
                client::KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                    let answers = prompts.iter().map(|_| password.0.clone()).collect();
                    reply = handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await
                        .map_err(|e| {
                            DeviceError::ssh(device, "keyboard-interactive authentication", e)
                        })?;
                }
            }
        }
    }
    Err(failed(format!("tried {}", tried.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_algorithms_come_after_the_modern_ones() {
        let p = preferred();
        let kex_pos = |k| p.kex.iter().position(|x| *x == k).unwrap();
        assert!(kex_pos(kex::CURVE25519) < kex_pos(kex::DH_G14_SHA1));
        assert!(p.kex.contains(&kex::DH_GEX_SHA1));
        for c in [
            cipher::AES_128_CBC,
            cipher::AES_256_CBC,
            cipher::TRIPLE_DES_CBC,
        ] {
            assert!(p.cipher.contains(&c), "{c:?}");
        }
        assert_eq!(p.cipher[0], Preferred::default().cipher[0]);
        assert!(p.mac.contains(&mac::HMAC_SHA1));
    }

    #[test]
    fn keys_compare_without_comments() {
        assert_eq!(
            normalize_key("ssh-ed25519 AAAAC3Nz  lab-sw-001"),
            "ssh-ed25519 AAAAC3Nz"
        );
        assert_eq!(
            normalize_key(" ssh-ed25519 AAAAC3Nz\n"),
            "ssh-ed25519 AAAAC3Nz"
        );
    }
}
