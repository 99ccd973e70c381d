//! One device's part in a rollout: the driver's upgrade procedure, with every step recorded
//! before it starts, pauses and maintenance windows honoured between steps, and a resume path
//! that never sends a second reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FileServers;
use super::clock::Clock;
use super::job_store::JobStore;
use super::model::{DeviceJob, EventKind, JobState, StepState, is_reload_step};
use super::policy::{self, Changes};
use crate::device::{
    self, CopySource, FailureReason, KickstartImage, ReloadSeen, Step, StepEvent, StepGate,
    StepStatus, Stop, Target, Transcript, TranscriptLimits, Transfer, UpgradeFailure,
    UpgradeOptions, UpgradeOutcome, UpgradePlan, UpgradeResult,
};
use crate::inventory::Secret;
use crate::metrics::StepResult;
use crate::playbook::{Playbook, Share, TransferProtocol};
use crate::store::rollouts::{NewEvent, StepRecord};
use crate::transfers::{Claim, ClaimGuard, JobRef, Protocol, Recognise};

pub(crate) struct JobContext {
    /// Where the job reads and records: the database on a serve node, the API on an agent.
    pub store: std::sync::Arc<dyn JobStore>,
    pub env: JobEnv,
    pub rollout_id: super::model::RolloutId,
    pub playbook: Playbook,
}

