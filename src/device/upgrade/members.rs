//! Stacks and chassis with two supervisors in the upgrade: what must hold before the first
//! change and after the reload, and the copies a classic stack needs.
//!
//! - **Before any change** (`pre_check`): every stack member Ready in `show switch` and on one
//!   version (`show version`'s member table); a chassis with two supervisors shows ACTIVE and
//!   STANDBY HOT (`show redundancy`; NX-OS `show system redundancy status` and `show
//!   module`), both on one version. Each member's flash (`flashN:` on a classic stack,
//!   `flash-N:` in install mode) has room for the image.
//! - **Classic (bundle-mode) stacks**: every member boots from its own flash, so the image is
//!   copied from the active member's flash to each other member's and verified there, and the
//!   boot variable is set with `boot system switch all` and read back on every member
//!   ([`Session::set_boot`]). Install mode copies to the members (and to the standby
//!   supervisor) by itself.
//! - **Two supervisors in bundle mode** (a Catalyst 9400 or 4500, an ASR 1000 booted from a
//!   `.bin`): the standby boots from its own flash too (`stby-bootflash:`, `slavebootflash:`),
//!   so the image is copied there and verified the same way; the boot variable reaches the
//!   standby with the configuration. A standby whose flash cannot be found fails the device
//!   before any change: reloaded without the image, it would come back on the old version,
//!   out of SSO.
//! - **After the reload** (`post_check`): the same members back, every one Ready and on the
//!   new version; the standby supervisor HOT again on the new version. Members and standbys
//!   come up minutes after the active one, so this is waited for, up to
//!   `strategy.timeouts.members`; a member that never does fails the device with
//!   `members_not_ready`, naming it.

use tokio::time::Instant;

use super::{FailureReason, Run, Step, StepStatus, UpgradeFailure};
use crate::device::members::{self, StackMember};
use crate::device::parse::Md5Error;
use crate::device::{DeviceError, DeviceFacts, Driver, Session};
use crate::inventory::Platform;

/// What the device is made of, as far as an upgrade cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One switch, router or supervisor.
    #[default]
    Single,
    /// A StackWise stack: the active member's number and every member's, in `show switch`
    /// order.
    Stack { active: u32, numbers: Vec<u32> },
    /// A chassis with two supervisors or route processors; in bundle mode, the standby's own
    /// flash (`stby-bootflash:`), where the image must be copied too.
    Supervisors { standby_fs: Option<String> },
}

/// The file system of stack member `n`'s own flash: `flash2:` on a classic stack, `flash-2:`
/// in install mode.
fn member_fs(driver: Driver, n: u32) -> String {
    match driver {
        Driver::IosXeInstall => format!("flash-{n}:"),
        _ => format!("flash{n}:"),
    }
}

fn redundancy_command(platform: Platform) -> &'static str {
    match platform {
        Platform::Nxos => "show system redundancy status",
        _ => "show redundancy",
    }
}

