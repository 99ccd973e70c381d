//! One device's part in a rollout: the driver's upgrade procedure, with every step recorded
//! before it starts, pauses and maintenance windows honoured between steps, and a resume path
//! that never sends a second reload.

use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::model::{DeviceJob, JobState, StepState};
use crate::device::{
    self, CopySource, FailureReason, Step, StepEvent, StepGate, StepStatus, Stop, Target, Transfer,
    UpgradeFailure, UpgradeOptions, UpgradeOutcome, UpgradePlan, UpgradeResult,
};
use crate::inventory::Secret;
use crate::playbook::{self, Playbook, Share, TransferProtocol};

pub(crate) struct JobContext {
    pub engine: Engine,
    pub rollout_id: String,
    pub playbook: Playbook,
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
    let engine = &ctx.engine;
    let id = &ctx.rollout_id;
    let name = job.device.clone();
    let outcome = match prepare(ctx, &job).await {
        Ok((target, plan, _ftp_account)) => execute(ctx, &job, &target, &plan).await,
        Err(message) => Err(Ended::Failed {
            reason: "configuration".into(),
            message: format!("configuration: {message}"),
        }),
    };
    let db = engine.db();
    let (state, new_version, error, result) = match outcome {
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
            engine
                .event(
                    id,
                    Some(&name),
                    "device_succeeded",
                    None,
                    &format!("{note}; now running {}", version.as_deref().unwrap_or("?")),
                    Some(json!({"version": version})),
                )
                .await;
            (state, version, None, JobOutcome::Succeeded)
        }
        Err(Ended::Interrupted) => return JobOutcome::Interrupted,
        Err(Ended::Requeued(message)) => {
            engine
                .event(id, Some(&name), "device_requeued", None, &message, None)
                .await;
            if let Err(e) = db.requeue_job(id, &name).await {
                tracing::error!(device = %name, error = %e, "cannot put a device back in line");
            }
            return JobOutcome::Aborted;
        }
        Err(Ended::Aborted(message)) => {
            engine
                .event(id, Some(&name), "device_aborted", None, &message, None)
                .await;
            (JobState::Aborted, None, Some(message), JobOutcome::Aborted)
        }
        Err(Ended::Failed { reason, message }) => {
            engine
                .event(
                    id,
                    Some(&name),
                    "device_failed",
                    None,
                    &message,
                    Some(json!({"reason": reason})),
                )
                .await;
            (JobState::Failed, None, Some(message), JobOutcome::Failed)
        }
    };
    if let Err(e) = db
        .finish_job(id, &name, state, new_version.as_deref(), error.as_deref())
        .await
    {
        tracing::error!(device = %name, error = %e, "cannot record the end of a device job");
    }
    result
}

