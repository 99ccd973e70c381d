//! The way back after a failed post-check on the new image (`options.rollback: on_failure`, IOS
//! bundle mode and NX-OS): the old image first in the boot variable, save, one more reload,
//! then wait for the device and check that it runs the old image again.
//!
//! The second reload is its own step, `rollback_reload`, recorded before it is sent like the
//! first: after a restart of fleetup it is never sent again, unless the device's own uptime
//! proves it never reached it (the rule of the first reload).

use std::time::SystemTime;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{
    Driver, FailureReason, Run, Session, Step, StepEvent, StepGate, StepStatus, UpgradeFailure,
    UpgradePlan, secs_since,
};
use crate::device::parse::ShowVersion;
use crate::device::{DeviceFacts, RestartEvidence, Target, file_name, read_facts};

/// What the device must run again after a rollback: its old image (IOS, NX-OS), or its old
/// version (IOS-XE install mode, which boots `packages.conf` before and after).
#[derive(Debug, Clone)]
pub(super) struct Old {
    image: Option<String>,
    version: Option<String>,
}

impl Old {
    /// What `show version` said before the upgrade.
    pub(super) fn of(before: &ShowVersion) -> Old {
        Old {
            image: before.image.as_deref().map(|i| file_name(i).to_string()),
            version: Some(before.version.clone()),
        }
    }

    pub(super) fn version(version: &str) -> Old {
        Old {
            image: None,
            version: Some(version.to_string()),
        }
    }

    fn image(image: &str) -> Old {
        Old {
            image: Some(image.to_string()),
            version: None,
        }
    }

    /// Whether `now` is the old one: the version where known, else the image's file name.
    fn is(&self, now: &ShowVersion) -> bool {
        match (&self.version, &self.image) {
            (Some(v), _) => {
                now.version == *v
                    || crate::device::version::compare(&now.version, v)
                        == Some(std::cmp::Ordering::Equal)
            }
            (None, Some(i)) => now.image.as_deref().map(file_name) == Some(i.as_str()),
            (None, None) => false,
        }
    }
}

impl std::fmt::Display for Old {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.version, &self.image) {
            (Some(v), _) => write!(f, "{v}"),
            (None, Some(i)) => write!(f, "{i}"),
            (None, None) => f.write_str("the old image"),
        }
    }
}

/// Whether a failure is one IOS-XE's installer takes back by `install abort`: failed
/// post-checks (or comparisons) on an activated image that was not committed.
pub(super) fn aborts(driver: Driver, failure: &UpgradeFailure) -> bool {
    driver == Driver::IosXeInstall && failed_after_reload(failure)
}

/// A post-check failed on the new image: a check, a comparison, or a member or standby that
/// did not come back ready.
fn failed_after_reload(failure: &UpgradeFailure) -> bool {
    failure.step == Step::PostCheck
        && matches!(
            failure.reason,
            FailureReason::CheckFailed | FailureReason::MembersNotReady
        )
}

/// IOS-XE install mode after failed post-checks: `install abort` (its reload recorded before it
/// is sent, as `rollback_reload`), then wait for the old version.
pub(super) async fn abort_install(
    run: &Run<'_>,
    session: Session,
    failure: UpgradeFailure,
    on_new: &DeviceFacts,
    old: &Old,
    cancel: &CancellationToken,
) -> UpgradeFailure {
    if run.plan.committed {
        session.close().await;
        let mut failure = failure;
        failure
            .message
            .push_str("; the image was committed before, so it is not aborted");
        return failure;
    }
    let mut failure = failure;
    run.start_unstoppable(Step::RollbackReload, "install abort")
        .await;
    if let Err(e) = session.install_abort().await {
        run.emit(Step::RollbackReload, StepStatus::Failed, e.to_string());
        failure.message.push_str(&format!(
            "; install abort was refused ({e}): the auto-abort timer takes the device back when it expires"
        ));
        return failure;
    }
    run.emit(
        Step::RollbackReload,
        StepStatus::Done,
        "install abort sent: the device reloads into its committed version",
    );
    check_rolled_back(
        run,
        &RestartEvidence::since(&on_new.version),
        old,
        failure,
        cancel,
        run.plan.timeouts.reload,
    )
    .await
}