/// What a job uses of the process it runs in: its file servers and their transfers, its
/// metrics, its clock and its shutdown.
#[derive(Clone)]
pub(crate) struct JobEnv {
    pub transfers: crate::transfers::Transfers,
    pub servers: FileServers,
    pub metrics: crate::metrics::RolloutMetrics,
    pub clock: Clock,
    pub shutdown: crate::shutdown::Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobOutcome {
    Succeeded,
    Failed,
    Aborted,
    /// The service is shutting down; the job stays `running` and resumes at the next start.
    Interrupted,
}

/// Run (or resume) one device's upgrade and record how it ended.
pub(crate) async fn run(ctx: &JobContext, job: DeviceJob) -> JobOutcome {
    let store = &*ctx.store;
    let id = &ctx.rollout_id;
    let name = job.device.clone();
    // A copy from the site's agent that failed for the agent (killed, restarting) runs again
    // once the agent beats again, or from the serve nodes once it no longer counts as live.
    let mut agent_retries = 0;
    let (prepared, outcome) = loop {
        let prepared = prepare(ctx, &job).await;
        let outcome = match &prepared {
            Ok(p) => execute(ctx, &job, p).await,
            Err(message) => Err(Ended::Failed {
                reason: "configuration".into(),
                message: format!("configuration: {message}"),
                reached_reload: false,
                copy_transport: false,
            }),
        };
        let retry = match (&prepared, &outcome) {
            (
                Ok(Prepared {
                    agent: Some((agent, site)),
                    ..
                }),
                Err(Ended::Failed {
                    copy_transport: true,
                    reached_reload: false,
                    message,
                    ..
                }),
            ) if agent_retries < AGENT_COPY_RETRIES => {
                Some((agent.clone(), site.clone(), message.clone()))
            }
            _ => None,
        };
        if let Some((agent, site, message)) = retry {
            agent_retries += 1;
            // The job's one-time grants end before it waits.
            drop(prepared);
            store
                .event(
                    id,
                    &name,
                    EventKind::Message,
                    Some("copy"),
                    &format!(
                        "the copy from agent {agent} of site {site} failed ({message}); copying again once the agent answers, or from the serve nodes"
                    ),
                    Some(json!({"agent": agent, "site": site, "attempt": agent_retries})),
                )
                .await;
            store.wait_for_agent(&site, &agent, p_timeout(ctx)).await;
            continue;
        }
        break (prepared, outcome);
    };
    if let (
        Err(Ended::Failed {
            reached_reload: true,
            ..
        }),
        Ok(p),
    ) = (&outcome, &prepared)
    {
        refresh_facts(ctx, &p.target, &p.plan).await;
    }
    let db = store;
    // How the job ended, and the event that says so: written together.
    let (state, new_version, error, kind, message, data, result) = match outcome {
        Ok(done) => {
            let (state, note) = match done.result {
                UpgradeResult::Upgraded => (JobState::Succeeded, "upgraded"),
                UpgradeResult::AlreadyCurrent => {
                    (JobState::Skipped, "already on the target version")
                }
                UpgradeResult::Staged => (JobState::Succeeded, "staged: image copied and verified"),
            };
            if let Err(e) = db
                .set_job_origin(
                    id,
                    &name,
                    done.before.version.as_deref(),
                    done.before.image.as_deref(),
                )
                .await
            {
                tracing::warn!(device = %name, error = %e, "cannot record the version before");
            }
            if let Err(e) = db.set_facts(&name, &done.after).await {
                tracing::warn!(device = %name, error = %e, "cannot record facts");
            }
            let version = done.after.version.clone();
            let message = format!("{note}; now running {}", version.as_deref().unwrap_or("?"));
            let data = json!({"version": version});
            (
                state,
                version,
                None,
                EventKind::DeviceSucceeded,
                message,
                Some(data),
                JobOutcome::Succeeded,
            )
        }
        Err(Ended::Interrupted) => return JobOutcome::Interrupted,
        Err(Ended::Requeued(message)) => {
            let event = NewEvent::device(&name, EventKind::DeviceRequeued, &message);
            if let Err(e) = store.requeue_job(id, &name, event).await {
                tracing::error!(device = %name, error = %e, "cannot put a device back in line");
            }
            return JobOutcome::Aborted;
        }
        Err(Ended::Aborted(message)) => (
            JobState::Aborted,
            None,
            Some(("aborted".to_string(), message.clone())),
            EventKind::DeviceAborted,
            message,
            None,
            JobOutcome::Aborted,
        ),
        Err(Ended::RolledBack { reason, message }) => (
            JobState::RolledBack,
            None,
            Some((reason.clone(), message.clone())),
            EventKind::DeviceRolledBack,
            message,
            Some(json!({"reason": reason, "rolled_back": true})),
            JobOutcome::Failed,
        ),
        Err(Ended::Failed {
            reason, message, ..
        }) => (
            JobState::Failed,
            None,
            Some((reason.clone(), message.clone())),
            EventKind::DeviceFailed,
            message,
            Some(json!({"reason": reason})),
            JobOutcome::Failed,
        ),
    };
    let event = NewEvent::device(&name, kind, &message).with_data(data.as_ref());
    if let Err(e) = store
        .finish_job(
            id,
            &name,
            state,
            new_version.as_deref(),
            error.as_ref().map(|(r, m)| (r.as_str(), m.as_str())),
            event,
        )
        .await
    {
        tracing::error!(device = %name, error = %e, "cannot record the end of a device job");
    }
    result
}

enum Ended {
    Interrupted,
    /// Failed on the new image and put back on the old one.
    RolledBack {
        reason: String,
        message: String,
    },
    /// Stopped by a halt at a safe point: back to pending, for a retry.
    Requeued(String),
    Aborted(String),
    Failed {
        reason: String,
        /// The device's error as recorded and shown: what failed, why, and what was left.
        message: String,
        /// The reload was sent: the device may run another image now.
        reached_reload: bool,
        /// The copy failed for its file server (it timed out or was refused), not the device.
        copy_transport: bool,
    },
}

/// After a failure past the reload the device may run the new image, the old one, or nothing:
/// read what it really runs, so the inventory (and the next plan) never shows stale facts.
async fn refresh_facts(ctx: &JobContext, target: &Target, plan: &UpgradePlan) {
    let store = &*ctx.store;
    let id = &ctx.rollout_id;
    let name = &target.name;
    let (kind, message, data) = match device::read_facts(target, &plan.timeouts).await {
        Ok((facts, _key)) => {
            let facts = facts.to_facts();
            if let Err(e) = store.set_facts(name, &facts).await {
                tracing::warn!(device = %name, error = %e, "cannot record facts");
            }
            (
                EventKind::FactsRead,
                format!(
                    "after the failure the device runs {} from {}",
                    facts.version.as_deref().unwrap_or("an unknown version"),
                    facts.image.as_deref().unwrap_or("an unknown image")
                ),
                Some(json!({"version": facts.version, "image": facts.image})),
            )
        }
        Err(e) => (
            EventKind::FactsRead,
            format!(
                "after the failure its facts could not be read ({e}); the inventory keeps the last ones known"
            ),
            None,
        ),
    };
    store.event(id, name, kind, None, &message, data).await;
}

/// A one-time FTP account, removed when dropped.
struct FtpAccount {
    credentials: crate::ftp::FtpCredentials,
    token: crate::ftp::CredentialToken,
}

impl Drop for FtpAccount {
    fn drop(&mut self) {
        self.credentials.remove(self.token);
    }
}

async fn prepare(ctx: &JobContext, job: &DeviceJob) -> Result<Prepared, String> {
    let store = &*ctx.store;
    let device = store.device(&job.device).await?;
    let image = store.local_image(&job.image).await?;
    let pb = &ctx.playbook;
    let site = device.spec.site.as_deref();
    let settings = pb.transfer.for_site(site);
    let t = &pb.strategy.timeouts;
    let timeouts = device::Timeouts {
        connect: t.connect.duration(),
        auth: t.connect.duration(),
        command: t.command.duration(),
        copy: t.copy.duration(),
        verify: t.copy.duration(),
        install: t.copy.duration(),
        reload: t.reload.duration(),
        poll_interval: t.poll.duration(),
        commit: t.commit.duration(),
        members: t.members.duration(),
        ..device::Timeouts::default()
    };
    let margin = match pb.checks.pre.free_space_margin {
        Share::Percent(p) => p.clamp(0.0, 100.0) as u8,
        Share::Count(n) => n.min(100) as u8,
    };
    let model = device
        .spec
        .model
        .as_deref()
        .or(device.facts.model.as_deref());
    let mut checksums = vec![image.sha256.clone()];
    let kickstart = match pb.kickstart_for(device.spec.platform, model) {
        Some(name) => {
            let k = store
                .local_image(&name)
                .await
                .map_err(|e| format!("kickstart {e}"))?;
            checksums.push(k.sha256.clone());
            Some(KickstartImage {
                image: k.file_name.clone(),
                md5: k.md5.clone(),
                size: k.size,
            })
        }
        None => None,
    };
    let files: Vec<String> = std::iter::once(image.file_name.to_string())
        .chain(kickstart.iter().map(|k| k.image.to_string()))
        .collect();
    let target = Target::from_device(&device)?;
    // A site with a live agent copies over TFTP from the agent, once it holds the image (and
    // the kickstart image) checked, unless the playbook names a server for that site
    // (`transfer.sites.NAME.server`; `transfer.server` is where devices reach the serve nodes).
    let agent = match site {
        Some(site)
            if pb
                .transfer
                .sites
                .get(site)
                .is_none_or(|o| o.server.is_none())
                && settings.protocols.contains(&TransferProtocol::Tftp) =>
        {
            store.site_agent(site, &checksums, timeouts.copy).await?
        }
        _ => None,
    };
    let agent_used = agent
        .as_ref()
        .zip(site)
        .map(|((name, _), site)| (name.clone(), site.to_string()));
    let mut sources = Vec::new();
    let mut claims = Vec::new();
    let mut grants = Vec::new();
    let mut refused = Vec::new();
    for protocol in &settings.protocols {
        let found = match agent {
            Some((ref name, addr)) if *protocol == TransferProtocol::Tftp => {
                tracing::info!(device = %job.device, agent = %name, tftp = %addr, "copying from the site's agent");
                Ok(agent_source(addr, &settings))
            }
            _ => source_for(ctx, *protocol, &settings, &files, &job.device, &target.host).await,
        };
        match found {
            Ok(found) => {
                sources.push(found.source);
                if let Some(by) = found.recognise {
                    claims.push(Claim {
                        job: JobRef {
                            rollout: ctx.rollout_id.clone(),
                            device: job.device.clone(),
                        },
                        protocol: found.protocol,
                        files: files.clone(),
                        by,
                        since: jiff::Timestamp::now(),
                    });
                }
                grants.push(found.grant);
            }
            Err(why) => refused.push(why),
        }
    }
    if sources.is_empty() {
        return Err(refused.join("; "));
    }
    let source = sources.remove(0);
    let plan = UpgradePlan {
        image: image.file_name.clone(),
        md5: image.md5.clone(),
        size: image.size,
        kickstart,
        source,
        fallback: sources,
        // What this job saw the device run (kept before any change), else the inventory's.
        previous_image: job.old_image.clone().or_else(|| device.facts.image.clone()),
        previous_version: job
            .old_version
            .clone()
            .or_else(|| device.facts.version.clone()),
        committed: job.reload_sent
            && step_recorded_at(store, &ctx.rollout_id, &job.device, |s| {
                s == Step::Commit.as_str()
            })
            .await
            .is_some(),
        expected_version: image.version.clone(),
        options: UpgradeOptions {
            skip_if_current: pb.options.skip_if_current,
            stage_only: pb.options.stage_only,
            delete_old_image: pb.options.delete_old_image,
            free_space_margin_percent: margin,
            pre_checks: pb
                .checks
                .pre
                .commands
                .iter()
                .map(|c| c.to_check())
                .collect(),
            post_checks: pb
                .checks
                .post
                .commands
                .iter()
                .map(|c| c.to_check())
                .collect(),
            compare: pb.checks.compare.iter().map(|c| c.0.clone()).collect(),
            tftp_blocksize: pb.transfer.tftp_blocksize.as_ref().map(|b| b.value),
            allow_downgrade: pb.options.allow_downgrade,
            rollback: pb.options.rollback == crate::playbook::Rollback::OnFailure,
            unsaved_config: pb.checks.pre.unsaved_config,
            issu: pb.strategy.issu,
        },
        timeouts,
    };
    Ok(Prepared {
        target,
        plan,
        claims,
        _grants: grants,
        agent: agent_used,
    })
}

/// What a job needs before it logs in.
struct Prepared {
    target: Target,
    plan: UpgradePlan,
    /// How the transfer the copy starts will be known as this job's, per source.
    claims: Vec<Claim>,
    /// The one-time FTP accounts, HTTP path tokens and SCP/SFTP accounts of the sources,
    /// ended with the job.
    _grants: Vec<Grant>,
    /// The site agent (name, site) the device copies from, if any.
    agent: Option<(String, String)>,
}

/// A one-time permission a copy source holds for the job's life.
enum Grant {
    None,
    Ftp { _account: FtpAccount },
    Other { _grant: crate::grants::GrantGuard },
}

/// One copy source of a job, with how its transfer is recognised and what it holds.
struct FoundSource {
    source: CopySource,
    protocol: Protocol,
    recognise: Option<Recognise>,
    grant: Grant,
}

/// The copy source for `protocol`, or why this service cannot offer it.
async fn source_for(
    ctx: &JobContext,
    protocol: TransferProtocol,
    settings: &crate::playbook::DeviceTransfer,
    files: &[String],
    device_name: &str,
    device_host: &str,
) -> Result<FoundSource, String> {
    let servers = &ctx.env.servers;
    let off = || {
        format!(
            "the playbook asks for {} but that server is off in this service",
            protocol.as_str()
        )
    };
    let (transfer, listen, default_port, wire, recognise, grant, directory) = match protocol {
        TransferProtocol::Tftp => {
            let by = device_address(device_host).await.map(Recognise::TftpClient);
            (
                Transfer::Tftp,
                servers.tftp,
                69,
                Protocol::Tftp,
                by,
                Grant::None,
                String::new(),
            )
        }
        TransferProtocol::Ftp => {
            let Some(credentials) = &servers.ftp_credentials else {
                return Err(off());
            };
            // Letters and digits only: IOS parses `:` `@` `/` in URL credentials itself.
            let user = format!("fu{:08x}", rand::random::<u32>());
            let password = crate::ftp::generate_password();
            let account = FtpAccount {
                credentials: credentials.clone(),
                token: credentials.add_temporary(&user, &password),
            };
            (
                Transfer::Ftp {
                    username: user.clone(),
                    password: Secret(password),
                },
                servers.ftp,
                21,
                Protocol::Ftp,
                Some(Recognise::Account(user)),
                Grant::Ftp { _account: account },
                String::new(),
            )
        }
        TransferProtocol::Http | TransferProtocol::Https => {
            let tls = protocol == TransferProtocol::Https;
            let listen = if tls { servers.https } else { servers.http };
            let token = servers.grants.issue_token(files.to_vec());
            let directory = format!("j/{}", token.name());
            (
                Transfer::Http { tls },
                listen,
                if tls { 443 } else { 80 },
                if tls { Protocol::Https } else { Protocol::Http },
                Some(Recognise::Account(token.name().to_string())),
                Grant::Other { _grant: token },
                directory,
            )
        }
        TransferProtocol::Scp | TransferProtocol::Sftp => {
            let sftp = protocol == TransferProtocol::Sftp;
            let account = servers.grants.issue_account(files.to_vec());
            let user = account.name().to_string();
            (
                Transfer::Ssh {
                    sftp,
                    username: user.clone(),
                    password: Secret(account.secret().unwrap_or_default().to_string()),
                },
                servers.scp,
                22,
                if sftp { Protocol::Sftp } else { Protocol::Scp },
                Some(Recognise::Account(user)),
                Grant::Other { _grant: account },
                String::new(),
            )
        }
        TransferProtocol::ScpPush => {
            // The push shows as a transfer of the job, like a device's pull.
            let device = device_address(device_host)
                .await
                .map(|ip| std::net::SocketAddr::new(ip, 22))
                .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 22)));
            let job = JobRef {
                rollout: ctx.rollout_id.clone(),
                device: device_name.to_string(),
            };
            let transfers = ctx.env.transfers.clone();
            let live: std::sync::Mutex<Option<(String, crate::transfers::TransferHandle)>> =
                std::sync::Mutex::new(None);
            let progress = device::PushProgress(std::sync::Arc::new(
                move |file: &str, sent: u64, total: u64| {
                    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
                    if live.as_ref().is_none_or(|(f, _)| f != file || sent == 0) {
                        *live = Some((
                            file.to_string(),
                            transfers.start_push(device, file, Some(total), job.clone()),
                        ));
                    }
                    if let Some((_, handle)) = live.as_ref() {
                        handle.set_bytes(sent);
                    }
                    if sent >= total
                        && let Some((_, handle)) = live.take()
                    {
                        handle.complete();
                    }
                },
            ));
            let source = CopySource {
                vrf: settings.vrf.clone(),
                source_interface: settings.source_interface.clone(),
                ..CopySource::new(
                    Transfer::ScpPush {
                        store: ctx.store.image_dir(),
                        progress: Some(progress),
                    },
                    device_host,
                )
            };
            return Ok(FoundSource {
                source,
                protocol: Protocol::Scp,
                recognise: None,
                grant: Grant::None,
            });
        }
    };
    let Some(listen) = listen else {
        return Err(off());
    };
    let server = match &settings.server {
        Some(s) => s.clone(),
        None if !listen.ip().is_unspecified() => listen.ip().to_string(),
        None => {
            return Err(format!(
                "transfer.server is not set and the {} server listens on every address: say in the playbook at which address devices reach fleetup",
                protocol.as_str()
            ));
        }
    };
    Ok(FoundSource {
        source: CopySource {
            port: (listen.port() != default_port).then_some(listen.port()),
            directory,
            vrf: settings.vrf.clone(),
            source_interface: settings.source_interface.clone(),
            ..CopySource::new(transfer, server)
        },
        protocol: wire,
        recognise,
        grant,
    })
}