enum Ended {
    Interrupted,
    /// Stopped by a halt at a safe point: back to pending, for a retry.
    Requeued(String),
    Aborted(String),
    Failed {
        reason: String,
        /// The device's error as recorded and shown: what failed, why, and what was left.
        message: String,
    },
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

async fn prepare(
    ctx: &JobContext,
    job: &DeviceJob,
) -> Result<(Target, UpgradePlan, Option<FtpAccount>), String> {
    let engine = &ctx.engine;
    let inner = engine.inner();
    let device = inner
        .db
        .device_by_name(&job.device)
        .await
        .map_err(|e| format!("device {} is no longer in the inventory ({e})", job.device))?;
    let image = inner
        .images
        .get(&job.image)
        .await
        .map_err(|e| format!("image {}: {e}", job.image))?;
    let pb = &ctx.playbook;
    let servers = &inner.servers;
    let site = device.spec.site.as_deref();
    let mut account = None;
    let (transfer, listen) = match pb.transfer.protocol {
        TransferProtocol::Tftp => (Transfer::Tftp, servers.tftp),
        TransferProtocol::Ftp => {
            let Some(credentials) = &servers.ftp_credentials else {
                return Err("the playbook asks for FTP but the FTP server is off".into());
            };
            // Letters and digits only: IOS parses `:` `@` `/` in URL credentials itself.
            let user = format!("fu{:08x}", rand::random::<u32>());
            let password = crate::ftp::generate_password();
            account = Some(FtpAccount {
                credentials: credentials.clone(),
                token: credentials.add_temporary(&user, &password),
            });
            (
                Transfer::Ftp {
                    username: user,
                    password: Secret(password),
                },
                servers.ftp,
            )
        }
    };
    let Some(listen) = listen else {
        return Err(format!(
            "the playbook asks for {} but that server is off in this service",
            pb.transfer.protocol.as_str()
        ));
    };
    let server = match pb.transfer.server_for_site(site) {
        Some(s) => s.to_string(),
        None if !listen.ip().is_unspecified() => listen.ip().to_string(),
        None => {
            return Err(format!(
                "transfer.server is not set and the {} server listens on every address: say in the playbook at which address devices reach fleetup",
                pb.transfer.protocol.as_str()
            ));
        }
    };
    let default_port = match pb.transfer.protocol {
        TransferProtocol::Tftp => 69,
        TransferProtocol::Ftp => 21,
    };
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
        ..device::Timeouts::default()
    };
    let margin = match pb.checks.pre.free_space_margin {
        Share::Percent(p) => p.clamp(0.0, 100.0) as u8,
        Share::Count(n) => n.min(100) as u8,
    };
    let plan = UpgradePlan {
        image: image.file_name.clone(),
        md5: image.md5.clone(),
        size: image.size,
        source: CopySource {
            transfer,
            server,
            port: (listen.port() != default_port).then_some(listen.port()),
            directory: String::new(),
        },
        expected_version: image.version.clone(),
        options: UpgradeOptions {
            skip_if_current: pb.options.skip_if_current,
            stage_only: pb.options.stage_only,
            delete_old_image: pb.options.delete_old_image,
            free_space_margin_percent: margin,
            pre_checks: pb.checks.pre.commands.clone(),
            post_checks: pb.checks.post.commands.clone(),
            tftp_blocksize: pb.transfer.tftp_blocksize.as_ref().map(|b| b.value),
        },
        timeouts,
    };
    let target = Target::from_device(&device)?;
    Ok((target, plan, account))
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
}

#[async_trait]
impl StepGate for Recorder<'_> {
    async fn before(&self, step: Step, message: &str) -> Result<(), Stop> {
        self.drain().await;
        let engine = &self.ctx.engine;
        let id = &self.ctx.rollout_id;
        if engine.db().rollout(id).await.is_ok_and(|r| r.paused) {
            engine
                .event(
                    id,
                    Some(&self.device),
                    "held",
                    Some(step.as_str()),
                    "the rollout is paused: this step waits for resume",
                    None,
                )
                .await;
        }
        if !engine.may_go_on(id).await {
            self.cancel.cancel();
            return Err(if engine.shutdown().is_requested() {
                Stop::Shutdown
            } else {
                Stop::Abort
            });
        }
        if matches!(step, Step::Reload | Step::Install) {
            self.wait_for_window().await?;
        }
        // Written before the step runs: after a crash, `reload_sent` tells the truth.
        if let Err(e) = engine
            .step_event(
                id,
                &self.device,
                step.as_str(),
                Some(StepState::Started),
                "step_started",
                message,
            )
            .await
        {
            tracing::error!(device = %self.device, error = %e, "cannot record a step; stopping this device");
            return Err(Stop::Abort);
        }
        Ok(())
    }
}