/// IOS-XE install mode, the device not back within the reload timeout after its activation:
/// the auto-abort timer takes it back to its committed version; wait for that.
pub(super) async fn await_abort_timer(
    run: &Run<'_>,
    failure: UpgradeFailure,
    old: &Old,
    cancel: &CancellationToken,
) -> UpgradeFailure {
    let t = &run.plan.timeouts;
    let wait = t.commit + t.reload;
    check_rolled_back(
        run,
        &RestartEvidence::UptimeBelow(None),
        old,
        failure,
        cancel,
        wait,
    )
    .await
}

/// Whether a failure is one the rollback answers: a failed post-check on the new image of a
/// device that boots one image from a boot variable it can be given back.
pub(super) fn applies(run: &Run<'_>, driver: Driver, failure: &UpgradeFailure) -> bool {
    run.plan.options.rollback
        && failed_after_reload(failure)
        && matches!(driver, Driver::IosBundle | Driver::Nxos)
        && run.kickstart.is_none()
}

/// Put the device back on `previous` and check it; the failure says how that went.
pub(super) async fn roll_back(
    run: &Run<'_>,
    mut session: Session,
    mut failure: UpgradeFailure,
    on_new: &DeviceFacts,
    previous: Option<String>,
    cancel: &CancellationToken,
) -> UpgradeFailure {
    let plan = run.plan;
    let driver = session.driver;
    let old = previous
        .as_deref()
        .filter(|p| !p.contains("://"))
        .map(|p| file_name(p).to_string())
        .filter(|p| p != plan.image.as_str());
    let Some(old) = old else {
        session.close().await;
        failure
            .message
            .push_str("; no rollback: the image it ran before is not known");
        return failure;
    };
    // The old image first; on IOS the new one stays as the fallback entry.
    let entries = match driver {
        Driver::Nxos => vec![driver.path(&old)],
        _ => vec![driver.path(&old), driver.path(&plan.image)],
    };
    run.start_unstoppable(
        Step::Rollback,
        format!(
            "the post-checks failed: boot {} first, then {}",
            entries.join(", "),
            driver.save_command()
        ),
    )
    .await;
    let changed = match session.set_boot(&entries).await {
        Ok(()) => session.save().await,
        Err(e) => Err(e),
    };
    if let Err(e) = changed {
        run.emit(Step::Rollback, StepStatus::Failed, e.to_string());
        session.close().await;
        failure.message.push_str(&format!(
            "; the rollback could not set the boot variable ({e}): the device runs the new image"
        ));
        return failure;
    }
    run.emit(
        Step::Rollback,
        StepStatus::Done,
        format!("boot variable {entries:?}, saved"),
    );
    // Recorded before it is sent: never sent twice.
    run.start_unstoppable(Step::RollbackReload, "reload").await;
    if let Err(e) = session.reload().await {
        run.emit(Step::RollbackReload, StepStatus::Failed, e.to_string());
        failure.message.push_str(&format!(
            "; the rollback reload was refused ({e}): the device runs the new image and boots {old} at its next reload"
        ));
        return failure;
    }
    run.emit(Step::RollbackReload, StepStatus::Done, "reload sent");
    check_rolled_back(
        run,
        &RestartEvidence::since(&on_new.version),
        &Old::image(&old),
        failure,
        cancel,
        run.plan.timeouts.reload,
    )
    .await
}