/// Copies from a site's agent a job tries again after the agent failed it.
const AGENT_COPY_RETRIES: u32 = 3;

/// How long a job waits for an agent that failed its copy: the playbook's copy timeout.
fn p_timeout(ctx: &JobContext) -> std::time::Duration {
    ctx.playbook.strategy.timeouts.copy.duration()
}

/// The TFTP source of a device whose site's agent serves the image at `addr`: the agent
/// shows the transfer (in its heartbeat), not this node.
fn agent_source(
    addr: std::net::SocketAddr,
    settings: &crate::playbook::DeviceTransfer,
) -> FoundSource {
    FoundSource {
        source: CopySource {
            port: (addr.port() != 69).then_some(addr.port()),
            vrf: settings.vrf.clone(),
            source_interface: settings.source_interface.clone(),
            ..CopySource::new(Transfer::Tftp, addr.ip().to_string())
        },
        protocol: Protocol::Tftp,
        recognise: None,
        grant: Grant::None,
    }
}

/// The address a device's TFTP requests come from: its management address. A name is
/// resolved; a device whose name does not resolve gets no transfer shown, never another's.
async fn device_address(host: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    tokio::net::lookup_host((host, 22))
        .await
        .ok()?
        .next()
        .map(|a| a.ip())
}

/// Records each step before it runs; holds a step while the rollout is paused and a reload
/// until a maintenance window is open.
struct Recorder<'a> {
    ctx: &'a JobContext,
    device: String,
    /// Set when the rollout must stop at this safe point (abort, halt).
    cancel: CancellationToken,
    /// The driver's progress, recorded in order before the next step starts.
    events: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<StepEvent>>,
    /// The first change to the device has begun (inside a window).
    changing: AtomicBool,
    /// Made when the copy starts (one per source), so that the transfer it causes is known
    /// as this job's.
    claims: Vec<Claim>,
    claimed: std::sync::Mutex<Vec<ClaimGuard>>,
    /// What the driver sends and the device answers, taken with each step's end.
    transcript: Transcript,
    /// The device's platform, a label of the step and reload metrics.
    platform: &'static str,
    /// When each step under way passed the gate (a pause or a wait for a window is not part
    /// of the step's duration).
    step_began: std::sync::Mutex<HashMap<Step, Instant>>,
    /// When the last reload (or rollback reload, or installer reload) was sent, in this
    /// process: after a restart the reload-detection latency is unknown and not observed.
    reload_sent: std::sync::Mutex<Option<Instant>>,
}

