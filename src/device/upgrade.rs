//! The single-device upgrade, done the way a careful engineer does it by hand.
//!
//! Safety rules, in the order they apply:
//! 0. a device that runs a later release than the target is left untouched unless the plan
//!    allows a downgrade (versions in Cisco's order, [`super::version`]);
//! 1. the image is copied only when it is not already on flash with the right MD5, and only
//!    when it fits;
//! 2. `boot system` changes only after the device itself verified the MD5;
//! 3. the new image goes first and the running image stays as the fallback second entry;
//! 4. any failure after the boot variable changed (and before the reload) restores it, and
//!    a device that came back on its old image gets its old boot variable back;
//! 5. the old image is deleted (optional) only after the device runs the new one, and the
//!    fallback entry pointing at it is removed first.
//!
//! Progress goes out as [`StepEvent`]s; the caller (rollout engine, CLI) persists or shows them.
//! A caller that must act *before* a step runs (the rollout engine records each step before
//! it starts, holds steps while paused and the reload until a maintenance window opens) passes
//! a [`StepGate`]. A gate may stop the upgrade before any step up to the reload; after the
//! reload it can only delay, never stop: a reloading device is always waited for.

use std::fmt;
use std::time::SystemTime;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::copy::{CopySource, Transfer, is_transport_failure};

mod members;
mod rollback;
use super::rules::{is_downgrade, kickstart_to_install, post_check, reason_for, target_version};
use super::state::{Comparison, Observed};
use super::{
    DeviceError, DeviceFacts, Driver, FilePresence, RestartEvidence, Session, Target, Timeouts,
    file_name, read_facts, wait_back_watched,
};
use crate::inventory::Facts;
pub use rollback::resume_rollback;

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Do nothing when the device already runs the image.
    pub skip_if_current: bool,
    /// Copy and verify only: no boot change, no reload.
    pub stage_only: bool,
    /// Delete the previous image once the new one runs.
    pub delete_old_image: bool,
    /// Free space to keep beyond the image, in percent of the image size.
    pub free_space_margin_percent: u8,
    /// Show commands checked before any change.
    pub(crate) pre_checks: Vec<Check>,
    /// Show commands checked once the device runs the new image.
    pub(crate) post_checks: Vec<Check>,
    /// State taken before any change that must hold once the device is back
    /// (`checks.compare`).
    pub(crate) compare: Vec<Comparison>,
    /// `ip tftp blocksize` for the copy (IOS and IOS-XE; TFTP only): set before the copy, put
    /// back as it was right after it, so the saved configuration does not change.
    pub tftp_blocksize: Option<u16>,
    /// Install an image older than the running one. Off, a device whose running version
    /// compares later than the target fails with [`FailureReason::Downgrade`], untouched.
    pub allow_downgrade: bool,
    /// After a failed post-check on the new image, go back to the old one (bundle mode and
    /// NX-OS): the old image first in the boot variable, save, one more reload.
    pub rollback: bool,
    /// What to do when the running configuration differs from the startup one before the
    /// first change (`checks.pre.unsaved_config`).
    pub unsaved_config: UnsavedConfig,
    /// `strategy.issu`: upgrade in service (IOS-XE `install activate issu`, NX-OS `install all
    /// … non-disruptive`) where the device can.
    pub issu: Issu,
}

/// `strategy.issu`: whether a device with two supervisors is upgraded in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issu {
    /// A normal install and reload.
    #[default]
    Never,
    /// In service where the device's check allows it; otherwise a normal reload, and the
    /// events say why.
    Preferred,
    /// In service or not at all: a device whose check says the upgrade would be disruptive
    /// fails with `issu_not_possible` before any change.
    Required,
}

/// `checks.pre.unsaved_config`: what happens when, before the first change, the running
/// configuration differs from the startup one (volatile header lines left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsavedConfig {
    /// The device fails with reason `unsaved_config` before any change.
    Fail,
    /// An event says so and the upgrade goes on (its own save writes them too). Both
    /// configurations are kept as backups first, so the startup one is not lost.
    #[default]
    Warn,
    /// `write memory` first; the event says so.
    Save,
}

impl UpgradePlan {
    /// The copy sources in the order they are tried.
    pub(crate) fn sources(&self) -> impl Iterator<Item = &CopySource> {
        std::iter::once(&self.source).chain(&self.fallback)
    }

    /// The files copied: the image, and the kickstart when there is one.
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.image.as_str()).chain(self.kickstart.iter().map(|k| k.image.as_str()))
    }
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            skip_if_current: true,
            stage_only: false,
            delete_old_image: false,
            free_space_margin_percent: 0,
            pre_checks: Vec::new(),
            post_checks: Vec::new(),
            compare: Vec::new(),
            tftp_blocksize: None,
            allow_downgrade: false,
            rollback: false,
            unsaved_config: UnsavedConfig::default(),
            issu: Issu::default(),
        }
    }
}

/// A show command whose output must (or must not) contain a text, before any change or
/// after the device is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    pub command: String,
    pub must_contain: Option<String>,
    pub must_not_contain: Option<String>,
}

/// The kickstart image of an NX-OS device that boots a kickstart and a system image (Nexus
/// 3000 before 7.0(3), 5000, 6000, 7000): copied and verified like the image, then installed
/// with it by `install all kickstart K system S`.
#[derive(Debug, Clone)]
pub struct KickstartImage {
    pub image: crate::images::ImageName,
    pub md5: crate::images::ImageMd5,
    pub size: u64,
}

/// What to install on one device.
#[derive(Debug, Clone)]
pub struct UpgradePlan {
    /// The image file name, as it will be named on flash.
    pub image: crate::images::ImageName,
    /// What `verify /md5` must print.
    pub md5: crate::images::ImageMd5,
    pub size: u64,
    /// The kickstart to install with the image on a device that runs one; a device that boots
    /// one image ignores it.
    pub kickstart: Option<KickstartImage>,
    pub source: CopySource,
    /// Sources tried in order after `source` when a copy fails for a transport reason
    /// (`transfer.protocol: [https, ftp, tftp]`).
    pub fallback: Vec<CopySource>,
    /// The image the device ran before, as last known (the inventory's facts): where a
    /// rollback goes when the device's own `show version` of this run is not at hand (after a
    /// restart of fleetup).
    pub previous_image: Option<String>,
    /// The version the device ran before, as last known: what an IOS-XE device (which boots
    /// `packages.conf` before and after) must run again after an `install abort`.
    pub previous_version: Option<String>,
    /// IOS-XE: `install commit` was recorded for this device before a restart of the caller:
    /// it is never aborted.
    pub committed: bool,
    /// The version `show version` must report afterwards, when known; otherwise the running
    /// image file name is compared.
    pub expected_version: Option<String>,
    pub options: UpgradeOptions,
    pub timeouts: Timeouts,
}

/// The steps of an upgrade, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Connect,
    Facts,
    PreCheck,
    FreeSpace,
    FilePresent,
    Copy,
    VerifyMd5,
    SetBoot,
    Save,
    Reload,
    Install,
    WaitBack,
    PostCheck,
    RestoreBoot,
    Cleanup,
    /// IOS-XE install mode: `install commit` once the device passed its checks.
    Commit,
    /// `options.rollback`: the old image first in the boot variable, saved.
    Rollback,
    /// The reload back to the old image: recorded before it is sent, never sent twice.
    RollbackReload,
    /// Waiting for the device and checking that it runs the old image again.
    RollbackCheck,
    /// Read (and keep) the running and startup configurations: before the first change, and
    /// the running one again once the device is back.
    ConfigBackup,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::Facts => "facts",
            Step::PreCheck => "pre_check",
            Step::FreeSpace => "free_space",
            Step::FilePresent => "file_present",
            Step::Copy => "copy",
            Step::VerifyMd5 => "verify_md5",
            Step::SetBoot => "set_boot",
            Step::Save => "save",
            Step::Reload => "reload",
            Step::Install => "install",
            Step::WaitBack => "wait_back",
            Step::PostCheck => "post_check",
            Step::RestoreBoot => "restore_boot",
            Step::Cleanup => "cleanup",
            Step::Commit => "commit",
            Step::Rollback => "rollback",
            Step::RollbackReload => "rollback_reload",
            Step::RollbackCheck => "rollback_check",
            Step::ConfigBackup => "config_backup",
        }
    }

    /// The steps that change what the device boots: only inside a maintenance window. Copy
    /// and verification may run before it opens.
    pub(crate) fn changes_the_device(self) -> bool {
        matches!(
            self,
            Step::SetBoot | Step::Save | Step::Install | Step::Reload
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Started,
    Done,
    Skipped,
    Failed,
}

/// One line of progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvent {
    pub device: String,
    pub step: Step,
    pub status: StepStatus,
    pub message: String,
    /// When it happened: a caller that records events later still knows how long a step took.
    pub at: tokio::time::Instant,
}

