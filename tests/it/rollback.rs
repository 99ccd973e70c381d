//! The way back: a device whose post-checks fail on the new image is put back on the image it
//! ran before (`options.rollback: on_failure`), with one more reload that is recorded before it
//! is sent and never sent twice, across a crash of fleetup too.

use std::time::Duration;

use fleetup::sim::Fault;
use serde_json::Value;

use crate::support::*;

/// The c2960x persona's own image and version.
const OLD_IMAGE: &str = "c2960x-universalk9-mz.152-4.E10.bin";
const OLD_VERSION: &str = "15.2(4)E10";

/// A playbook whose post-check fails on the new image: `show version` must not show it.
fn failing_post_check(rollback: &str) -> String {
    playbook(&format!(
        "strategy:\n  canary: 0\nchecks:\n  post:\n    commands:\n      - run: show version\n        must_not_contain: \"{IMAGE_VERSION}\"\noptions:\n  rollback: {rollback}\n"
    ))
}

fn steps(events: &[Value], device: &str, kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["device"] == device && e["kind"] == kind)
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect()
}

/// With `rollback: on_failure` the device ends on its old image, reloaded exactly twice, and
/// the job is `rolled_back`, a failure of its own; with `never` it stays failed on the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_post_check_rolls_the_device_back_to_its_old_image() {
    let rig = Rig::start(2, |_| {}).await;
    let names = rig.names();
    let book = |rollback: &str, device: &str| {
        failing_post_check(rollback).replace("  groups: [lab]\n", &format!("  names: [{device}]\n"))
    };

    let id = rig.submit(&book("on_failure", &names[0])).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &names[0]);
    assert_eq!(job["state"], "rolled_back", "{d:#}");
    assert_eq!(d["progress"]["rolled_back"], 1, "{d:#}");
    assert_eq!(d["progress"]["failed"], 1, "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("check_failed")
            && error.contains(&format!(
                "rolled back: the device runs {OLD_VERSION} from {OLD_IMAGE} again"
            )),
        "{error}"
    );
    let st = rig.lab.state(&names[0]).unwrap();
    assert_eq!(st.reload_count, 2, "reloaded exactly twice");
    assert_eq!(st.version, OLD_VERSION);
    assert_eq!(
        st.boot_variable.first().map(String::as_str),
        Some(format!("flash:{OLD_IMAGE}").as_str()),
        "{:?}",
        st.boot_variable
    );
    assert!(!st.unsaved_changes);
    let events = rig.events(&id).await;
    let started = steps(&events, &names[0], "step_started");
    let reloads = started
        .iter()
        .filter(|s| *s == "reload" || *s == "rollback_reload")
        .count();
    assert_eq!(reloads, 2, "{started:?}");
    for step in ["rollback", "rollback_reload", "rollback_check"] {
        assert!(started.iter().any(|s| s == step), "{step}: {started:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["device"] == names[0].as_str() && e["kind"] == "device_rolled_back"),
        "{events:#?}"
    );

    // Without rollback the device stays on the new image, failed.
    let id = rig.submit(&book("never", &names[1])).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(job_of(&d, &names[1])["state"], "failed", "{d:#}");
    let st = rig.lab.state(&names[1]).unwrap();
    assert_eq!(st.reload_count, 1);
    assert_eq!(st.version, IMAGE_VERSION);
    rig.stop().await;
}