/// A step's end as the driver reported it, waiting to be recorded.
struct StepEnd {
    step: Step,
    kind: EventKind,
    state: Option<StepState>,
    message: String,
    /// The transcript lines kept until this end.
    lines: Vec<crate::device::TranscriptEntry>,
}

impl StepEnd {
    fn record(&self) -> StepRecord<'_> {
        StepRecord {
            step: self.step.as_str(),
            state: self.state,
            kind: self.kind,
            message: &self.message,
            transcript: &self.lines,
        }
    }
}

#[async_trait]
impl StepGate for Recorder<'_> {
    async fn facts_read(&self, version: &str, image: Option<&str>) {
        if let Err(e) = self
            .ctx
            .store
            .set_job_origin(&self.ctx.rollout_id, &self.device, Some(version), image)
            .await
        {
            tracing::warn!(device = %self.device, error = %e, "cannot record the version before");
        }
    }

    async fn compare_baseline_taken(&self, baseline: &str) -> Result<(), String> {
        self.ctx
            .store
            .set_compare_baseline(&self.ctx.rollout_id, &self.device, baseline)
            .await
            .map_err(|e| e.to_string())
    }

    async fn compare_baseline(&self) -> Option<String> {
        match self
            .ctx
            .store
            .compare_baseline(&self.ctx.rollout_id, &self.device)
            .await
        {
            Ok(kept) => kept,
            Err(e) => {
                tracing::warn!(device = %self.device, error = %e, "cannot read the state before");
                None
            }
        }
    }

    async fn before(&self, step: Step, message: &str) -> Result<(), Stop> {
        // The ends the driver reported go in one transaction with this step's start, unless
        // something comes between (a pause, a stop, a wait for a window), whose event must
        // follow them.
        let mut ended = self.take_ended().await;
        let store = &*self.ctx.store;
        let shutdown = &self.ctx.env.shutdown;
        let id = &self.ctx.rollout_id;
        let seen = store.rollout_view(id).await.ok();
        if seen.is_some_and(|r| r.paused) {
            self.write_ended(std::mem::take(&mut ended)).await;
            store
                .event(
                    id,
                    &self.device,
                    EventKind::Held,
                    Some(step.as_str()),
                    "the rollout is paused: this step waits for resume",
                    None,
                )
                .await;
        }
        if !store.may_go_on(id, seen).await {
            self.write_ended(ended).await;
            self.cancel.cancel();
            return Err(if shutdown.is_requested() {
                Stop::Shutdown
            } else {
                Stop::Abort
            });
        }
        // The driver asks `may_change_now` before its first change; this only guards a
        // driver that would not.
        if step.changes_the_device() {
            if !self.changing.load(Ordering::Relaxed) && !self.may_change_now().await {
                self.write_ended(std::mem::take(&mut ended)).await;
                self.wait_for_window().await?;
            }
            // Once the changes began, they finish even if the window closes meanwhile: a
            // device left with a new boot variable until the next window is worse.
            self.changing.store(true, Ordering::Relaxed);
        }
        if step == Step::Copy && !self.claims.is_empty() {
            let now = jiff::Timestamp::now();
            let guards = self
                .claims
                .iter()
                .map(|claim| {
                    self.ctx.env.transfers.claim(Claim {
                        since: now,
                        ..claim.clone()
                    })
                })
                .collect();
            *self.claimed.lock().unwrap_or_else(|e| e.into_inner()) = guards;
        }
        // Written before the step runs: after a crash, `reload_sent` tells the truth.
        let mut records: Vec<StepRecord<'_>> = ended.iter().map(StepEnd::record).collect();
        records.push(StepRecord {
            step: step.as_str(),
            state: Some(StepState::Started),
            kind: EventKind::StepStarted,
            message,
            transcript: &[],
        });
        if let Err(e) = store.step_events(id, &self.device, &records).await {
            tracing::error!(device = %self.device, error = %e, "cannot record a step; stopping this device");
            return Err(Stop::Abort);
        }
        lock(&self.step_began).insert(step, Instant::now());
        Ok(())
    }

    fn reload_seen(&self, seen: ReloadSeen, at: Instant) {
        let mut sent = lock(&self.reload_sent);
        if let Some(since) = *sent {
            self.ctx.env.metrics.reload_seen(
                seen,
                self.platform,
                at.saturating_duration_since(since),
            );
        }
        if seen == ReloadSeen::Up {
            *sent = None;
        }
    }

    async fn may_change_now(&self) -> bool {
        let windows = self.ctx.playbook.schedule.windows();
        policy::changes(&windows, self.ctx.env.clock.now()) == Changes::Allowed
    }

    async fn wait_until_changes_allowed(&self) -> Result<(), Stop> {
        self.wait_for_window().await
    }

    async fn config_backup(
        &self,
        moment: crate::configs::Moment,
        running: &str,
        startup: Option<&str>,
    ) -> Result<String, String> {
        self.ctx
            .store
            .keep_configs(&self.ctx.rollout_id, &self.device, moment, running, startup)
            .await
    }
}

