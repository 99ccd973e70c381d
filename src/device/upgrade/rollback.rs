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
use crate::device::{DeviceFacts, RestartEvidence, Target, file_name, read_facts, wait_back};

/// Whether a failure is one the rollback answers: a failed post-check on the new image of a
/// device that boots one image from a boot variable it can be given back.
pub(super) fn applies(run: &Run<'_>, driver: Driver, failure: &UpgradeFailure) -> bool {
    run.plan.options.rollback
        && failure.step == Step::PostCheck
        && failure.reason == FailureReason::CheckFailed
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
        &old,
        failure,
        cancel,
    )
    .await
}

/// Wait for the device after the rollback reload and check that it runs `old`.
async fn check_rolled_back(
    run: &Run<'_>,
    evidence: &RestartEvidence,
    old: &str,
    mut failure: UpgradeFailure,
    cancel: &CancellationToken,
) -> UpgradeFailure {
    let t = &run.plan.timeouts;
    run.start_unstoppable(
        Step::RollbackCheck,
        format!("waiting up to {} s for {old}", t.reload.as_secs()),
    )
    .await;
    match wait_back(run.target, t, evidence, cancel).await {
        Ok((session, facts)) => {
            session.close().await;
            let image = facts.version.image.as_deref().map(file_name);
            if image == Some(old) {
                run.emit(
                    Step::RollbackCheck,
                    StepStatus::Done,
                    format!("running {} from {old} again", facts.version.version),
                );
                failure.rolled_back = true;
                failure.message.push_str(&format!(
                    "; rolled back: the device runs {} from {old} again",
                    facts.version.version
                ));
            } else {
                let runs = image.unwrap_or("an unknown image");
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
    let Some(old) = plan.previous_image.as_deref().map(file_name) else {
        failure
            .message
            .push_str("; the rollback's target is not known: check the device");
        return failure;
    };
    let evidence = RestartEvidence::UptimeBelow(
        recorded_at.map(|at| secs_since(at) + plan.timeouts.reload.as_secs()),
    );
    let checked = check_rolled_back(&run, &evidence, old, failure, &cancel).await;
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
    let never_reached = facts.version.image.as_deref().map(file_name) != Some(old)
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
    roll_back(
        &run,
        session,
        failure,
        &on_new,
        Some(old.to_string()),
        &cancel,
    )
    .await
}