/// A crash of fleetup between the record of the rollback reload and its sending: after the
/// restart fleetup neither reloads blindly nor gives up. Once the device is found back on the
/// new image, its uptime, longer than the time since the record, proves the rollback reload
/// never reached it; the rollback then runs, and the device is reloaded exactly twice in all.
/// (A Nexus: NX-OS tells its uptime to the second, IOS to the minute.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_reload_recorded_but_never_sent_is_sent_once_after_the_restart() {
    const NX: &str = "nxos.10.2.5.M.bin";
    const NX_OLD: &str = "nxos.9.3.8.bin";
    let mut rig = Rig::options(1)
        .lab(|c| {
            c.personas = vec!["n9k".into()];
            c.boot_time = Duration::from_millis(1500);
        })
        .serve_process()
        .start()
        .await;
    let device = rig.names()[0].clone();
    let image = rig.dir.path().join(NX);
    write_random_file(&image, 2 * 1024 * 1024 + 5, 91);
    let r = rig
        .post("/api/v1/images")
        .multipart(multipart_file(&image, NX))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let id = rig
        .submit(&format!(
            "name: nx-rollback\ntargets:\n  groups: [lab]\nimage:\n  nxos: {NX}\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\nstrategy:\n  canary: 0\n  timeouts: {{poll: 1, reload: 5s}}\nchecks:\n  post:\n    commands:\n      - run: show version\n        must_not_contain: \"10.2(5)\"\noptions:\n  rollback: on_failure\n"
        ))
        .await;
    // Hold the device before its post-checks: pause while the installer reloads it; the next
    // step waits. The device boots the new image meanwhile.
    eventually("the install (the first reload) sent", || async {
        let d = rig.try_detail(&id).await?;
        (jobs(&d).first()?["reload_sent"] == true).then_some(())
    })
    .await;
    assert_eq!(rig.action(&id, "pause").await, reqwest::StatusCode::OK);
    eventually("the device held before its post-checks", || async {
        let events = rig.events(&id).await;
        events
            .iter()
            .any(|e| {
                e["kind"] == "held"
                    && matches!(e["step"].as_str(), Some("wait_back" | "post_check"))
            })
            .then_some(())
    })
    .await;
    assert!(rig.lab.wait_until_up(&device).await);
    // As after post-checks: the device has been up a few seconds when the crash comes.
    eventually(
        "the device up on the new image for three seconds",
        || async {
            let st = rig.lab.state(&device)?;
            let since: jiff::Timestamp = st.up_since?.parse().ok()?;
            (st.running_image.ends_with(NX)
                && jiff::Timestamp::now().duration_since(since)
                    > jiff::SignedDuration::from_secs(3))
            .then_some(())
        },
    )
    .await;
    rig.kill_serve();
    // What fleetup writes just before it sends the rollback reload: the crash landed after.
    let db = crate::support::open_db(&rig.data_dir()).await;
    db.record_step(
        &id,
        &device,
        "rollback_reload",
        Some(fleetup::rollout::model::StepState::Started),
        fleetup::rollout::model::EventKind::StepStarted,
        "reload",
    )
    .await
    .unwrap();
    assert!(
        db.jobs(&id).await.unwrap()[0].rollback_sent,
        "the crash window is set up"
    );
    assert_eq!(rig.lab.state(&device).unwrap().reload_count, 1);

    rig.start_serve().await;
    assert_eq!(rig.action(&id, "resume").await, reqwest::StatusCode::OK);
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &device);
    assert_eq!(job["state"], "rolled_back", "{d:#}");
    let st = rig.lab.state(&device).unwrap();
    assert_eq!(st.reload_count, 2, "reloaded exactly twice in all");
    assert!(st.running_image.ends_with(NX_OLD), "{}", st.running_image);
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("never reached the device"), "{error}");
    rig.stop().await;
}

const XE_IMAGE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";

/// A rig of c9300 devices (IOS-XE install mode) with `XE_IMAGE` in the store; one minute of
/// the auto-abort timer lasts `minute` (fleetup asks for 30).
async fn iosxe_rig(devices: usize, minute: Duration) -> Rig {
    let rig = Rig::start(devices, |c| {
        c.personas = vec!["c9300".into()];
        c.abort_timer_minute = minute;
    })
    .await;
    let path = rig.dir.path().join(XE_IMAGE);
    write_random_file(&path, 300_000, 61);
    let r = rig
        .post("/api/v1/images")
        .multipart(multipart_file(&path, XE_IMAGE))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    rig
}