/// Why an upgrade failed, in the words an operator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// A command or the file transfer did not finish in time.
    Timeout,
    /// The copied image's MD5 is not the expected one.
    CorruptImage,
    /// Not enough flash for the image.
    FlashFull,
    AuthFailed,
    HostKeyChanged,
    Unreachable,
    /// The SSH session dropped while the image was being copied.
    ConnectionLostMidCopy,
    ConnectionLost,
    /// The file server did not serve the image (missing file, refused login).
    TransferFailed,
    /// The device refused a command or printed something unexpected.
    DeviceRejected,
    NeverCameBack,
    CameBackOnOldImage,
    /// A check command of the playbook did not show what it must.
    CheckFailed,
    /// The device runs a later version than the target and the playbook does not allow a
    /// downgrade (`options.allow_downgrade`).
    Downgrade,
    Cancelled,
    /// The running configuration had unsaved changes and `checks.pre.unsaved_config` is
    /// `fail`: nothing was changed.
    UnsavedConfig,
    /// The configuration backup could not be read or kept: nothing was changed.
    BackupFailed,
    /// A stack member or the standby supervisor is not ready: before any change (not Ready,
    /// another version, not hot), or not back, Ready and on the new version after the reload.
    /// The message names the member or supervisor.
    MembersNotReady,
    /// `strategy.issu: required` and the device says the upgrade would be disruptive (or it
    /// cannot upgrade in service at all): nothing was changed.
    IssuNotPossible,
}

impl FailureReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::CorruptImage => "corrupt_image",
            FailureReason::FlashFull => "flash_full",
            FailureReason::AuthFailed => "auth_failed",
            FailureReason::HostKeyChanged => "host_key_changed",
            FailureReason::Unreachable => "unreachable",
            FailureReason::ConnectionLostMidCopy => "connection_lost_mid_copy",
            FailureReason::ConnectionLost => "connection_lost",
            FailureReason::TransferFailed => "transfer_failed",
            FailureReason::DeviceRejected => "device_rejected",
            FailureReason::NeverCameBack => "never_came_back",
            FailureReason::CameBackOnOldImage => "came_back_on_old_image",
            FailureReason::CheckFailed => "check_failed",
            FailureReason::Downgrade => "downgrade",
            FailureReason::Cancelled => "cancelled",
            FailureReason::UnsavedConfig => "unsaved_config",
            FailureReason::BackupFailed => "backup_failed",
            FailureReason::MembersNotReady => "members_not_ready",
            FailureReason::IssuNotPossible => "issu_not_possible",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{device}: {}", self.summary())]
pub struct UpgradeFailure {
    pub device: String,
    pub step: Step,
    pub reason: FailureReason,
    pub message: String,
    /// `Some(true)` when the boot variable had been changed and was restored;
    /// `Some(false)` when restoring it failed too (the operator must check the device).
    pub boot_restored: Option<bool>,
    /// Whether the reload was sent: a resumed job must then only wait and check.
    pub reload_sent: bool,
    /// The device failed on the new image and runs the old one again (`options.rollback`).
    pub rolled_back: bool,
    /// The host key seen at first contact, for the caller to pin.
    pub host_key: Option<String>,
}

impl UpgradeFailure {
    /// What failed, without the device's name: for places that name the device already (its
    /// row in a rollout, the CLI's device line).
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} failed ({}): {}{}",
            self.step,
            self.reason,
            self.message,
            boot_note(self.boot_restored)
        )
    }
}

fn boot_note(restored: Option<bool>) -> &'static str {
    match restored {
        Some(true) => "; the boot variable was restored",
        Some(false) => "; RESTORING THE BOOT VARIABLE FAILED: check `show boot` on the device",
        None => "",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeResult {
    Upgraded,
    /// The device already ran the image (`skip_if_current`).
    AlreadyCurrent,
    /// Copied and verified, boot untouched (`stage_only`).
    Staged,
}

#[derive(Debug, Clone)]
pub struct UpgradeOutcome {
    pub result: UpgradeResult,
    pub before: Facts,
    pub after: Facts,
    /// The host key seen (to pin on first use).
    pub host_key: String,
}

/// Why a gate stopped an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The operator aborted (or the rollout halted): stop at this safe point.
    Abort,
    /// The service is shutting down; the caller resumes later.
    Shutdown,
}

/// Asked before each step starts; the step waits for the answer.
#[async_trait::async_trait]
pub trait StepGate: Send + Sync {
    async fn before(&self, step: Step, message: &str) -> Result<(), Stop>;

    /// Whether the device may be changed now (boot variable, save, install, reload). Until it
    /// may, only the copy and its verification run.
    async fn may_change_now(&self) -> bool {
        true
    }

    /// What the device ran when the upgrade began (its `show version`), told before any
    /// change: where a rollback goes back to, even after a restart of the caller.
    async fn facts_read(&self, _version: &str, _image: Option<&str>) {}

    /// Wait until the device may be changed (a maintenance window opens). The driver has
    /// closed its session first: a wait of hours would outlast the device's exec-timeout.
    async fn wait_until_changes_allowed(&self) -> Result<(), Stop> {
        Ok(())
    }

    /// Keep a configuration backup: the running (and, before the change, the startup)
    /// configuration as the device printed it. Returns what to say in the step's event (never
    /// the text: it holds secrets), or why it could not be kept; before the first change
    /// that stops the upgrade. Without a gate nothing is kept.
    async fn config_backup(
        &self,
        moment: crate::configs::Moment,
        running: &str,
        startup: Option<&str>,
    ) -> Result<String, String> {
        let _ = (moment, running, startup);
        Ok("not kept (no rollout)".into())
    }

    /// Keep what `checks.compare` saw before the first change (JSON), so that the comparison
    /// after the reload still happens if the caller restarts in between. An error stops the
    /// upgrade before any change.
    async fn compare_baseline_taken(&self, baseline: &str) -> Result<(), String> {
        let _ = baseline;
        Ok(())
    }

    /// What [`Self::compare_baseline_taken`] kept, read back by a resumed upgrade.
    async fn compare_baseline(&self) -> Option<String> {
        None
    }

    /// After a reload (or a rollback's), the device was `seen` down or back up `at` that
    /// moment: how soon a reload is detected. Told as it happens, never awaited.
    fn reload_seen(&self, seen: ReloadSeen, at: tokio::time::Instant) {
        let _ = (seen, at);
    }
}

/// What the wait after a reload saw of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadSeen {
    /// It stopped answering: the first probe refused or unanswered, or no shell to be had.
    Down,
    /// It answered again and logged in, with proof that it restarted.
    Up,
}

impl ReloadSeen {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReloadSeen::Down => "down",
            ReloadSeen::Up => "up",
        }
    }
}

struct Run<'a> {
    target: &'a Target,
    plan: &'a UpgradePlan,
    /// The plan's kickstart, once `show version` said the device runs one.
    kickstart: Option<&'a KickstartImage>,
    events: UnboundedSender<StepEvent>,
    gate: Option<&'a dyn StepGate>,
    host_key: Option<String>,
    /// What `checks.compare` saw before the first change, one per comparison.
    baseline: Vec<Observed>,
    /// Stack members or two supervisors, as found before the first change.
    topology: members::Topology,
    /// The install runs in service (`strategy.issu` and the device's check allowed it).
    issu: bool,
}

