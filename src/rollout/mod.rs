//! Fleet rollouts: a playbook applied wave by wave, each device through its upgrade steps, every
//! step recorded in the database before and after it runs.

pub(crate) mod clock;
pub(crate) mod engine;
mod handoff;
pub(crate) mod job;
pub(crate) mod job_store;
mod ledger;
pub mod model;
pub(crate) mod policy;
pub mod report;

pub use clock::{Clock, ManualClock};
pub(crate) use engine::{Engine, EngineSettings};

use std::net::SocketAddr;

use crate::playbook::Playbook;
use crate::store::StoreError;
use crate::yaml::YamlError;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("playbook {0}")]
    Playbook(YamlError),
    #[error("nothing to do: every targeted device is skipped ({0})")]
    NothingToDo(String),
    #[error("no rollout {0}")]
    NotFound(String),
    #[error("rollout {id} has ended ({state}); nothing more can be done with it")]
    Ended {
        id: String,
        state: model::RolloutState,
    },
    #[error("rollout {id} does not wait for an approval ({state})")]
    NotAwaitingApproval {
        id: String,
        state: model::RolloutState,
    },
    #[error(
        "{0} submitted this rollout and may not approve it: the approval must come from another operator or admin token"
    )]
    OwnApproval(String),
    #[error("stored rollout data is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Images(#[from] crate::images::ImageError),
}

impl From<YamlError> for RolloutError {
    fn from(e: YamlError) -> Self {
        RolloutError::Playbook(e)
    }
}

/// A playbook as YAML or JSON text (JSON is read as YAML, which it is).
pub(crate) fn parse_playbook(text: &str) -> Result<Playbook, YamlError> {
    crate::playbook::parse(text)
}

/// How devices reach fleetup's own file servers.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileServers {
    pub tftp: Option<SocketAddr>,
    pub ftp: Option<SocketAddr>,
    /// The FTP server's accounts: each device job gets a one-time account, removed when the
    /// job ends, so a copy URL seen in a device's history stops working.
    pub ftp_credentials: Option<crate::ftp::FtpCredentials>,
    /// The HTTP image server (`--image-http`), plain.
    pub http: Option<SocketAddr>,
    /// The HTTPS image server (`--image-https`).
    pub https: Option<SocketAddr>,
    /// The SCP/SFTP image server (`--image-scp`).
    pub scp: Option<SocketAddr>,
    /// One-time grants shared with the HTTP(S) and SCP/SFTP servers: each device job gets a
    /// path token (HTTP) or an account (SCP, SFTP) for its own files, ended with the job.
    pub grants: crate::grants::Grants,
}