impl Recorder<'_> {
    /// Record every progress event the driver has sent so far.
    async fn drain(&self) {
        let ended = self.take_ended().await;
        self.write_ended(ended).await;
    }

    /// The step ends the driver has reported so far, measured, each with the transcript lines
    /// kept until it (a start is recorded by the gate, before the step runs).
    async fn take_ended(&self) -> Vec<StepEnd> {
        let mut rx = self.events.lock().await;
        let mut ended = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if ev.status == StepStatus::Started {
                continue;
            }
            self.measure(&ev);
            ended.push(StepEnd {
                step: ev.step,
                kind: EventKind::of_step(ev.status),
                state: (ev.status == StepStatus::Done).then_some(StepState::Done),
                message: ev.message,
                lines: self.transcript.take(),
            });
        }
        ended
    }

    /// Record step ends, all in one transaction.
    async fn write_ended(&self, ended: Vec<StepEnd>) {
        let records: Vec<StepRecord<'_>> = ended.iter().map(StepEnd::record).collect();
        if let Err(e) = self
            .ctx
            .store
            .step_events(&self.ctx.rollout_id, &self.device, &records)
            .await
        {
            tracing::error!(device = %self.device, error = %e, "cannot record a step's end");
        }
    }

    /// A step's end: its duration since it passed the gate, and the moment a reload went out.
    /// A step the gate stopped never began, and is not measured.
    fn measure(&self, ev: &StepEvent) {
        let Some(began) = lock(&self.step_began).remove(&ev.step) else {
            return;
        };
        let result = match ev.status {
            StepStatus::Done => StepResult::Done,
            StepStatus::Failed => StepResult::Failed,
            StepStatus::Started | StepStatus::Skipped => return,
        };
        self.ctx.env.metrics.step_ended(
            ev.step.as_str(),
            self.platform,
            result,
            ev.at.saturating_duration_since(began),
        );
        if result == StepResult::Done
            && (is_reload_step(ev.step.as_str()) || ev.step == Step::RollbackReload)
        {
            *lock(&self.reload_sent) = Some(ev.at);
        }
    }

    /// Keep the transcript lines no step's end has taken yet.
    async fn flush_transcript(&self) {
        let lines = self.transcript.take();
        if let Err(e) = self
            .ctx
            .store
            .add_transcript(&self.ctx.rollout_id, &self.device, &lines)
            .await
        {
            tracing::warn!(device = %self.device, error = %e, "cannot keep the transcript");
        }
    }

    /// Hold the device, staged, until a maintenance window opens; the job shows as
    /// `staged (waits for window …)` meanwhile.
    async fn wait_for_window(&self) -> Result<(), Stop> {
        let store = &*self.ctx.store;
        let env = &self.ctx.env;
        let id = &self.ctx.rollout_id;
        let windows = self.ctx.playbook.schedule.windows();
        let mut announced = None;
        loop {
            let next = match policy::changes(&windows, env.clock.now()) {
                Changes::WaitFor(next) => next,
                Changes::Never => return Err(Stop::Abort),
                Changes::Allowed => {
                    if announced.is_some() {
                        store
                            .event(
                                id,
                                &self.device,
                                EventKind::WindowOpened,
                                None,
                                "the maintenance window is open: the changes start",
                                None,
                            )
                            .await;
                    }
                    return Ok(());
                }
            };
            if announced.as_ref() != Some(&next.at) {
                let text = next.to_string();
                match store
                    .record_wait_for_window(
                        id,
                        &self.device,
                        &text,
                        &format!(
                            "staged: image copied and verified; the boot change, save and reload wait for the maintenance window opening {text}"
                        ),
                        &json!({"opens_at": next.at.to_string(), "opens": text, "window": next.window.to_string()}),
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(device = %self.device, error = %e, "cannot record the wait for the window; stopping this device");
                        return Err(Stop::Abort);
                    }
                }
                announced = Some(next.at);
            }
            tokio::select! {
                _ = env.clock.sleep_until(next.at) => {}
                _ = store.changed(id) => {
                    if !store.may_go_on(id, None).await {
                        self.cancel.cancel();
                        return Err(if env.shutdown.is_requested() { Stop::Shutdown } else { Stop::Abort });
                    }
                }
            }
        }
    }
}