impl<'a> Run<'a> {
    fn new(
        target: &'a Target,
        plan: &'a UpgradePlan,
        events: UnboundedSender<StepEvent>,
        gate: Option<&'a dyn StepGate>,
    ) -> Run<'a> {
        // The transcript must know every secret before the first line is kept.
        if let Some(t) = &target.transcript {
            for source in plan.sources() {
                if let Some(password) = source.transfer.password() {
                    t.add_secret(&password.0);
                }
            }
        }
        Run {
            target,
            plan,
            kickstart: None,
            events,
            gate,
            host_key: None,
            baseline: Vec::new(),
            topology: members::Topology::default(),
            issu: false,
        }
    }

    fn emit(&self, step: Step, status: StepStatus, message: impl Into<String>) {
        if status == StepStatus::Started
            && let Some(t) = &self.target.transcript
        {
            t.set_step(step);
        }
        // A caller that stopped listening does not stop the upgrade.
        let _ = self.events.send(StepEvent {
            device: self.target.name.clone(),
            step,
            status,
            message: message.into(),
            at: tokio::time::Instant::now(),
        });
    }

    /// Announce a step and pass the gate; a stop becomes a `Cancelled` failure at this point.
    async fn start(&self, step: Step, message: impl Into<String>) -> Result<(), UpgradeFailure> {
        let message = message.into();
        self.emit(step, StepStatus::Started, message.clone());
        if let Some(gate) = self.gate
            && let Err(stop) = gate.before(step, &message).await
        {
            let why = match stop {
                Stop::Abort => "stopped by the operator (abort or halt) before this step",
                Stop::Shutdown => "stopped by a service shutdown before this step",
            };
            return Err(self.fail(step, FailureReason::Cancelled, why.into()));
        }
        Ok(())
    }

    /// Announce a step that must run whatever the gate says (after the reload).
    async fn start_unstoppable(&self, step: Step, message: impl Into<String>) {
        let message = message.into();
        self.emit(step, StepStatus::Started, message.clone());
        if let Some(gate) = self.gate {
            let _ = gate.before(step, &message).await;
        }
    }

    fn fail(&self, step: Step, reason: FailureReason, message: String) -> UpgradeFailure {
        // Device errors start with the device's name, which the failure carries already.
        let message = match message
            .strip_prefix(self.target.name.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
        {
            Some(rest) => rest.to_string(),
            None => message,
        };
        self.emit(step, StepStatus::Failed, format!("{reason}: {message}"));
        UpgradeFailure {
            device: self.target.name.clone(),
            step,
            reason,
            message,
            boot_restored: None,
            reload_sent: false,
            rolled_back: false,
            host_key: self.host_key.clone(),
        }
    }

    fn fail_with(&self, step: Step, e: DeviceError) -> UpgradeFailure {
        self.fail(step, reason_for(step, &e), e.to_string())
    }

    /// [`super::wait_back`], telling the gate when the device was seen down and back up.
    async fn wait_back(
        &self,
        timeouts: &Timeouts,
        evidence: &RestartEvidence,
        cancel: &CancellationToken,
    ) -> Result<(Session, DeviceFacts), DeviceError> {
        let gate = self.gate;
        let seen_down = move |at| {
            if let Some(g) = gate {
                g.reload_seen(ReloadSeen::Down, at);
            }
        };
        let back = wait_back_watched(self.target, timeouts, evidence, cancel, &seen_down).await?;
        if let Some(g) = gate {
            g.reload_seen(ReloadSeen::Up, tokio::time::Instant::now());
        }
        Ok(back)
    }
}

/// Run a step: emit Started, then Done or Failed.
macro_rules! step {
    ($run:expr, $step:expr, $started:expr, $fut:expr) => {{
        $run.start($step, $started).await?;
        match $fut.await {
            Ok(v) => v,
            Err(e) => return Err($run.fail_with($step, e)),
        }
    }};
}

/// Upgrade one device end to end. See the module documentation for the safety rules.
pub async fn upgrade(
    target: &Target,
    plan: &UpgradePlan,
    events: UnboundedSender<StepEvent>,
    cancel: CancellationToken,
) -> Result<UpgradeOutcome, UpgradeFailure> {
    upgrade_gated(target, plan, events, None, cancel).await
}