fn iosxe_book(device: &str, post: &str) -> String {
    playbook(&format!("strategy:\n  canary: 0\n{post}"))
        .replace("  groups: [lab]\n", &format!("  names: [{device}]\n"))
        .replace(
            &format!("  ios: {IMAGE}\n"),
            &format!("  iosxe: {XE_IMAGE}\n"),
        )
}

/// IOS-XE install mode: the image is added, activated under the auto-abort timer, and
/// committed only once the post-checks pass; a device whose post-checks fail is aborted back
/// to its committed version (its second reload), and ends `rolled_back`. A committed device is
/// never aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ios_xe_commits_after_its_checks_or_aborts_back_to_the_old_version() {
    // A 30-minute timer of 60 s: far more than the upgrade takes.
    let rig = iosxe_rig(2, Duration::from_secs(2)).await;
    let names = rig.names();
    let old_version = rig.lab.state(&names[0]).unwrap().version;

    let id = rig.submit(&iosxe_book(&names[0], "")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let st = rig.lab.state(&names[0]).unwrap();
    assert_eq!(st.reload_count, 1);
    assert_eq!(st.version, "17.09.04a");
    assert!(!st.install_uncommitted, "committed");
    assert!(!st.abort_timer_running);
    let cmds = &st.last_commands;
    let at = |want: &str| {
        cmds.iter()
            .position(|c| c.trim() == want)
            .unwrap_or_else(|| panic!("never got `{want}`: {cmds:#?}"))
    };
    let add = at(&format!("install add file flash:{XE_IMAGE}"));
    let activate = at("install activate auto-abort-timer 30");
    let commit = at("install commit");
    assert!(add < activate && activate < commit, "{cmds:#?}");
    assert!(
        !cmds.iter().any(|c| c.trim() == "install abort"),
        "{cmds:#?}"
    );

    // Post-checks that fail on the new version: aborted back.
    let post = "checks:\n  post:\n    commands:\n      - run: show version\n        must_not_contain: \"17.09.04a\"\n";
    let id = rig.submit(&iosxe_book(&names[1], post)).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &names[1]);
    assert_eq!(job["state"], "rolled_back", "{d:#}");
    let st = rig.lab.state(&names[1]).unwrap();
    assert_eq!(st.reload_count, 2, "activated, then aborted");
    assert_eq!(st.version, old_version);
    assert!(!st.install_uncommitted);
    assert!(
        st.last_commands.iter().any(|c| c.trim() == "install abort"),
        "{:#?}",
        st.last_commands
    );
    assert!(
        !st.last_commands
            .iter()
            .any(|c| c.trim() == "install commit"),
        "{:#?}",
        st.last_commands
    );
    rig.stop().await;
}

/// An IOS-XE device that stays away after its activation (`no-return-until-abort`) comes back
/// only when its auto-abort timer expires, on its old version: fleetup waits for that and
/// reports it `rolled_back`, having sent no `install abort`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ios_xe_device_that_never_returns_is_rolled_back_by_its_timer() {
    // A 30-minute timer of 3 s.
    let rig = iosxe_rig(1, Duration::from_millis(100)).await;
    let name = rig.names()[0].clone();
    let old_version = rig.lab.state(&name).unwrap().version;
    assert!(rig.lab.set_fault(&name, Fault::NoReturnUntilAbort));
    let book =
        iosxe_book(&name, "").replace("timeouts: {poll: 1}", "timeouts: {poll: 1, reload: 2s}");
    let id = rig.submit(&book).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &name);
    assert_eq!(job["state"], "rolled_back", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("never_came_back"), "{error}");
    let st = rig.lab.state(&name).unwrap();
    assert_eq!(st.version, old_version);
    assert_eq!(
        st.reload_count, 2,
        "the activation, then the timer's rollback"
    );
    assert!(
        !st.last_commands.iter().any(|c| c.trim() == "install abort"),
        "{:#?}",
        st.last_commands
    );
    rig.stop().await;
}
