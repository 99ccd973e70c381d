//! The way back: a device whose post-checks fail on the new image is put back on the image it
//! ran before (`options.rollback: on_failure`), with one more reload that is recorded before it
//! is sent and never sent twice, across a crash of fleetup too.

use std::time::Duration;

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
    let db = fleetup::store::Db::open(&rig.data_dir().join("fleetup.db"))
        .await
        .unwrap();
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