/// [`upgrade`], with a gate asked before every step.
pub(crate) async fn upgrade_gated(
    target: &Target,
    plan: &UpgradePlan,
    events: UnboundedSender<StepEvent>,
    gate: Option<&dyn StepGate>,
    cancel: CancellationToken,
) -> Result<UpgradeOutcome, UpgradeFailure> {
    let mut run = Run::new(target, plan, events, gate);
    let t = &plan.timeouts;
    // Every source's URL and command lines are checked before anything is sent.
    let driver = Driver::for_device(target.platform, None);
    for source in plan.sources() {
        let fits = source.check().and_then(|()| {
            for image in plan.files() {
                source.fits(driver, target.platform, image)?;
            }
            Ok(())
        });
        if let Err(message) = fits {
            return Err(run.fail(Step::Copy, FailureReason::TransferFailed, message));
        }
    }
    let mut session = step!(
        run,
        Step::Connect,
        format!("ssh {}:{}", target.host, target.port),
        Session::open(target, t)
    );
    run.host_key = Some(session.host_key().to_string());
    run.emit(
        Step::Connect,
        StepStatus::Done,
        format!("logged in, host key {}", session.host_key()),
    );

    let before = step!(run, Step::Facts, "show version, show boot", session.facts());
    let downgrade = is_downgrade(plan, &before.version.version);
    let downgrade_note = match &downgrade {
        Ok(true) if plan.options.allow_downgrade => {
            "; a downgrade, allowed by options.allow_downgrade".to_string()
        }
        Ok(_) => String::new(),
        Err(why) => format!("; downgrade check skipped: {why}"),
    };
    let kickstart_note = match kickstart_to_install(plan, &before.version, session.driver) {
        Ok(Some(k)) => {
            run.kickstart = Some(k);
            format!(
                "; kickstart {} (installed with {})",
                before.version.kickstart.as_deref().unwrap_or("?"),
                k.image
            )
        }
        Ok(None) if plan.kickstart.is_some() => {
            "; boots one image, so kickstart_image is not used".to_string()
        }
        Ok(None) => String::new(),
        Err(message) => {
            session.close().await;
            return Err(run.fail(Step::Facts, FailureReason::DeviceRejected, message));
        }
    };
    run.emit(
        Step::Facts,
        StepStatus::Done,
        format!(
            "running {} from {}; boot variable {:?}{kickstart_note}{downgrade_note}",
            before.version.version,
            before.version.image.as_deref().unwrap_or("?"),
            before.boot.entries
        ),
    );
    if let Some(gate) = run.gate {
        gate.facts_read(&before.version.version, before.version.image.as_deref())
            .await;
    }
    let done = |run: &Run, result, after: &DeviceFacts, host_key: String| UpgradeOutcome {
        result,
        before: before.to_facts(),
        after: after.to_facts(),
        host_key: run.host_key.clone().unwrap_or(host_key),
    };
    // A stack is current only when every member runs the version too.
    let members_agree = before
        .members
        .iter()
        .all(|m| crate::device::members::same_version(&m.version, &before.version.version));
    if plan.options.skip_if_current && post_check(plan, &before).is_ok() && members_agree {
        run.emit(
            Step::PostCheck,
            StepStatus::Skipped,
            format!("already running {}", plan.image),
        );
        let key = session.host_key().to_string();
        session.close().await;
        return Ok(done(&run, UpgradeResult::AlreadyCurrent, &before, key));
    }
    if downgrade == Ok(true) && !plan.options.allow_downgrade {
        session.close().await;
        let wanted = target_version(plan).unwrap_or_else(|| plan.image.to_string());
        return Err(run.fail(
            Step::Facts,
            FailureReason::Downgrade,
            format!(
                "refusing to downgrade {} from {} to {wanted}: set options.allow_downgrade: true to allow it",
                target.name, before.version.version
            ),
        ));
    }
    if cancel.is_cancelled() {
        session.close().await;
        return Err(run.fail(
            Step::Facts,
            FailureReason::Cancelled,
            "cancelled before any change".into(),
        ));
    }

    run.topology = match members::pre_check(&run, &mut session, &before).await {
        Ok(topology) => topology,
        Err(failure) => {
            session.close().await;
            return Err(failure);
        }
    };
    if !plan.options.pre_checks.is_empty() {
        run.start(
            Step::PreCheck,
            format!("{} check command(s)", plan.options.pre_checks.len()),
        )
        .await?;
        if let Err(failure) =
            run_checks(&run, &mut session, Step::PreCheck, &plan.options.pre_checks).await
        {
            session.close().await;
            return Err(failure);
        }
    }
    stage(&mut run, &mut session).await?;
    if plan.options.stage_only {
        let key = session.host_key().to_string();
        session.close().await;
        return Ok(done(&run, UpgradeResult::Staged, &before, key));
    }
    if cancel.is_cancelled() {
        session.close().await;
        return Err(run.fail(
            Step::VerifyMd5,
            FailureReason::Cancelled,
            "cancelled after staging; boot untouched".into(),
        ));
    }

    if let Some(gate) = run.gate
        && !gate.may_change_now().await
    {
        let key = session.host_key().to_string();
        session.close().await;
        if let Err(stop) = gate.wait_until_changes_allowed().await {
            let why = match stop {
                Stop::Abort => "stopped while staged, before any change; boot untouched",
                Stop::Shutdown => "service shutdown while staged, before any change",
            };
            let mut failure = run.fail(Step::VerifyMd5, FailureReason::Cancelled, why.into());
            failure.host_key.get_or_insert(key);
            return Err(failure);
        }
        session = step!(
            run,
            Step::Connect,
            format!(
                "ssh {}:{} (the change window is open)",
                target.host, target.port
            ),
            Session::open(target, t)
        );
        run.emit(Step::Connect, StepStatus::Done, "logged in again");
        // Hours may have passed: the image must still be there and still intact.
        stage(&mut run, &mut session).await?;
    }

    // After staging: NX-OS checks the image on bootflash.
    run.issu = match decide_issu(&run, &mut session).await {
        Ok(issu) => issu,
        Err(failure) => {
            session.close().await;
            return Err(failure);
        }
    };
    if let Err(failure) = backup_before(&run, &mut session).await {
        session.close().await;
        return Err(failure);
    }
    // Taken right before the changes, so a device staged hours before its window is compared
    // with how it was when the window opened.
    run.baseline = match state_before(&run, &mut session).await {
        Ok(seen) => seen,
        Err(failure) => {
            session.close().await;
            return Err(failure);
        }
    };
    let driver = session.driver;
    let old_image = before
        .version
        .image
        .clone()
        .filter(|i| file_name(i) != plan.image);
    // NX-OS with a kickstart: the old kickstart goes with the old image.
    let old_kickstart = before
        .version
        .kickstart
        .clone()
        .filter(|k| run.kickstart.is_some_and(|new| file_name(k) != new.image));
    let old_boot = before.boot.entries.clone();
    let changed = match driver {
        Driver::IosBundle => {
            let mut entries = vec![driver.path(&plan.image)];
            if let Some(old) = &old_image
                && !old.contains("://")
            {
                entries.push(driver.path(file_name(old)));
            }
            bundle_changes(&run, session, &entries, &cancel).await
        }
        Driver::IosXeInstall | Driver::Nxos => install_changes(&run, session).await,
    };
    // The one place a failed change is undone.
    if let Err((failure, undo)) = changed {
        return Err(match undo {
            Undo::Nothing(session) => {
                session.close().await;
                failure
            }
            Undo::Gone => failure,
            Undo::Boot(session) => restore(&run, session, &old_boot, failure).await,
            Undo::BootOverNewSession => restore_fresh(&run, &old_boot, failure).await,
        });
    }

    let evidence = RestartEvidence::since(&before.version);
    let after = match wait_and_check(&run, &evidence, &cancel).await {
        Ok(after) => after,
        Err((mut failure, session)) => {
            failure.reload_sent = true;
            if let (Some(session), Driver::IosBundle) = (session, driver) {
                return Err(restore(&run, session, &old_boot, failure).await);
            }
            // IOS-XE: not back within the reload timeout, the auto-abort timer brings it back
            // on the old version by itself.
            if driver == Driver::IosXeInstall && failure.reason == FailureReason::NeverCameBack {
                let old = rollback::Old::of(&before.version);
                return Err(rollback::await_abort_timer(&run, failure, &old, &cancel).await);
            }
            return Err(failure);
        }
    };
    let (mut session, after) = after;
    let previous = old_image.clone().or_else(|| plan.previous_image.clone());
    let old_files: Vec<String> = old_image.into_iter().chain(old_kickstart).collect();
    if let Err(mut failure) =
        finish_after_reload(&run, &mut session, &after.version.version, &old_files).await
    {
        failure.reload_sent = true;
        if rollback::aborts(driver, &failure) {
            let old = rollback::Old::of(&before.version);
            return Err(
                rollback::abort_install(&run, session, failure, &after, &old, &cancel).await,
            );
        }
        if rollback::applies(&run, driver, &failure) {
            return Err(
                rollback::roll_back(&run, session, failure, &after, previous, &cancel).await,
            );
        }
        session.close().await;
        return Err(failure);
    }
    if driver == Driver::IosXeInstall
        && let Err(failure) = commit(&run, &mut session).await
    {
        session.close().await;
        return Err(failure);
    }
    let key = session.host_key().to_string();
    session.close().await;
    Ok(done(&run, UpgradeResult::Upgraded, &after, key))
}

/// IOS-XE install mode: `install commit` once the checks passed, so the auto-abort timer does
/// not take the device back. Told, not held by a pause: the timer runs on.
async fn commit(run: &Run<'_>, session: &mut Session) -> Result<(), UpgradeFailure> {
    run.emit(Step::Commit, StepStatus::Started, "install commit");
    if let Err(e) = session.install_commit().await {
        let mut failure = run.fail_with(Step::Commit, e);
        failure.reload_sent = true;
        failure.message.push_str(&format!(
            "; not committed, the device goes back to its old version when the auto-abort timer ({} min) expires",
            run.plan.timeouts.commit_minutes()
        ));
        return Err(failure);
    }
    run.emit(
        Step::Commit,
        StepStatus::Done,
        "committed: the auto-abort timer is stopped",
    );
    Ok(())
}

/// What a failed change leaves to undo.
enum Undo {
    /// Nothing was changed; the session is still open.
    Nothing(Session),
    /// Nothing to undo and no session left (the installer took it).
    Gone,
    /// The boot variable changed: put it back over this session.
    Boot(Session),
    /// The boot variable changed and the session is gone: put it back over a new one.
    BootOverNewSession,
}

type Changed = Result<(), (UpgradeFailure, Undo)>;

/// Bundle mode: the new image first in the boot variable (the old one as the fallback), save,
/// reload.
async fn bundle_changes(
    run: &Run<'_>,
    mut session: Session,
    entries: &[String],
    cancel: &CancellationToken,
) -> Changed {
    if let Err(f) = run
        .start(Step::SetBoot, format!("boot system {}", entries.join(", ")))
        .await
    {
        return Err((f, Undo::Nothing(session)));
    }
    if let Err(e) = session.set_boot(entries).await {
        return Err((run.fail_with(Step::SetBoot, e), Undo::Boot(session)));
    }
    run.emit(Step::SetBoot, StepStatus::Done, format!("{entries:?}"));
    let driver = session.driver;
    if let Err(f) = run.start(Step::Save, driver.save_command()).await {
        return Err((f, Undo::Boot(session)));
    }
    if let Err(e) = session.save().await {
        return Err((run.fail_with(Step::Save, e), Undo::Boot(session)));
    }
    run.emit(Step::Save, StepStatus::Done, "[OK]");
    if cancel.is_cancelled() {
        let f = run.fail(
            Step::Save,
            FailureReason::Cancelled,
            "cancelled before the reload".into(),
        );
        return Err((f, Undo::Boot(session)));
    }
    if let Err(f) = run.start(Step::Reload, "reload").await {
        return Err((f, Undo::Boot(session)));
    }
    if let Err(e) = session.reload().await {
        // The session is gone with the refused reload.
        return Err((run.fail_with(Step::Reload, e), Undo::BootOverNewSession));
    }
    run.emit(Step::Reload, StepStatus::Done, "reload sent");
    Ok(())
}