async fn execute(
    ctx: &JobContext,
    job: &DeviceJob,
    prepared: &Prepared,
) -> Result<UpgradeOutcome, Ended> {
    let plan = &prepared.plan;
    let transcript = Transcript::new(TranscriptLimits::default());
    let target = &Target {
        transcript: Some(transcript.clone()),
        ..prepared.target.clone()
    };
    let store = &*ctx.store;
    let id = &ctx.rollout_id;
    if let Err(e) = store.start_job_attempt(id, &job.device).await {
        return Err(Ended::Failed {
            reason: "internal".into(),
            message: format!("internal: cannot record the device's start: {e}"),
            reached_reload: false,
            copy_transport: false,
        });
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder {
        ctx,
        device: job.device.clone(),
        cancel: CancellationToken::new(),
        events: tokio::sync::Mutex::new(events_rx),
        changing: AtomicBool::new(false),
        claims: prepared.claims.clone(),
        claimed: std::sync::Mutex::new(Vec::new()),
        transcript,
        platform: prepared.target.platform.as_str(),
        step_began: std::sync::Mutex::default(),
        reload_sent: std::sync::Mutex::default(),
    };
    let shutdown = ctx.env.shutdown.token.clone();
    let cancel = recorder.cancel.clone();
    let stop_on_shutdown = {
        let cancel = cancel.clone();
        async move {
            shutdown.cancelled().await;
            cancel.cancel();
        }
    };
    let work = async {
        if job.rollback_sent {
            store
                .event(
                    id,
                    &job.device,
                    EventKind::Resumed,
                    Some("rollback_check"),
                    "the rollback reload was already sent before the restart: waiting for the device and checking the old image, no second rollback reload",
                    None,
                )
                .await;
            let recorded_at = step_recorded_at(store, id, &job.device, |s| {
                s == Step::RollbackReload.as_str()
            })
            .await;
            Err(device::resume_rollback(
                target,
                plan,
                events_tx.clone(),
                Some(&recorder),
                recorded_at,
                cancel.clone(),
            )
            .await)
        } else if job.reload_sent {
            store
                .event(
                    id,
                    &job.device,
                    EventKind::Resumed,
                    Some("wait_back"),
                    "the reload was already sent before the restart: waiting for the device and checking it, no second reload",
                    None,
                )
                .await;
            let recorded_at = reload_recorded_at(store, id, &job.device).await;
            let resumed = device::resume_after_reload(
                target,
                plan,
                events_tx.clone(),
                Some(&recorder),
                recorded_at,
                cancel.clone(),
            )
            .await;
            match resumed {
                device::Resumed::Done(result) => result,
                device::Resumed::ReloadNeverSent { message } => {
                    // fleetup stopped between recording the reload and sending it. The device
                    // has not restarted since, so sending the reload now is its first.
                    tracing::warn!(rollout = %id, device = %job.device, "{message}");
                    // Should this write fail, a later restart only takes the same careful path
                    // again: wait the reload timeout, then look at the uptime.
                    if let Err(e) = store.clear_reload_sent(id, &job.device).await {
                        tracing::warn!(rollout = %id, device = %job.device, error = %e,
                            "cannot record that the reload was never sent");
                    }
                    store
                        .event(
                            id,
                            &job.device,
                            EventKind::ReloadNotSent,
                            Some("wait_back"),
                            &format!("{message}; upgrading it again from the start"),
                            None,
                        )
                        .await;
                    device::upgrade_gated(target, plan, events_tx, Some(&recorder), cancel.clone())
                        .await
                }
            }
        } else {
            device::upgrade_gated(target, plan, events_tx, Some(&recorder), cancel.clone()).await
        }
    };
    let result = tokio::select! {
        r = work => r,
        _ = stop_on_shutdown => return Err(Ended::Interrupted),
    };
    recorder.drain().await;
    recorder.flush_transcript().await;
    let pin_key = |key: &str| {
        let db = ctx.store.clone();
        let name = job.device.clone();
        let known = target.known_host_key.clone();
        let key = key.to_string();
        async move {
            if known.is_none()
                && !key.is_empty()
                && let Err(e) = db.set_host_key(&name, &key).await
            {
                tracing::warn!(device = %name, error = %e, "cannot pin the host key");
            }
        }
    };
    match result {
        Ok(outcome) => {
            pin_key(&outcome.host_key).await;
            Ok(outcome)
        }
        Err(failure) => {
            if let Some(key) = &failure.host_key {
                pin_key(key).await;
            }
            Err(classify(ctx, id, failure).await)
        }
    }
}

/// A lock whose holder panicked still holds good data: every writer leaves it whole.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// When this device's reload was recorded (the start of its `reload` or `install` step).
async fn reload_recorded_at(store: &dyn JobStore, id: &str, device: &str) -> Option<SystemTime> {
    step_recorded_at(store, id, device, super::model::is_reload_step).await
}

/// When the last step of this device that `is` picks was recorded as started.
async fn step_recorded_at(
    store: &dyn JobStore,
    id: &str,
    device: &str,
    is: impl Fn(&str) -> bool,
) -> Option<SystemTime> {
    let events = store.device_events(id, device).await.ok()?;
    let sent = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::StepStarted && e.step.as_deref().is_some_and(&is))?;
    let at: jiff::Timestamp = sent.at.parse().ok()?;
    SystemTime::try_from(at).ok()
}

async fn classify(ctx: &JobContext, id: &str, f: UpgradeFailure) -> Ended {
    if f.reason == FailureReason::Cancelled {
        if ctx.env.shutdown.is_requested() {
            return Ended::Interrupted;
        }
        let aborted = ctx
            .store
            .rollout_view(id)
            .await
            .map(|r| r.abort_requested)
            .unwrap_or(true);
        if !aborted {
            return Ended::Requeued(format!(
                "stopped by the halt before {}; it will run again on retry",
                f.step
            ));
        }
        return Ended::Aborted(f.to_string());
    }
    if f.rolled_back {
        return Ended::RolledBack {
            reason: f.reason.as_str().to_string(),
            message: f.summary(),
        };
    }
    Ended::Failed {
        reason: f.reason.as_str().to_string(),
        message: f.summary(),
        reached_reload: f.reload_sent || super::model::is_reload_step(f.step.as_str()),
        copy_transport: f.step == crate::device::Step::Copy
            && matches!(
                f.reason,
                crate::device::FailureReason::Timeout
                    | crate::device::FailureReason::TransferFailed
            ),
    }
}