/// Before any change: what the device is made of, and whether every part is ready. A stack
/// with a member not Ready or on another version, or a standby supervisor not hot, fails the
/// device here with `members_not_ready`, untouched.
pub(super) async fn pre_check(
    run: &Run<'_>,
    session: &mut Session,
    before: &DeviceFacts,
) -> Result<Topology, UpgradeFailure> {
    let step = Step::PreCheck;
    let platform = run.target.platform;
    if before.members.len() > 1 {
        run.start(
            step,
            "show switch: every stack member Ready and on one version",
        )
        .await?;
        let rows = stack_of(session, before)
            .await
            .map_err(|e| run.fail_with(step, e))?;
        let (rows, provisioned) = joined(rows);
        let Some(active) = active_of(&rows) else {
            return Err(run.fail(
                step,
                FailureReason::MembersNotReady,
                "show switch names no active member".into(),
            ));
        };
        if let Err(why) = members::stack_ready(&rows, &before.members) {
            return Err(run.fail(step, FailureReason::MembersNotReady, why));
        }
        let numbers: Vec<u32> = rows.iter().map(|m| m.number).collect();
        run.emit(
            step,
            StepStatus::Done,
            format!(
                "a stack of {}: {}; every member Ready on {}{provisioned}",
                rows.len(),
                roles(&rows),
                before.version.version
            ),
        );
        return Ok(Topology::Stack { active, numbers });
    }
    let command = redundancy_command(platform);
    let red = match session.run(command).await {
        Ok(out) => match members::show_redundancy(&out) {
            Ok(red) => red,
            // Not a layout with supervisor sections: one supervisor.
            Err(_) => return Ok(Topology::Single),
        },
        // A platform without the command has one.
        Err(DeviceError::Rejected { .. }) => return Ok(Topology::Single),
        Err(e) => return Err(run.fail_with(Step::Facts, e)),
    };
    if !red.has_peer() {
        return Ok(Topology::Single);
    }
    run.start(
        step,
        format!("{command}: ACTIVE and STANDBY HOT, both on one version"),
    )
    .await?;
    match supervisors(session, platform, &before.version.version).await {
        Ok(Ok(summary)) => {
            run.emit(step, StepStatus::Done, summary);
            if session.driver != Driver::IosBundle {
                return Ok(Topology::Supervisors { standby_fs: None });
            }
            match standby_fs(session, before).await {
                Ok(fs) => Ok(Topology::Supervisors {
                    standby_fs: Some(fs),
                }),
                Err(tried) => Err(run.fail(
                    step,
                    FailureReason::MembersNotReady,
                    format!(
                        "two supervisors in bundle mode, but no standby file system answers dir (tried {tried}): the image could not reach the standby, which would come back on the old version"
                    ),
                )),
            }
        }
        Ok(Err(why)) => Err(run.fail(
            step,
            FailureReason::MembersNotReady,
            format!("{why}: both supervisors must be ready before an upgrade"),
        )),
        Err(e) => Err(run.fail_with(step, e)),
    }
}

/// After a restart of fleetup, with the device back: what it is made of, read again (the
/// members it had before are the ones `show switch` still lists; one that left is listed as
/// `Removed` or `Provisioned` and fails the check).
pub(super) async fn rediscover(
    session: &mut Session,
    platform: Platform,
    after: &DeviceFacts,
) -> Topology {
    if after.members.len() > 1
        && let Ok(rows) = stack_of(session, after).await
    {
        let active = active_of(&rows).unwrap_or(0);
        let numbers = rows.iter().map(|m| m.number).collect();
        return Topology::Stack { active, numbers };
    }
    match session.run(redundancy_command(platform)).await {
        Ok(out) if members::show_redundancy(&out).is_ok_and(|r| r.has_peer()) => {
            let standby_fs = if session.driver == Driver::IosBundle {
                standby_fs(session, after).await.ok()
            } else {
                None
            };
            Topology::Supervisors { standby_fs }
        }
        _ => Topology::Single,
    }
}

/// The standby supervisor's own flash in bundle mode, the first of its usual names that
/// answers `dir`: `stby-` before the active one's flash (Catalyst 9400, ASR 1000) or
/// `slave` (Catalyst 4500 and 6500), for the file system the device booted from and the
/// usual ones. Otherwise the names tried.
async fn standby_fs(session: &mut Session, facts: &DeviceFacts) -> Result<String, String> {
    let candidates = standby_fs_candidates(facts.version.image.as_deref());
    for fs in &candidates {
        if session.dir(fs).await.is_ok() {
            return Ok(fs.clone());
        }
    }
    Err(candidates.join(", "))
}