/// `strategy.issu`, before any change: whether the install runs in service. The device's own
/// check decides (NX-OS `show install all impact … non-disruptive`, IOS-XE `show issu state
/// detail`); a disruptive answer fails the device with `issu_not_possible` when ISSU is
/// `required`, and with `preferred` the event says the upgrade reloads instead.
async fn decide_issu(run: &Run<'_>, session: &mut Session) -> Result<bool, UpgradeFailure> {
    let mode = run.plan.options.issu;
    if mode == Issu::Never {
        return Ok(false);
    }
    let step = Step::PreCheck;
    let wanted = if mode == Issu::Required {
        "required"
    } else {
        "preferred"
    };
    run.start(
        step,
        format!("can the upgrade run in service? (strategy.issu: {wanted})"),
    )
    .await?;
    let kickstart = run.kickstart.map(|k| k.image.as_str());
    let check = session
        .issu_check(&run.plan.image, kickstart)
        .await
        .map_err(|e| run.fail_with(step, e))?;
    match check {
        super::IssuCheck::Disruptive { reason } if mode == Issu::Required => Err(run.fail(
            step,
            FailureReason::IssuNotPossible,
            format!(
                "the upgrade would not run in service ({reason}); strategy.issu is required, so nothing was changed"
            ),
        )),
        super::IssuCheck::Disruptive { reason } => {
            run.emit(
                step,
                StepStatus::Done,
                format!(
                    "no ISSU: {reason}; the upgrade reloads the device (strategy.issu: preferred)"
                ),
            );
            Ok(false)
        }
        super::IssuCheck::NonDisruptive => {
            run.emit(
                step,
                StepStatus::Done,
                "ISSU: the device's compatibility check says non-disruptive",
            );
            Ok(true)
        }
        super::IssuCheck::DecidedByActivation => {
            run.emit(
                step,
                StepStatus::Done,
                "ISSU: the device is ready for it (show issu state detail); install activate issu decides for this image",
            );
            Ok(true)
        }
    }
}

/// Install mode (IOS-XE) and NX-OS: save, then the installer, which sets the boot variable
/// itself only once the image is installed, and reloads (or, in service, switches over).
async fn install_changes(run: &Run<'_>, mut session: Session) -> Changed {
    let driver = session.driver;
    // The installer refuses to run with unsaved configuration.
    if let Err(f) = run.start(Step::Save, driver.save_command()).await {
        return Err((f, Undo::Nothing(session)));
    }
    if let Err(e) = session.save().await {
        return Err((run.fail_with(Step::Save, e), Undo::Nothing(session)));
    }
    run.emit(Step::Save, StepStatus::Done, "[OK]");
    let mut added = false;
    if run.issu {
        let image = &run.plan.image;
        let command = match driver {
            Driver::Nxos => format!("install all nxos {} non-disruptive", driver.path(image)),
            _ => format!(
                "install add file {}; install activate issu",
                driver.path(image)
            ),
        };
        if let Err(f) = run.start(Step::Install, command).await {
            return Err((f, Undo::Nothing(session)));
        }
        let result = match driver {
            Driver::Nxos => session.install_all_non_disruptive(image).await,
            _ => session.install_activate_issu(image).await,
        };
        match result {
            Ok(()) => {
                session.close().await;
                run.emit(
                    Step::Install,
                    StepStatus::Done,
                    "installed in service (ISSU): the supervisors switch over",
                );
                return Ok(());
            }
            Err(DeviceError::Rejected { message, .. }) => {
                if run.plan.options.issu == Issu::Required {
                    let f = run.fail(
                        Step::Install,
                        FailureReason::IssuNotPossible,
                        format!(
                            "the device refused the in-service upgrade ({message}); strategy.issu is required, so it was not upgraded"
                        ),
                    );
                    return Err((f, Undo::Nothing(session)));
                }
                run.emit(
                    Step::Install,
                    StepStatus::Done,
                    format!(
                        "the device refused the in-service upgrade ({message}): a normal install with a reload instead (strategy.issu: preferred)"
                    ),
                );
                added = driver == Driver::IosXeInstall;
            }
            Err(e) => return Err((run.fail_with(Step::Install, e), Undo::Gone)),
        }
    }
    let kickstart = run.kickstart.map(|k| k.image.as_str());
    let command = if added {
        format!(
            "install activate auto-abort-timer {}",
            run.plan.timeouts.commit_minutes()
        )
    } else {
        driver
            .install_command(&run.plan.image, kickstart)
            .unwrap_or_default()
    };
    if let Err(f) = run.start(Step::Install, command).await {
        return Err((f, Undo::Nothing(session)));
    }
    let installed = if added {
        session.install_activate().await
    } else {
        session.install(&run.plan.image, kickstart).await
    };
    if let Err(e) = installed {
        return Err((run.fail_with(Step::Install, e), Undo::Gone));
    }
    run.emit(
        Step::Install,
        StepStatus::Done,
        "installed; the device reloads",
    );
    Ok(())
}

/// Make sure the verified image (and the kickstart, when one is installed with it) is on
/// flash: find it, or check space, copy and verify.
async fn stage(run: &mut Run<'_>, session: &mut Session) -> Result<(), UpgradeFailure> {
    let plan = run.plan;
    stage_file(run, session, &plan.image, &plan.md5, plan.size).await?;
    if let Some(k) = run.kickstart {
        stage_file(run, session, &k.image, &k.md5, k.size).await?;
    }
    let needed = plan.size + plan.size * u64::from(plan.options.free_space_margin_percent) / 100;
    members::stage(run, session, &run.topology, &plan.image, &plan.md5, needed).await
}

async fn stage_file(
    run: &mut Run<'_>,
    session: &mut Session,
    image: &crate::images::ImageName,
    md5: &crate::images::ImageMd5,
    size: u64,
) -> Result<(), UpgradeFailure> {
    let plan = run.plan;
    let presence = step!(
        run,
        Step::FilePresent,
        format!("look for {}", image),
        session.file_present(image, md5)
    );
    match presence {
        FilePresence::Verified { size } => {
            run.emit(
                Step::FilePresent,
                StepStatus::Done,
                format!("{} already on flash ({size} bytes), MD5 verified", image),
            );
            run.emit(Step::Copy, StepStatus::Skipped, "image already present");
            run.emit(
                Step::VerifyMd5,
                StepStatus::Skipped,
                "verified while looking for the image",
            );
            return Ok(());
        }
        FilePresence::Corrupt { computed } => {
            run.emit(
                Step::FilePresent,
                StepStatus::Done,
                format!(
                    "{} on flash has MD5 {computed}, not {}: deleting it",
                    image, md5
                ),
            );
            if let Err(e) = session.delete(image).await {
                return Err(run.fail_with(Step::FilePresent, e));
            }
        }
        FilePresence::Absent => run.emit(Step::FilePresent, StepStatus::Done, "not on flash"),
    }
    let listing = step!(
        run,
        Step::FreeSpace,
        format!("dir {}", session.driver.filesystem()),
        session.free_space()
    );
    let needed = size + size * u64::from(plan.options.free_space_margin_percent) / 100;
    match listing.bytes_free {
        Some(free) if free < needed => {
            return Err(run.fail(
                Step::FreeSpace,
                FailureReason::FlashFull,
                format!("{free} bytes free, {needed} needed for {}; delete old files or enable delete_old_image", image),
            ));
        }
        Some(free) => run.emit(
            Step::FreeSpace,
            StepStatus::Done,
            format!("{free} bytes free, {needed} needed"),
        ),
        None => run.emit(
            Step::FreeSpace,
            StepStatus::Done,
            "free space not reported; the copy will tell",
        ),
    }
    copy_file(run, session, image, size).await?;
    run.start(Step::VerifyMd5, session.driver.md5_command(image))
        .await?;
    if let Err(e) = session.verify_md5(image, md5).await {
        let mut failure = run.fail_with(Step::VerifyMd5, e);
        if failure.reason == FailureReason::CorruptImage {
            match session.delete(image).await {
                Ok(()) => failure
                    .message
                    .push_str("; the bad copy was deleted from flash"),
                Err(_) => failure.message.push_str(&format!(
                    "; deleting the bad copy failed: delete {} by hand",
                    session.driver.path(image)
                )),
            }
        }
        return Err(failure);
    }
    run.emit(
        Step::VerifyMd5,
        StepStatus::Done,
        format!("MD5 {} verified by the device", md5),
    );
    Ok(())
}