/// Wait (up to `wait`) for the device after the rollback reload and check that it runs `old`.
async fn check_rolled_back(
    run: &Run<'_>,
    evidence: &RestartEvidence,
    old: &Old,
    mut failure: UpgradeFailure,
    cancel: &CancellationToken,
    wait: std::time::Duration,
) -> UpgradeFailure {
    let t = crate::device::Timeouts {
        reload: wait,
        ..run.plan.timeouts.clone()
    };
    run.start_unstoppable(
        Step::RollbackCheck,
        format!("waiting up to {} s for {old}", wait.as_secs()),
    )
    .await;
    match run.wait_back(&t, evidence, cancel).await {
        Ok((session, facts)) => {
            session.close().await;
            let image = facts.version.image.as_deref().map(file_name);
            if old.is(&facts.version) {
                run.emit(
                    Step::RollbackCheck,
                    StepStatus::Done,
                    format!(
                        "running {} from {} again",
                        facts.version.version,
                        image.unwrap_or("?")
                    ),
                );
                failure.rolled_back = true;
                failure.message.push_str(&format!(
                    "; rolled back: the device runs {} from {} again",
                    facts.version.version,
                    image.unwrap_or("?")
                ));
            } else {
                let runs = format!(
                    "{} from {}",
                    facts.version.version,
                    image.unwrap_or("an unknown image")
                );
                run.emit(
                    Step::RollbackCheck,
                    StepStatus::Failed,
                    format!("back, but running {runs}, not {old}"),
                );
                failure.message.push_str(&format!(
                    "; the rollback did not bring {old} back: the device runs {runs}"
                ));
            }
        }
        Err(e) => {
            run.emit(Step::RollbackCheck, StepStatus::Failed, e.to_string());
            failure
                .message
                .push_str(&format!("; after the rollback reload: {e}"));
        }
    }
    failure
}

/// Finish a rollback whose reload was recorded before fleetup restarted: wait for the device
/// and check the old image, never sending that reload again. When, after the whole reload
/// timeout, the device still runs another image and has been up for longer than the time since
/// the record, the reload never reached it: the rollback runs again from its start.
pub async fn resume_rollback(
    target: &Target,
    plan: &UpgradePlan,
    events: UnboundedSender<StepEvent>,
    gate: Option<&dyn StepGate>,
    recorded_at: Option<SystemTime>,
    cancel: CancellationToken,
) -> UpgradeFailure {
    let run = Run::new(target, plan, events, gate);
    let mut failure = UpgradeFailure {
        device: target.name.clone(),
        step: Step::PostCheck,
        reason: FailureReason::CheckFailed,
        message:
            "the post-checks on the new image failed before fleetup restarted (see the events)"
                .into(),
        boot_restored: None,
        reload_sent: true,
        rolled_back: false,
        host_key: None,
    };
    let image = plan
        .previous_image
        .as_deref()
        .map(file_name)
        .filter(|i| *i != "packages.conf");
    let Some(target_old) = (match (&plan.previous_version, image) {
        (Some(v), _) => Some(Old::version(v)),
        (None, Some(i)) => Some(Old::image(i)),
        (None, None) => None,
    }) else {
        failure
            .message
            .push_str("; the rollback's target is not known: check the device");
        return failure;
    };
    let evidence = RestartEvidence::UptimeBelow(
        recorded_at.map(|at| secs_since(at) + plan.timeouts.reload.as_secs()),
    );
    let checked = check_rolled_back(
        &run,
        &evidence,
        &target_old,
        failure,
        &cancel,
        plan.timeouts.reload,
    )
    .await;
    if checked.rolled_back {
        return checked;
    }
    let Some(at) = recorded_at else {
        return checked;
    };
    // The proof that the rollback reload never left: the device is up, on another image, for
    // longer than the time since the reload was recorded (uptime is rounded down).
    let Ok((facts, _)) = read_facts(target, &plan.timeouts).await else {
        return checked;
    };
    let since = secs_since(at) + 1;
    let never_reached = !target_old.is(&facts.version)
        && facts.version.uptime_seconds().is_some_and(|up| up > since);
    if !never_reached {
        return checked;
    }
    let mut failure = checked;
    failure.message.push_str(&format!(
        "; the rollback reload never reached the device (up {} s, longer than the {since} s since it was recorded): rolling back again",
        facts.version.uptime_seconds().unwrap_or(0)
    ));
    let session = match Session::open(target, &plan.timeouts).await {
        Ok(s) => s,
        Err(e) => {
            failure
                .message
                .push_str(&format!("; cannot log in to roll back: {e}"));
            return failure;
        }
    };
    let mut session = session;
    let on_new = match session.facts().await {
        Ok(f) => f,
        Err(e) => {
            session.close().await;
            failure
                .message
                .push_str(&format!("; cannot read its facts to roll back: {e}"));
            return failure;
        }
    };
    if session.driver == Driver::IosXeInstall {
        return abort_install(&run, session, failure, &on_new, &target_old, &cancel).await;
    }
    roll_back(
        &run,
        session,
        failure,
        &on_new,
        image.map(str::to_string),
        &cancel,
    )
    .await
}
