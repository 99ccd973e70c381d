//! One SSH connection to the image server: password login against the grants (with the
//! per-address lockout), then exec `scp -f` or the `sftp` subsystem on its channels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio_util::sync::CancellationToken;

use super::{Shared, scp, sftp};
use crate::rcp::{self, Mode};

/// Channels one connection may have open at once (OpenSSH opens one).
const MAX_CHANNELS: usize = 2;

pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    pub(super) peer: SocketAddr,
    /// The account, once logged in.
    pub(super) user: Option<String>,
    /// Cancelled on login, so the accept task stops its login timer.
    pub(super) logged_in: CancellationToken,
    /// Cancelled when the connection ends: its transfers stop with it.
    pub(super) gone: CancellationToken,
    /// Opened channels not yet given a request.
    pub(super) channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

fn password_only() -> MethodSet {
    MethodSet::from(&[MethodKind::Password][..])
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(password_only()),
        partial_success: false,
    }
}

impl Conn {
    /// Run a channel's work as a task of the service, ended with the connection.
    fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let gone = self.gone.clone();
        let shutdown = self.shared.shutdown.clone();
        self.shared.shutdown.tasks.spawn(async move {
            tokio::select! {
                _ = gone.cancelled() => {}
                _ = shutdown.requested() => {}
                _ = work => {}
            }
        });
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ip = self.peer.ip();
        let now = std::time::Instant::now();
        if let Some(left) = self.shared.lockout().locked_for(ip, now) {
            tracing::info!(peer = %self.peer, user, seconds = left.as_secs(), "image SSH: login refused: address locked out after failed logins");
            return Ok(reject());
        }
        if self.shared.grants.login(user, password) {
            self.shared.lockout().record_success(ip);
            self.user = Some(user.to_string());
            self.logged_in.cancel();
            tracing::debug!(peer = %self.peer, user, "image SSH: logged in");
            return Ok(Auth::Accept);
        }
        if self.shared.lockout().record_failure(ip, now) {
            tracing::warn!(peer = %self.peer, "image SSH: address locked out after repeated failed logins");
        } else {
            tracing::info!(peer = %self.peer, user, "image SSH: login refused (wrong password, or the account's grant ended)");
        }
        Ok(reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(channel), Some(user)) = (self.channels.remove(&id), self.user.clone()) else {
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let line = String::from_utf8_lossy(data).into_owned();
        let (peer, shared) = (self.peer, self.shared.clone());
        match rcp::parse_command(&line) {
            Some(Ok(cmd)) if cmd.mode == Mode::Source => self.spawn(scp::send_file(
                shared,
                channel,
                cmd.path,
                cmd.preserve,
                peer,
                user,
            )),
            Some(Ok(_)) => {
                self.spawn(async move { scp::refuse_upload(channel, peer, &user).await })
            }
            Some(Err(reason)) => {
                tracing::info!(%peer, user, command = ?line, reason, "image SSH: refused an scp request");
                let message = format!("scp: {reason}");
                self.spawn(async move { scp::refuse_command(channel, &message).await });
            }
            None => {
                tracing::info!(%peer, user, command = ?line, "image SSH: refused a command");
                self.spawn(async move {
                    scp::refuse_command(
                        channel,
                        "fleetup's image server runs no commands: only `scp -f FILE` and the sftp subsystem",
                    )
                    .await
                });
            }
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let user = self.user.clone();
        let (Some(channel), Some(user), "sftp") = (self.channels.remove(&id), user, name) else {
            tracing::info!(peer = %self.peer, subsystem = name, "image SSH: refused a subsystem");
            return session.channel_failure(id);
        };
        session.channel_success(id)?;
        let handler = sftp::SftpSession::new(self.shared.clone(), user, self.peer);
        let config = russh_sftp::server::Config {
            max_client_packet_len: 64 * 1024,
        };
        russh_sftp::server::run_with_config(channel.into_stream(), handler, config).await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&id);
        session.channel_failure(id)
    }

    async fn channel_close(
        &mut self,
        id: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&id);
        Ok(())
    }
}