/// Copy `image` from the plan's sources in order: the next source is tried only when a copy
/// failed for a transport reason. The events say which protocol, VRF and source interface the
/// copy used, and why an earlier source was left.
async fn copy_file(
    run: &Run<'_>,
    session: &mut Session,
    image: &crate::images::ImageName,
    size: u64,
) -> Result<(), UpgradeFailure> {
    let plan = run.plan;
    let platform = session.platform();
    let sources: Vec<&CopySource> = plan.sources().collect();
    let mut left_behind = String::new();
    for (i, source) in sources.iter().enumerate() {
        let last = i + 1 == sources.len();
        let what = match source.display_command(session.driver, platform, image) {
            Some(command) => command,
            None => format!(
                "scp {} {}:{}",
                image,
                run.target.host,
                session.driver.path(image)
            ),
        };
        run.start(Step::Copy, format!("{left_behind}{what}"))
            .await?;
        if let Err(e) = source.fits(session.driver, platform, image) {
            return Err(run.fail(Step::Copy, FailureReason::TransferFailed, e));
        }
        match copy_once(session, plan, source, image, size).await {
            Ok((copied, note)) => {
                run.emit(
                    Step::Copy,
                    StepStatus::Done,
                    format!("{copied} over {}{note}", source.describe(platform)),
                );
                return Ok(());
            }
            Err((e, note)) => {
                if !last && is_transport_failure(&e) {
                    left_behind = format!(
                        "{} failed ({}{note}); falling back to {}: ",
                        source.describe(platform),
                        e.to_string()
                            .strip_prefix(&format!("{}: ", run.target.name))
                            .unwrap_or(&e.to_string()),
                        sources[i + 1].transfer.protocol()
                    );
                    continue;
                }
                let mut failure = run.fail_with(Step::Copy, e);
                failure.message.push_str(&note);
                if failure.reason == FailureReason::Timeout
                    && source.vrf.is_none()
                    && source.source_interface.is_none()
                    && platform != crate::inventory::Platform::Nxos
                {
                    failure.message.push_str(&format!(
                        "; no VRF or source interface is set for this copy: if {} reaches fleetup through a management VRF (Mgmt-vrf, management), set transfer.vrf or transfer.source_interface in the playbook",
                        run.target.name
                    ));
                }
                // A partial file must not stay behind to be mistaken for the image later.
                if matches!(
                    failure.reason,
                    FailureReason::ConnectionLostMidCopy | FailureReason::Timeout
                ) {
                    failure.message.push_str(&format!(
                        "; a partial {} may remain on flash (a retry finds it by its MD5 and replaces it)",
                        image
                    ));
                } else if session.delete(image).await.is_ok() {
                    failure
                        .message
                        .push_str("; the incomplete copy was deleted from flash");
                }
                return Err(failure);
            }
        }
    }
    Err(run.fail(
        Step::Copy,
        FailureReason::TransferFailed,
        "no copy source".into(),
    ))
}

/// One copy from one source, with the settings it needs for the copy only (the TFTP block
/// size, the client's source interface) put back right after it, before any save. Returns
/// what was copied and a note of what was put back, or the error with that note.
async fn copy_once(
    session: &mut Session,
    plan: &UpgradePlan,
    source: &CopySource,
    image: &str,
    size: u64,
) -> Result<(String, String), (DeviceError, String)> {
    let ios = session.driver != Driver::Nxos;
    // `restore`: the lines that put the device's own settings back after the copy.
    let mut restore: Vec<(String, &'static str)> = Vec::new();
    // A larger TFTP block size for the copy only: IOS asks for 512-byte blocks unless told.
    if let (Transfer::Tftp, Some(n), true) = (&source.transfer, plan.options.tftp_blocksize, ios) {
        let previous = session
            .tftp_blocksize()
            .await
            .map_err(|e| (e, String::new()))?;
        session
            .configure(&[format!("ip tftp blocksize {n}")])
            .await
            .map_err(|e| (e, String::new()))?;
        restore.push((
            previous.map_or("no ip tftp blocksize".to_string(), |p| {
                format!("ip tftp blocksize {p}")
            }),
            "the TFTP block size",
        ));
    }
    if let (Some(head), Some(iface), true) = (
        source.transfer.source_interface_command(),
        source.source_interface.as_deref(),
        ios,
    ) {
        let previous = session.global_line(head).await;
        let set = session.configure(&[format!("{head} {iface}")]).await;
        match (previous, set) {
            (Ok(previous), Ok(())) => restore.push((
                previous.unwrap_or_else(|| format!("no {head}")),
                "the source interface",
            )),
            (Err(e), _) | (_, Err(e)) => {
                let note = put_back(session, &restore).await;
                return Err((e, note));
            }
        }
    }
    // A push needs the device's SCP server, on for the copy only.
    if let Transfer::ScpPush { .. } = &source.transfer {
        let line = if ios {
            "ip scp server enable"
        } else {
            "feature scp-server"
        };
        match session.global_line(line).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                if let Err(e) = session.configure(&[line.to_string()]).await {
                    let note = put_back(session, &restore).await;
                    return Err((e, note));
                }
                restore.push((format!("no {line}"), "the SCP server setting"));
            }
            Err(e) => {
                let note = put_back(session, &restore).await;
                return Err((e, note));
            }
        }
    }
    let copied = match &source.transfer {
        Transfer::ScpPush { store, progress } => {
            session
                .push(&store.join(image), image, size, progress.as_ref())
                .await
        }
        _ => session.copy(source, image).await,
    };
    let note = put_back(session, &restore).await;
    match copied {
        Ok(report) => Ok((
            match report.bytes {
                Some(n) => format!("{n} bytes copied"),
                None => "copy complete".to_string(),
            },
            note,
        )),
        Err(e) => Err((e, note)),
    }
}