impl Recorder<'_> {
    /// Record every progress event the driver has sent so far.
    async fn drain(&self) {
        let mut rx = self.events.lock().await;
        while let Ok(ev) = rx.try_recv() {
            self.record(ev).await;
        }
    }

    async fn record(&self, ev: StepEvent) {
        if ev.status == StepStatus::Started {
            return;
        }
        let kind = match ev.status {
            StepStatus::Done => "step_done",
            StepStatus::Skipped => "step_skipped",
            StepStatus::Failed => "step_failed",
            StepStatus::Started => "step_started",
        };
        let state = (ev.status == StepStatus::Done).then_some(StepState::Done);
        if let Err(e) = self
            .ctx
            .engine
            .step_event(
                &self.ctx.rollout_id,
                &self.device,
                ev.step.as_str(),
                state,
                kind,
                &ev.message,
            )
            .await
        {
            tracing::error!(device = %self.device, error = %e, "cannot record a step's end");
        }
    }

    async fn wait_for_window(&self) -> Result<(), Stop> {
        let engine = &self.ctx.engine;
        let id = &self.ctx.rollout_id;
        let windows = self.ctx.playbook.schedule.windows();
        let clock = &engine.inner().clock;
        let mut announced = false;
        loop {
            let now = clock.now();
            if playbook::any_contains(&windows, now) {
                return Ok(());
            }
            let Some(next) = playbook::next_open(&windows, now) else {
                return Err(Stop::Abort);
            };
            if !announced {
                engine
                    .event(
                        id,
                        Some(&self.device),
                        "waiting_window",
                        Some("reload"),
                        &format!(
                            "staged; the reload waits for the maintenance window opening at {next}"
                        ),
                        Some(json!({"opens_at": next.to_string()})),
                    )
                    .await;
                announced = true;
            }
            tokio::select! {
                _ = clock.sleep_until(next) => {}
                _ = engine.changed(id) => {
                    if !engine.may_go_on(id).await {
                        self.cancel.cancel();
                        return Err(if engine.shutdown().is_requested() { Stop::Shutdown } else { Stop::Abort });
                    }
                }
            }
        }
    }
}

async fn execute(
    ctx: &JobContext,
    job: &DeviceJob,
    target: &Target,
    plan: &UpgradePlan,
) -> Result<UpgradeOutcome, Ended> {
    let engine = &ctx.engine;
    let id = &ctx.rollout_id;
    if let Err(e) = engine.db().start_job_attempt(id, &job.device).await {
        return Err(Ended::Failed {
            reason: "internal".into(),
            message: format!("internal: cannot record the device's start: {e}"),
        });
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder {
        ctx,
        device: job.device.clone(),
        cancel: CancellationToken::new(),
        events: tokio::sync::Mutex::new(events_rx),
    };
    let shutdown = engine.shutdown().token.clone();
    let cancel = recorder.cancel.clone();
    let stop_on_shutdown = {
        let cancel = cancel.clone();
        async move {
            shutdown.cancelled().await;
            cancel.cancel();
        }
    };
    let work = async {
        if job.reload_sent {
            engine
                .event(id, Some(&job.device), "resumed", Some("wait_back"), "the reload was already sent before the restart: waiting for the device and checking it, no second reload", None)
                .await;
            let recorded_at = reload_recorded_at(engine, id, &job.device).await;
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
                    if let Err(e) = engine.db().clear_reload_sent(id, &job.device).await {
                        tracing::warn!(rollout = %id, device = %job.device, error = %e,
                            "cannot record that the reload was never sent");
                    }
                    engine
                        .event(
                            id,
                            Some(&job.device),
                            "reload_not_sent",
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
    let pin_key = |key: &str| {
        let db = engine.db().clone();
        let name = job.device.clone();
        let known = target.known_host_key.clone();
        let key = key.to_string();
        async move {
            if known.is_none()
                && !key.is_empty()
                && let Err(e) = db.set_host_key(&name, Some(&key)).await
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
            Err(classify(engine, id, failure).await)
        }
    }
}

/// When this device's reload was recorded (the start of its `reload` or `install` step).
async fn reload_recorded_at(engine: &Engine, id: &str, device: &str) -> Option<SystemTime> {
    let events = engine.db().device_events(id, device).await.ok()?;
    let sent = events.iter().rev().find(|e| {
        e.kind == "step_started" && e.step.as_deref().is_some_and(super::model::is_reload_step)
    })?;
    let at: jiff::Timestamp = sent.at.parse().ok()?;
    SystemTime::try_from(at).ok()
}

async fn classify(engine: &Engine, id: &str, f: UpgradeFailure) -> Ended {
    if f.reason == FailureReason::Cancelled {
        if engine.shutdown().is_requested() {
            return Ended::Interrupted;
        }
        let aborted = engine
            .db()
            .rollout(id)
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
    Ended::Failed {
        reason: f.reason.as_str().to_string(),
        message: f.summary(),
    }
}