/// The names a standby supervisor's flash goes by, for a device booted from `image`.
fn standby_fs_candidates(image: Option<&str>) -> Vec<String> {
    let booted = image
        .and_then(|i| i.split_once(':'))
        // A network boot (`tftp://…`) names no flash.
        .filter(|(_, rest)| !rest.starts_with("//"))
        .map(|(fs, _)| fs.to_ascii_lowercase())
        .filter(|fs| !fs.is_empty() && fs.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let mut names = Vec::new();
    for fs in booted
        .into_iter()
        .chain(["bootflash".into(), "flash".into()])
    {
        for name in [format!("stby-{fs}:"), format!("slave{fs}:")] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The stack's `show switch` as the facts read it, or read now when the facts have none (their
/// read failed: this one says why).
async fn stack_of(
    session: &mut Session,
    facts: &DeviceFacts,
) -> Result<Vec<StackMember>, DeviceError> {
    if facts.stack.is_empty() {
        show_switch(session).await
    } else {
        Ok(facts.stack.clone())
    }
}

/// The active member's number: the `Active` row, else the one this session is on.
fn active_of(rows: &[StackMember]) -> Option<u32> {
    rows.iter()
        .find(|m| m.role == "Active")
        .or_else(|| rows.iter().find(|m| m.this_member))
        .map(|m| m.number)
}

async fn show_switch(session: &mut Session) -> Result<Vec<StackMember>, DeviceError> {
    let out = session.run("show switch").await?;
    members::show_switch(&out).map_err(|source| DeviceError::Parse {
        device: session.device().to_string(),
        command: "show switch".into(),
        source,
    })
}

/// The members that joined the stack, and a note of the provisioned slots that never did
/// (configured for a switch that is not there: not a member).
fn joined(rows: Vec<StackMember>) -> (Vec<StackMember>, String) {
    let (joined, provisioned): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|m| m.state != "Provisioned" || m.hw_version.is_some());
    let note = if provisioned.is_empty() {
        String::new()
    } else {
        format!(
            " (provisioned slots without a switch, not checked: {})",
            provisioned
                .iter()
                .map(|m| m.number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    (joined, note)
}

fn roles(rows: &[StackMember]) -> String {
    rows.iter()
        .map(|m| format!("{} {}", m.number, m.role))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Both supervisors ready, the standby on `version`: a summary, or why not.
async fn supervisors(
    session: &mut Session,
    platform: Platform,
    version: &str,
) -> Result<Result<String, String>, DeviceError> {
    let command = redundancy_command(platform);
    let out = session.run(command).await?;
    let red = members::show_redundancy(&out).map_err(|source| DeviceError::Parse {
        device: session.device().to_string(),
        command: command.into(),
        source,
    })?;
    if let Err(why) = members::supervisors_ready(&red, Some(version)) {
        return Ok(Err(why));
    }
    let mut standby_version = red.standby().and_then(|s| s.version.clone());
    if platform == Platform::Nxos {
        // NX-OS prints the supervisors' software in `show module` only.
        let out = session.run("show module").await?;
        let modules = members::show_module(&out).map_err(|source| DeviceError::Parse {
            device: session.device().to_string(),
            command: "show module".into(),
            source,
        })?;
        let standby = modules.iter().find(|m| {
            m.is_supervisor()
                && m.status
                    .as_deref()
                    .is_some_and(|s| s.to_ascii_lowercase().contains("standby"))
        });
        let Some(standby) = standby else {
            return Ok(Err("show module lists no standby supervisor".into()));
        };
        match standby.software.as_deref() {
            Some(sw) if !members::same_version(sw, version) => {
                return Ok(Err(format!(
                    "the standby supervisor (slot {}) runs {sw}, not {version}",
                    standby.slot
                )));
            }
            Some(sw) => standby_version = Some(sw.to_string()),
            None => {}
        }
    }
    let location = red
        .standby()
        .and_then(|s| s.location.clone())
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    Ok(Ok(format!(
        "ACTIVE and STANDBY HOT{location}, the standby on {}",
        standby_version.as_deref().unwrap_or(version)
    )))
}

/// The stack's members back: every one of `numbers` Ready and on `version`.
async fn stack(
    session: &mut Session,
    numbers: &[u32],
    version: &str,
) -> Result<Result<String, String>, DeviceError> {
    let rows = show_switch(session).await?;
    let out = session.run("show version").await?;
    let versions = members::show_version_members(&out);
    Ok(
        members::stack_back(numbers, &rows, &versions, version).map(|()| {
            format!(
                "all {} stack members back: {}; every one Ready on {version}",
                numbers.len(),
                roles(&rows)
            )
        }),
    )
}

/// After the reload, once the active unit runs `version`: wait for every member and the
/// standby supervisor, up to `strategy.timeouts.members`.
pub(super) async fn post_check(
    run: &Run<'_>,
    session: &mut Session,
    topology: &Topology,
    version: &str,
) -> Result<(), UpgradeFailure> {
    let step = Step::PostCheck;
    let what = match topology {
        Topology::Single => return Ok(()),
        Topology::Stack { numbers, .. } => format!(
            "show switch: members {} back, Ready and on {version}",
            numbers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Topology::Supervisors { .. } => format!(
            "{}: the standby supervisor HOT again on {version}",
            redundancy_command(run.target.platform)
        ),
    };
    let limit = run.plan.timeouts.members;
    run.start_unstoppable(
        step,
        format!("{what} (waiting up to {} s)", limit.as_secs()),
    )
    .await;
    let started = Instant::now();
    let deadline = started + limit;
    let mut last: Option<String> = None;
    loop {
        let verdict = match topology {
            Topology::Stack { numbers, .. } => stack(session, numbers, version).await,
            Topology::Supervisors { .. } => {
                supervisors(session, run.target.platform, version).await
            }
            Topology::Single => return Ok(()),
        };
        let why = match verdict {
            Ok(Ok(summary)) => {
                run.emit(step, StepStatus::Done, summary);
                return Ok(());
            }
            Ok(Err(why)) => why,
            Err(e) => {
                let mut failure = run.fail_with(step, e);
                failure.reload_sent = true;
                return Err(failure);
            }
        };
        let now = Instant::now();
        if now >= deadline {
            let mut failure = run.fail(
                step,
                FailureReason::MembersNotReady,
                format!(
                    "{why} ({} s after the device came back; strategy.timeouts.members)",
                    now.duration_since(started).as_secs()
                ),
            );
            failure.reload_sent = true;
            return Err(failure);
        }
        if last.as_deref() != Some(why.as_str()) {
            run.emit(step, StepStatus::Started, format!("waiting: {why}"));
            last = Some(why);
        }
        // The device tells nothing when a member joins: ask again after the poll interval.
        tokio::time::sleep(run.plan.timeouts.poll_interval.min(deadline - now)).await;
    }
}

/// Before the changes, once the image is verified on the active member's flash: each other
/// stack member's flash has room, and on a classic stack (each member boots from its own
/// flash) holds the verified image too; so does a bundle-mode standby supervisor's.
pub(super) async fn stage(
    run: &Run<'_>,
    session: &mut Session,
    topology: &Topology,
    image: &str,
    md5: &str,
    needed: u64,
) -> Result<(), UpgradeFailure> {
    let driver = session.driver;
    let places: Vec<Place> = match topology {
        Topology::Stack { active, numbers } => numbers
            .iter()
            .filter(|&n| n != active)
            .map(|&n| Place {
                fs: member_fs(driver, n),
                who: format!("stack member {n}"),
                // `install add` copies to every member itself.
                copy: driver == Driver::IosBundle,
            })
            .collect(),
        Topology::Supervisors {
            standby_fs: Some(fs),
        } => vec![Place {
            fs: fs.clone(),
            who: "the standby supervisor".into(),
            copy: true,
        }],
        _ => Vec::new(),
    };
    for place in &places {
        stage_on(run, session, place, image, md5, needed).await?;
    }
    Ok(())
}

/// A member's or standby's own flash, as `stage` works on it.
struct Place {
    fs: String,
    /// `stack member 2`, `the standby supervisor`.
    who: String,
    /// Whether the image must be copied there (it boots from it) or only fit.
    copy: bool,
}

async fn stage_on(
    run: &Run<'_>,
    session: &mut Session,
    place: &Place,
    image: &str,
    md5: &str,
    needed: u64,
) -> Result<(), UpgradeFailure> {
    let Place { fs, who, copy } = place;
    let path = format!("{fs}{image}");
    run.start(Step::FreeSpace, format!("dir {fs} ({who})"))
        .await?;
    let mut listing = session
        .dir(fs)
        .await
        .map_err(|e| run.fail_with(Step::FreeSpace, e))?;
    if *copy && listing.file(image).is_some() {
        match session.verify_md5_at(&path, md5).await {
            Ok(()) => {
                run.emit(
                    Step::FilePresent,
                    StepStatus::Done,
                    format!("{image} already on {who}'s {fs}, MD5 verified"),
                );
                return Ok(());
            }
            Err(DeviceError::Md5 {
                source: Md5Error::Mismatch { .. },
                ..
            }) => {
                run.emit(
                    Step::FilePresent,
                    StepStatus::Done,
                    format!("{path} has another MD5: deleting it"),
                );
                session
                    .delete_at(&path)
                    .await
                    .map_err(|e| run.fail_with(Step::FilePresent, e))?;
                listing = session
                    .dir(fs)
                    .await
                    .map_err(|e| run.fail_with(Step::FreeSpace, e))?;
            }
            Err(e) => return Err(run.fail_with(Step::FilePresent, e)),
        }
    }
    match listing.bytes_free {
        Some(free) if free < needed => {
            return Err(run.fail(
                Step::FreeSpace,
                FailureReason::FlashFull,
                format!(
                    "{who}: {fs} has {free} bytes free, {needed} needed for {image}; delete old files there"
                ),
            ));
        }
        Some(free) => run.emit(
            Step::FreeSpace,
            StepStatus::Done,
            format!("{who}: {free} bytes free on {fs}, {needed} needed"),
        ),
        None => run.emit(
            Step::FreeSpace,
            StepStatus::Done,
            format!("{who}: {fs} does not report its free space; the copy will tell"),
        ),
    }
    if !*copy {
        return Ok(());
    }
    let from = session.driver.path(image);
    run.start(Step::Copy, format!("copy {from} {path} ({who})"))
        .await?;
    let copied = session
        .copy_local(&from, &path)
        .await
        .map_err(|e| run.fail_with(Step::Copy, e))?;
    run.emit(
        Step::Copy,
        StepStatus::Done,
        format!(
            "{} bytes to {who}'s {fs}",
            copied.bytes.map_or("?".to_string(), |b| b.to_string())
        ),
    );
    run.start(Step::VerifyMd5, format!("verify /md5 {path}"))
        .await?;
    if let Err(e) = session.verify_md5_at(&path, md5).await {
        let mut failure = run.fail_with(Step::VerifyMd5, e);
        failure.message = format!("{who}: {}", failure.message);
        if failure.reason == FailureReason::CorruptImage && session.delete_at(&path).await.is_ok() {
            failure
                .message
                .push_str(&format!("; the bad copy was deleted from {fs}"));
        }
        return Err(failure);
    }
    run.emit(
        Step::VerifyMd5,
        StepStatus::Done,
        format!("MD5 {md5} verified on {who}'s {fs}"),
    );
    Ok(())
}

/// The old image's files on the other members' own flashes (classic stacks) and the standby's
/// (bundle mode), for the cleanup.
pub(super) fn member_paths(topology: &Topology, driver: Driver, file: &str) -> Vec<String> {
    match topology {
        Topology::Stack { active, numbers } if driver == Driver::IosBundle => numbers
            .iter()
            .filter(|&n| n != active)
            .map(|&n| format!("{}{file}", member_fs(driver, n)))
            .collect(),
        Topology::Supervisors {
            standby_fs: Some(fs),
        } => vec![format!("{fs}{file}")],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standby_flash_is_looked_for_under_the_names_cisco_gives_it() {
        // An ASR 1000 booted from its hard disk: that one's standby first.
        assert_eq!(
            standby_fs_candidates(Some("harddisk:asr1000-universalk9.16.09.04.SPA.bin")),
            [
                "stby-harddisk:",
                "slaveharddisk:",
                "stby-bootflash:",
                "slavebootflash:",
                "stby-flash:",
                "slaveflash:"
            ]
        );
        // A Catalyst 4500 (`slavebootflash:`) or 9400 (`stby-bootflash:`) from bootflash:.
        assert_eq!(
            standby_fs_candidates(Some("bootflash:cat4500es8-universalk9.SPA.03.11.03.E.bin")),
            [
                "stby-bootflash:",
                "slavebootflash:",
                "stby-flash:",
                "slaveflash:"
            ]
        );
        // Nothing usable in the path: the usual names only.
        assert_eq!(standby_fs_candidates(None).len(), 4);
        assert_eq!(
            standby_fs_candidates(Some("tftp://10.0.0.1/x.bin")).len(),
            4
        );
    }
}