/// Apply the lines that put settings back, last changed first; says what was put back.
async fn put_back(session: &mut Session, restore: &[(String, &'static str)]) -> String {
    let mut note = String::new();
    for (line, what) in restore.iter().rev() {
        match session.configure(std::slice::from_ref(line)).await {
            Ok(()) => note.push_str(&format!("; `{line}` restored {what}")),
            Err(e) => note.push_str(&format!("; restoring {what} with `{line}` failed: {e}")),
        }
    }
    note
}

type WaitFailure = (UpgradeFailure, Option<Session>);

async fn wait_and_check(
    run: &Run<'_>,
    evidence: &RestartEvidence,
    cancel: &CancellationToken,
) -> Result<(Session, DeviceFacts), WaitFailure> {
    let t = &run.plan.timeouts;
    run.start_unstoppable(
        Step::WaitBack,
        format!("waiting up to {} s", t.reload.as_secs()),
    )
    .await;
    let (session, after) = match run.wait_back(t, evidence, cancel).await {
        Ok(v) => v,
        Err(e) => return Err((run.fail_with(Step::WaitBack, e), None)),
    };
    run.emit(
        Step::WaitBack,
        StepStatus::Done,
        format!(
            "back, uptime {}",
            after.version.uptime.as_deref().unwrap_or("?")
        ),
    );
    run.start_unstoppable(Step::PostCheck, "show version").await;
    if let Err(message) = post_check(run.plan, &after) {
        return Err((
            run.fail(Step::PostCheck, FailureReason::CameBackOnOldImage, message),
            Some(session),
        ));
    }
    run.emit(
        Step::PostCheck,
        StepStatus::Done,
        format!("running {}", after.version.version),
    );
    Ok((session, after))
}

/// What resuming an upgrade after its recorded reload found.
#[derive(Debug)]
// Made once per resumed device: the size of the common variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Resumed {
    /// The device came back and was checked (and cleaned up), or the upgrade failed.
    Done(Result<UpgradeOutcome, UpgradeFailure>),
    /// The reload never reached the device: the caller stopped between recording the reload
    /// and sending it. After the whole reload timeout the device still runs the old image,
    /// with an uptime longer than the time since the record, so it has not restarted since.
    /// Running the upgrade again sends the reload for the first time.
    ReloadNeverSent { message: String },
}

/// Finish an upgrade whose reload was recorded as sent (the caller was restarted in between):
/// wait for the device, check it, clean up. Never sends another reload. `recorded_at`: when
/// the reload was recorded; the device counts as restarted when its uptime is below the time
/// since then plus the reload timeout (`None` accepts any uptime).
pub async fn resume_after_reload(
    target: &Target,
    plan: &UpgradePlan,
    events: UnboundedSender<StepEvent>,
    gate: Option<&dyn StepGate>,
    recorded_at: Option<SystemTime>,
    cancel: CancellationToken,
) -> Resumed {
    let mut run = Run::new(target, plan, events, gate);
    let evidence = RestartEvidence::UptimeBelow(
        recorded_at.map(|at| secs_since(at) + plan.timeouts.reload.as_secs()),
    );
    let waited = wait_and_check(&run, &evidence, &cancel).await;
    if let (Err((failure, None)), Some(at)) = (&waited, recorded_at)
        && failure.reason == FailureReason::NeverCameBack
        && let Some(message) = reload_never_reached(target, plan, at).await
    {
        return Resumed::ReloadNeverSent { message };
    }
    Resumed::Done(resume_checked(&mut run, waited).await)
}

fn secs_since(at: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(at)
        .map_or(0, |d| d.as_secs())
}

/// After a resumed wait that never saw the device restart: the proof that the recorded reload
/// never reached it, or `None`. The proof is the device's own uptime: still on the old image and
/// up for longer than the time since the reload was recorded (uptime text is rounded down, so
/// it never overstates). A reload in flight is ruled out because the whole reload timeout has
/// passed, the same bound that declares a sent reload failed.
async fn reload_never_reached(
    target: &Target,
    plan: &UpgradePlan,
    recorded_at: SystemTime,
) -> Option<String> {
    let (facts, _) = read_facts(target, &plan.timeouts).await.ok()?;
    if post_check(plan, &facts).is_ok() {
        return None;
    }
    let uptime = facts.version.uptime_seconds()?;
    // Whole seconds on both sides: one second of slack for the record's rounding.
    let since = secs_since(recorded_at) + 1;
    (uptime > since).then(|| {
        format!(
            "the reload never reached the device: after the {} s reload timeout it still runs {} and has been up for {} ({uptime} s or more), longer than the {since} s since the reload was recorded",
            plan.timeouts.reload.as_secs(),
            facts.version.version,
            facts.version.uptime.as_deref().unwrap_or("?"),
        )
    })
}

/// The rest of a resumed upgrade once the wait is over: clean up after a good check, or put
/// the boot variable back after a device came back on its old image.
async fn resume_checked(
    run: &mut Run<'_>,
    waited: Result<(Session, DeviceFacts), WaitFailure>,
) -> Result<UpgradeOutcome, UpgradeFailure> {
    let plan = run.plan;
    match waited {
        Ok((mut session, after)) => {
            let host_key = session.host_key().to_string();
            // The old image is the fallback entry still in the boot variable.
            let old = after
                .boot
                .entries
                .iter()
                .map(|e| file_name(e).to_string())
                .find(|e| e != &plan.image);
            let old: Vec<String> = old.into_iter().collect();
            run.topology = members::rediscover(&mut session, run.target.platform, &after).await;
            if let Err(failure) =
                finish_after_reload(run, &mut session, &after.version.version, &old).await
            {
                if rollback::aborts(session.driver, &failure)
                    && let Some(version) = &plan.previous_version
                {
                    let old = rollback::Old::version(version);
                    let cancel = CancellationToken::new();
                    return Err(rollback::abort_install(
                        run, session, failure, &after, &old, &cancel,
                    )
                    .await);
                }
                session.close().await;
                return Err(failure);
            }
            if session.driver == Driver::IosXeInstall
                && let Err(failure) = commit(run, &mut session).await
            {
                session.close().await;
                return Err(failure);
            }
            session.close().await;
            Ok(UpgradeOutcome {
                result: UpgradeResult::Upgraded,
                before: Facts::default(),
                after: after.to_facts(),
                host_key,
            })
        }
        Err((mut failure, session)) => {
            failure.reload_sent = true;
            let Some(mut session) = session else {
                return Err(failure);
            };
            if session.driver != Driver::IosBundle {
                session.close().await;
                return Err(failure);
            }
            // Came back on the old image: the boot variable goes back to the entries that
            // do not name the new image.
            let old_boot = match session.facts().await {
                Ok(f) => f
                    .boot
                    .entries
                    .into_iter()
                    .filter(|e| file_name(e) != plan.image)
                    .collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            };
            if old_boot.is_empty() {
                session.close().await;
                return Err(failure);
            }
            Err(restore(run, session, &old_boot, failure).await)
        }
    }
}

/// Once the device runs the new image: the playbook's post-check commands, then the optional
/// removal of the old image (a failed removal is a warning, not a failure).
async fn finish_after_reload(
    run: &Run<'_>,
    session: &mut Session,
    version: &str,
    old_files: &[String],
) -> Result<(), UpgradeFailure> {
    let plan = run.plan;
    members::post_check(run, session, &run.topology, version).await?;
    backup_after(run, session).await;
    if let Err(mut failure) =
        run_checks(run, session, Step::PostCheck, &plan.options.post_checks).await
    {
        failure.reload_sent = true;
        return Err(failure);
    }
    if let Err(mut failure) = state_after(run, session).await {
        failure.reload_sent = true;
        return Err(failure);
    }
    if plan.options.delete_old_image {
        run.start_unstoppable(Step::Cleanup, "remove the old image")
            .await;
        match cleanup(session, plan, &run.topology, old_files).await {
            Ok(msg) => run.emit(Step::Cleanup, StepStatus::Done, msg),
            Err(e) => run.emit(Step::Cleanup, StepStatus::Failed, e.to_string()),
        }
    }
    Ok(())
}

/// Run each `checks.compare` command and parse its output.
async fn observe(
    run: &Run<'_>,
    session: &mut Session,
    step: Step,
) -> Result<Vec<Observed>, UpgradeFailure> {
    let platform = run.target.platform;
    let mut seen = Vec::new();
    for c in &run.plan.options.compare {
        let output = match session.run(c.command(platform)).await {
            Ok(o) => o,
            Err(e) => return Err(run.fail_with(step, e)),
        };
        match c.parse(platform, &output) {
            Ok(o) => seen.push(o),
            Err(why) => {
                return Err(run.fail(
                    step,
                    FailureReason::CheckFailed,
                    format!("checks.compare {}: {why}", c.name()),
                ));
            }
        }
    }
    Ok(seen)
}

/// `checks.compare` before the first change: the state the device must be back to. A command
/// that fails or an output that cannot be read fails the device here, still untouched.
async fn state_before(
    run: &Run<'_>,
    session: &mut Session,
) -> Result<Vec<Observed>, UpgradeFailure> {
    let compare = &run.plan.options.compare;
    if compare.is_empty() {
        return Ok(Vec::new());
    }
    let platform = run.target.platform;
    let commands: Vec<&str> = compare.iter().map(|c| c.command(platform)).collect();
    run.start(
        Step::PreCheck,
        format!(
            "take the state to compare after the reload: {}",
            commands.join(", ")
        ),
    )
    .await?;
    let seen = observe(run, session, Step::PreCheck).await?;
    if let Some(gate) = run.gate {
        let kept = match serde_json::to_string(&seen) {
            Ok(json) => gate.compare_baseline_taken(&json).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = kept {
            return Err(run.fail(
                Step::PreCheck,
                FailureReason::BackupFailed,
                format!(
                    "the state to compare after the reload could not be kept, so nothing was changed: {why}"
                ),
            ));
        }
    }
    run.emit(
        Step::PreCheck,
        StepStatus::Done,
        format!(
            "state before the upgrade: {}",
            compare
                .iter()
                .zip(&seen)
                .map(|(c, o)| c.describe(o))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    );
    Ok(seen)
}

/// `checks.compare` once the device is back: every comparison against the state before. Each
/// gives an event `compared: …` (its before → after line, kept for the report); any
/// difference fails the device at `post_check` with `check_failed`, naming each difference.
async fn state_after(run: &Run<'_>, session: &mut Session) -> Result<(), UpgradeFailure> {
    let compare = &run.plan.options.compare;
    if compare.is_empty() {
        return Ok(());
    }
    let kept: Vec<Observed>;
    let baseline = if run.baseline.len() == compare.len() {
        &run.baseline
    } else {
        // A resumed upgrade: the state before was taken by a fleetup process that has
        // stopped since; it kept it in the store.
        let stored = match run.gate {
            Some(gate) => gate.compare_baseline().await,
            None => None,
        };
        match stored.map(|json| serde_json::from_str::<Vec<Observed>>(&json)) {
            Some(Ok(seen)) if seen.len() == compare.len() => {
                kept = seen;
                &kept
            }
            other => {
                let why = match other {
                    Some(Err(e)) => format!("it could not be read back ({e})"),
                    Some(Ok(_)) => "it does not match the playbook's comparisons".into(),
                    None => "it was not kept".into(),
                };
                run.emit(
                    Step::PostCheck,
                    StepStatus::Skipped,
                    format!(
                        "checks.compare skipped: the state before the upgrade was taken before fleetup restarted, and {why}"
                    ),
                );
                return Ok(());
            }
        }
    };
    let platform = run.target.platform;
    let commands: Vec<&str> = compare.iter().map(|c| c.command(platform)).collect();
    run.start_unstoppable(
        Step::PostCheck,
        format!("compare with the state before: {}", commands.join(", ")),
    )
    .await;
    let after = observe(run, session, Step::PostCheck).await?;
    let mut differences = Vec::new();
    for ((c, before), after) in compare.iter().zip(baseline).zip(&after) {
        let got = c.compare(before, after);
        let status = if got.differences.is_empty() {
            StepStatus::Done
        } else {
            StepStatus::Failed
        };
        run.emit(
            Step::PostCheck,
            status,
            format!("compared: {}", got.summary),
        );
        differences.extend(got.differences);
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(run.fail(
        Step::PostCheck,
        FailureReason::CheckFailed,
        format!(
            "the state after the reload differs from before: {}",
            differences.join("; ")
        ),
    ))
}

/// Run the playbook's check commands: each output must contain `must_contain` and must not
/// contain `must_not_contain`.
async fn run_checks(
    run: &Run<'_>,
    session: &mut Session,
    step: Step,
    checks: &[Check],
) -> Result<(), UpgradeFailure> {
    for check in checks {
        let output = match session.run(&check.command).await {
            Ok(o) => o,
            Err(e) => return Err(run.fail_with(step, e)),
        };
        if let Some(want) = &check.must_contain
            && !output.contains(want.as_str())
        {
            return Err(run.fail(
                step,
                FailureReason::CheckFailed,
                format!("`{}` does not show {want:?}", check.command),
            ));
        }
        if let Some(unwanted) = &check.must_not_contain
            && output.contains(unwanted.as_str())
        {
            return Err(run.fail(
                step,
                FailureReason::CheckFailed,
                format!("`{}` shows {unwanted:?}", check.command),
            ));
        }
        run.emit(
            step,
            StepStatus::Done,
            format!("`{}` as expected", check.command),
        );
    }
    Ok(())
}

async fn cleanup(
    session: &mut Session,
    plan: &UpgradePlan,
    topology: &members::Topology,
    old_files: &[String],
) -> Result<String, DeviceError> {
    match session.driver {
        Driver::IosXeInstall => {
            session.remove_inactive().await?;
            Ok("install remove inactive".into())
        }
        driver => {
            let old: Vec<&String> = old_files.iter().filter(|o| !o.contains("://")).collect();
            if old.is_empty() {
                return Ok("no old image on flash".into());
            }
            if driver == Driver::IosBundle {
                // Drop the fallback entry first: the boot variable never names a missing file.
                session.set_boot(&[driver.path(&plan.image)]).await?;
                session.save().await?;
            }
            let mut names: Vec<String> = Vec::new();
            for file in &old {
                session.delete(file_name(file)).await?;
                names.push(file.to_string());
                // A classic stack member keeps its own copy.
                for path in members::member_paths(topology, driver, file_name(file)) {
                    session.delete_at(&path).await?;
                    names.push(path);
                }
            }
            Ok(format!("deleted {}", names.join(", ")))
        }
    }
}

/// Put the boot variable back on an open session and save; the failure records how it went.
async fn restore(
    run: &Run<'_>,
    mut session: Session,
    old_boot: &[String],
    mut failure: UpgradeFailure,
) -> UpgradeFailure {
    run.emit(
        Step::RestoreBoot,
        StepStatus::Started,
        format!("boot variable back to {old_boot:?}"),
    );
    let result = async {
        session.set_boot(old_boot).await?;
        session.save().await
    }
    .await;
    session.close().await;
    failure.boot_restored = Some(finish_restore(run, result));
    failure
}

async fn restore_fresh(
    run: &Run<'_>,
    old_boot: &[String],
    mut failure: UpgradeFailure,
) -> UpgradeFailure {
    match Session::open(run.target, &run.plan.timeouts).await {
        Ok(mut session) => {
            // Tells a classic stack (`boot system switch all`) and the boot list's form.
            let _ = session.facts().await;
            restore(run, session, old_boot, failure).await
        }
        Err(e) => {
            failure.boot_restored = Some(finish_restore(run, Err(e)));
            failure
        }
    }
}

fn finish_restore(run: &Run<'_>, result: Result<(), DeviceError>) -> bool {
    match result {
        Ok(()) => {
            run.emit(Step::RestoreBoot, StepStatus::Done, "restored and saved");
            true
        }
        Err(e) => {
            run.emit(Step::RestoreBoot, StepStatus::Failed, e.to_string());
            false
        }
    }
}

/// Before the first change: read the running and startup configurations, have the gate keep
/// them (no change without a backup), and apply `checks.pre.unsaved_config` when they differ.
/// The texts never go into an event or the transcript: only sizes and line counts.
async fn backup_before(run: &Run<'_>, session: &mut Session) -> Result<(), UpgradeFailure> {
    use crate::configs::{ConfigKind, Moment, diff};
    let step = Step::ConfigBackup;
    run.start(step, "show running-config, show startup-config")
        .await?;
    let running = session
        .show_config(ConfigKind::Running)
        .await
        .map_err(|e| run.fail_with(step, e))?;
    let startup = session
        .show_config(ConfigKind::Startup)
        .await
        .map_err(|e| run.fail_with(step, e))?;
    let kept = match run.gate {
        Some(gate) => gate
            .config_backup(Moment::Before, &running, Some(&startup))
            .await
            .map_err(|why| {
                run.fail(
                    step,
                    FailureReason::BackupFailed,
                    format!("the configuration could not be kept, so nothing was changed: {why}"),
                )
            })?,
        None => "not kept (no rollout)".to_string(),
    };
    if diff::same_config(&running, &startup) {
        run.emit(
            step,
            StepStatus::Done,
            format!("{kept}; running and startup configurations agree"),
        );
        return Ok(());
    }
    let d = diff::diff(&startup, &running);
    let counts = if d.too_different {
        "many lines differ".to_string()
    } else {
        format!(
            "{} line(s) only in running, {} only in startup",
            d.added, d.removed
        )
    };
    match run.plan.options.unsaved_config {
        UnsavedConfig::Fail => Err(run.fail(
            step,
            FailureReason::UnsavedConfig,
            format!(
                "the running configuration has unsaved changes ({counts}); nothing was changed: save or discard them on the device, or set checks.pre.unsaved_config to warn or save"
            ),
        )),
        UnsavedConfig::Warn => {
            run.emit(
                step,
                StepStatus::Done,
                format!(
                    "{kept}; WARNING: the running configuration has unsaved changes ({counts}); the upgrade's own save writes them to the startup configuration (checks.pre.unsaved_config: warn)"
                ),
            );
            Ok(())
        }
        UnsavedConfig::Save => {
            session.save().await.map_err(|e| run.fail_with(step, e))?;
            run.emit(
                step,
                StepStatus::Done,
                format!(
                    "{kept}; the running configuration had unsaved changes ({counts}): saved with `{}` before any change (checks.pre.unsaved_config: save)",
                    session.driver.save_command()
                ),
            );
            Ok(())
        }
    }
}

/// Once the device is back: read the running configuration again for the gate to keep (and
/// compare with the one before). A failure here is a warning: the device runs the new image.
async fn backup_after(run: &Run<'_>, session: &mut Session) {
    use crate::configs::{ConfigKind, Moment};
    let step = Step::ConfigBackup;
    run.start_unstoppable(step, "show running-config (after)")
        .await;
    let result = match session.show_config(ConfigKind::Running).await {
        Ok(running) => match run.gate {
            Some(gate) => gate.config_backup(Moment::After, &running, None).await,
            None => Ok("not kept (no rollout)".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(note) => run.emit(step, StepStatus::Done, note),
        Err(why) => run.emit(
            step,
            StepStatus::Failed,
            format!("the configuration after could not be kept: {why}"),
        ),
    }
}
