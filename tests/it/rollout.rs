//! Fleet rollouts end to end: fleetup's API, engine, drivers and TFTP server against the
//! simulated fleet, everything over real sockets.

use std::time::Duration;

use fleetup::rollout::{Clock, ManualClock};
use fleetup::sim::{Fault, Lab};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{
    IMAGE, IMAGE_VERSION, Rig, TOKEN, eventually, job_of, jobs, multipart_file, playbook,
    write_random_file,
};

/// The boot variable names only files that exist on flash, and the first one verifies.
fn boot_variable_valid(lab: &Lab, name: &str) -> bool {
    let st = lab.state(name).unwrap();
    let files: Vec<String> = st.flash.files.iter().map(|f| f.name.clone()).collect();
    !st.boot_variable.is_empty()
        && st.boot_variable.iter().all(|b| {
            let f = b.rsplit([':', '/']).next().unwrap_or(b);
            files.iter().any(|x| x == f)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_devices_canary_then_waves() {
    let rig = Rig::start(20, |_| {}).await;
    let id = rig
        .submit(&playbook(
            "strategy:\n  canary: 1\n  waves: [\"25%\", \"100%\"]\n  concurrency: 8\n",
        ))
        .await;
    let d = rig
        .wait_state(
            &id,
            &["completed", "completed_with_failures", "halted", "aborted"],
        )
        .await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let waves = d["waves"].as_array().unwrap();
    let sizes: Vec<usize> = waves
        .iter()
        .map(|w| w["devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        sizes,
        vec![1, 5, 14],
        "canary 1, 25% of 19 rounds up to 5, then the rest"
    );
    for j in jobs(&d) {
        assert_eq!(j["state"], "succeeded", "{j:#}");
        assert_eq!(j["new_version"], IMAGE_VERSION);
    }
    // Each device really runs the new image, reloaded exactly once, with a valid boot variable.
    for name in rig.names() {
        let st = rig.lab.state(&name).unwrap();
        assert_eq!(st.version, IMAGE_VERSION, "{name}");
        assert_eq!(st.reload_count, 1, "{name}");
        assert!(
            st.running_image.ends_with(IMAGE),
            "{name}: {}",
            st.running_image
        );
        assert!(
            boot_variable_valid(&rig.lab, &name),
            "{name}: {:?}",
            st.boot_variable
        );
    }
    // Waves ran in order: no device of a wave started before the previous wave finished.
    let events = rig.events(&id).await;
    let finished: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "wave_finished")
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let started: Vec<i64> = events
        .iter()
        .filter(|e| e["kind"] == "wave_started")
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(started.len(), 3);
    assert!(
        started[1] > finished[0] && started[2] > finished[1],
        "waves overlap"
    );
    // The inventory knows the new facts; the report says old -> new.
    let dev: Value = rig
        .app()
        .get(&format!("/api/v1/devices/{}", rig.names()[0]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dev["facts"]["version"], IMAGE_VERSION);
    let csv = rig
        .app()
        .get(&format!("/api/v1/rollouts/{id}/report?format=csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains(&format!("15.2(4)E10,{IMAGE_VERSION}")),
        "{csv}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn playbook_check_commands_run_before_and_after() {
    let rig = Rig::start(2, |_| {}).await;
    // Passing checks: the rollout completes, each check reported.
    let checks = format!(
        "checks:\n  pre:\n    commands:\n      - run: show version\n        must_contain: Cisco IOS Software\n  post:\n    commands:\n      - run: show version\n        must_contain: \"Version {IMAGE_VERSION}\"\n        must_not_contain: 15.2(4)E10\n"
    );
    let id = rig
        .submit(&playbook(&format!(
            "strategy:\n  canary: 0\n  concurrency: 2\n{checks}"
        )))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let events = rig.events(&id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["step"] == "pre_check" && e["kind"] == "step_done")
            .count(),
        2
    );
    assert!(events.iter().any(
        |e| e["step"] == "post_check" && e["message"].as_str().unwrap().contains("as expected")
    ));
    rig.stop().await;

    // A failing pre-check stops the device before any change.
    let rig = Rig::start(1, |_| {}).await;
    let bad = "checks:\n  pre:\n    commands:\n      - run: show version\n        must_not_contain: WS-C2960X\n";
    let id = rig
        .submit(&playbook(&format!("strategy:\n  canary: 0\n{bad}")))
        .await;
    let d = rig.wait_end(&id).await;
    let job = &jobs(&d)[0];
    assert_eq!(job["state"], "failed", "{d:#}");
    assert!(
        job["error"].as_str().unwrap().contains("check_failed"),
        "{job:#}"
    );
    let st = rig.lab.state(&rig.names()[0]).unwrap();
    assert!(
        !st.flash.files.iter().any(|f| f.name == IMAGE),
        "copied despite the failed pre-check"
    );
    assert_eq!(st.reload_count, 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ftp_rollout_with_one_time_accounts() {
    let rig = Rig::start(2, |_| {}).await;
    let id = rig
        .submit(
            &playbook("strategy:\n  canary: 0\n  concurrency: 2\n")
                .replace("protocol: tftp", "protocol: ftp"),
        )
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for n in rig.names() {
        assert_eq!(rig.lab.state(&n).unwrap().version, IMAGE_VERSION);
    }
    // The copy URLs in the events mask the password; the accounts are gone after the jobs.
    let events = rig.events(&id).await;
    let copy = events
        .iter()
        .find(|e| e["kind"] == "step_started" && e["step"] == "copy")
        .unwrap();
    let msg = copy["message"].as_str().unwrap();
    assert!(
        msg.starts_with("copy ftp://fu") && msg.contains(":***@127.0.0.1"),
        "{msg}"
    );
    let transfers = rig.transfers().await;
    let ftp = transfers
        .iter()
        .filter(|t| t["protocol"] == "ftp" && t["state"] == "completed")
        .count();
    assert_eq!(ftp, 2, "{transfers:#?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_threshold_halts_and_boot_variables_stay_valid() {
    let rig = Rig::start(6, |_| {}).await;
    let names = rig.names();
    // The canary passes; in the next wave two devices fail: one more than tolerated.
    assert!(rig.lab.set_fault(&names[1], Fault::CorruptDownload));
    assert!(rig.lab.set_fault(&names[2], Fault::ReloadOldImage));
    let id = rig
        .submit(&playbook(
            "strategy:\n  canary: 1\n  concurrency: 2\n  max_failures: 1\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "halted", "{d:#}");
    assert!(
        d["halt_reason"]
            .as_str()
            .unwrap()
            .contains("2 device(s) failed"),
        "{}",
        d["halt_reason"]
    );
    let by_name = |n: &str| job_of(&d, n);
    assert!(
        by_name(&names[1])["error"]
            .as_str()
            .unwrap()
            .contains("corrupt_image"),
        "{:#}",
        by_name(&names[1])
    );
    assert!(
        by_name(&names[2])["error"]
            .as_str()
            .unwrap()
            .contains("came_back_on_old_image"),
        "{:#}",
        by_name(&names[2])
    );
    // The second failure halts the rollout before another device starts: names[3] started
    // in the slot of the first failure (one tolerated), and the devices after it never do.
    // A device's permit used to be freed when its task ended, before its failure was counted,
    // and the next device started in it.
    for n in &names[4..] {
        let j = by_name(n);
        assert!(
            j["state"] == "pending" && j["started_at"].is_null(),
            "{n} started after the failure that crossed the threshold: {d:#}"
        );
    }
    // Every device keeps a bootable boot variable.
    for n in &names {
        assert!(
            boot_variable_valid(&rig.lab, n),
            "{n}: {:?}",
            rig.lab.state(n).unwrap().boot_variable
        );
    }
    let st = rig.lab.state(&names[2]).unwrap();
    assert!(
        st.running_image.contains("152-4.E10"),
        "{}",
        st.running_image
    );
    // Retry after fixing the devices: the rollout goes on and completes.
    rig.lab.clear_faults(&names[1]);
    rig.lab.clear_faults(&names[2]);
    assert_eq!(rig.action(&id, "retry").await, StatusCode::OK);
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for n in &names {
        assert_eq!(rig.lab.state(n).unwrap().version, IMAGE_VERSION, "{n}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_holds_steps_and_resume_finishes() {
    // Slow copies, so the pause lands while the canary is copying.
    let rig = Rig::start(3, |c| c.rate = Some(1024 * 1024)).await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 3\n"))
        .await;
    let canary = rig.names()[0].clone();
    rig.wait_event(&id, "the canary's copy", |e| {
        e["kind"] == "step_started" && e["step"] == "copy"
    })
    .await;
    assert_eq!(rig.action(&id, "pause").await, StatusCode::OK);
    assert_eq!(rig.detail(&id).await["state"], "paused");
    let held = rig
        .wait_event(&id, "the canary held at its next step", |e| {
            e["kind"] == "held" && e["device"] == canary.as_str()
        })
        .await;
    let held_id = held["id"].as_i64().unwrap();
    let held_step = held["step"].as_str().unwrap().to_string();
    // While held, the device's next step has not started and nothing was reloaded.
    let events = rig.events(&id).await;
    assert!(
        !events
            .iter()
            .any(|e| e["id"].as_i64().unwrap() > held_id && e["kind"] == "step_started"),
        "a step started while paused"
    );
    assert_eq!(rig.lab.state(&canary).unwrap().reload_count, 0);
    assert_eq!(rig.action(&id, "resume").await, StatusCode::OK);
    let resumed = rig
        .wait_event(&id, "the held step started", |e| {
            e["kind"] == "step_started"
                && e["device"] == canary.as_str()
                && e["step"] == held_step.as_str()
                && e["id"].as_i64().unwrap() > held_id
        })
        .await;
    assert!(resumed["id"].as_i64().unwrap() > held_id);
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abort_stops_at_a_safe_point() {
    let rig = Rig::start(4, |c| c.rate = Some(1024 * 1024)).await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 1\n"))
        .await;
    rig.wait_event(&id, "the first copy", |e| {
        e["kind"] == "step_started" && e["step"] == "copy"
    })
    .await;
    assert_eq!(rig.action(&id, "abort").await, StatusCode::OK);
    let d = rig.wait_state(&id, &["aborted"]).await;
    let states: Vec<String> = jobs(&d)
        .iter()
        .map(|j| j["state"].as_str().unwrap().to_string())
        .collect();
    assert!(
        states.iter().all(|s| s != "running" && s != "pending"),
        "{states:?}"
    );
    assert!(
        states.iter().filter(|s| *s == "aborted").count() >= 3,
        "{states:?}"
    );
    for n in rig.names() {
        let st = rig.lab.state(&n).unwrap();
        assert!(
            boot_variable_valid(&rig.lab, &n),
            "{n}: {:?}",
            st.boot_variable
        );
        assert!(st.reload_count <= 1);
    }
    // An ended rollout refuses further actions.
    assert_eq!(rig.action(&id, "resume").await, StatusCode::CONFLICT);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_wait_for_the_maintenance_window() {
    // Tuesday 2026-11-24 12:00 UTC; the window opens at 22:00 in Berlin (21:00 UTC).
    let clock = ManualClock::new("2026-11-24T12:00:00Z".parse().unwrap());
    let rig = Rig::options(2)
        .clock(Clock::Manual(clock.clone()))
        .start()
        .await;
    let before: Vec<_> = rig
        .names()
        .iter()
        .map(|n| rig.lab.state(n).unwrap())
        .collect();
    let text = playbook(
        "strategy:\n  canary: 0\n  concurrency: 2\nschedule:\n  windows: [\"Mon-Fri 22:00-23:30 Europe/Berlin\"]\n",
    );
    // The dry run says when the window opens, in its zone and in UTC.
    let dry: Value = rig
        .app()
        .post("/api/v1/rollouts?dry_run=true")
        .body(text.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dry["windows"][0]["open"], false, "{dry:#}");
    assert_eq!(
        dry["windows"][0]["opens"], "Tue 2026-11-24 22:00 Europe/Berlin (21:00 UTC)",
        "{dry:#}"
    );
    assert_eq!(dry["windows"][0]["opens_at"], "2026-11-24T21:00:00Z");
    let id = rig.submit(&text).await;
    for n in rig.names() {
        rig.wait_event(&id, "the device staged and waiting", |e| {
            e["kind"] == "waiting_window" && e["device"] == n.as_str()
        })
        .await;
    }
    // Staged: the image is on flash and verified. Nothing else changed: boot variable,
    // startup configuration and unsaved changes are as they were, and no reload.
    for (n, was) in rig.names().iter().zip(&before) {
        let st = rig.lab.state(n).unwrap();
        assert_eq!(st.reload_count, 0, "{n} reloaded outside the window");
        assert!(st.flash.files.iter().any(|f| f.name == IMAGE), "{n}");
        assert_eq!(
            st.boot_variable, was.boot_variable,
            "{n}: boot variable changed before the window"
        );
        assert_eq!(
            st.startup_boot_system, was.startup_boot_system,
            "{n}: startup config changed before the window"
        );
        assert!(
            !st.unsaved_changes,
            "{n}: configuration changed before the window"
        );
        assert!(
            !st.last_commands.iter().any(|c| c.starts_with("boot ")
                || c.starts_with("write")
                || c.starts_with("copy running")),
            "{n}: a change was sent before the window: {:?}",
            st.last_commands
        );
    }
    // The job says it is staged and when the window opens, in its zone and in UTC.
    let d = rig.detail(&id).await;
    for j in jobs(&d) {
        assert_eq!(
            j["waits_for_window"], "Tue 2026-11-24 22:00 Europe/Berlin (21:00 UTC)",
            "{j:#}"
        );
    }
    clock.set("2026-11-24T21:00:00Z".parse().unwrap());
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for (n, was) in rig.names().iter().zip(&before) {
        let st = rig.lab.state(n).unwrap();
        assert_eq!(st.reload_count, 1, "{n}");
        assert_ne!(st.startup_boot_system, was.startup_boot_system, "{n}");
        assert!(
            st.startup_boot_system[0].ends_with(IMAGE),
            "{n}: {:?}",
            st.startup_boot_system
        );
        assert_eq!(st.version, IMAGE_VERSION);
    }
    for j in jobs(&d) {
        assert!(j["waits_for_window"].is_null(), "{j:#}");
    }
    let events = rig.events(&id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "window_opened")
            .count(),
        2
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_start_waits_for_its_time() {
    let clock = ManualClock::new("2026-11-24T12:00:00Z".parse().unwrap());
    let rig = Rig::options(1)
        .clock(Clock::Manual(clock.clone()))
        .start()
        .await;
    let id = rig
        .submit(&playbook(
            "strategy:\n  canary: 0\nschedule:\n  start_at: 2026-11-25T01:00:00Z\n",
        ))
        .await;
    rig.wait_event(&id, "the scheduled event", |e| e["kind"] == "scheduled")
        .await;
    assert_eq!(rig.detail(&id).await["state"], "scheduled");
    assert!(
        rig.lab
            .state(&rig.names()[0])
            .unwrap()
            .last_commands
            .is_empty(),
        "nothing touched before the start time"
    );
    clock.set("2026-11-25T01:00:00Z".parse().unwrap());
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dry_run_and_validation_touch_nothing() {
    let rig = Rig::start(3, |_| {}).await;
    let r = rig
        .app()
        .post("/api/v1/rollouts?dry_run=true")
        .body(playbook("strategy:\n  canary: 1\n  waves: [1, 2]\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let plan: Value = r.json().await.unwrap();
    let sizes: Vec<usize> = plan["plan"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["devices"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![1, 1, 1]);
    // A broken playbook: 422 with the line and column.
    let bad = playbook("strategy:\n  canary: 1\n  wavez: [1]\n");
    let r = rig
        .app()
        .post("/api/v1/rollouts")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["line"], 12, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("wavez"),
        "{e}"
    );
    // An image that is not in the store is named with its location.
    let r = rig
        .app()
        .post("/api/v1/rollouts")
        .body(playbook("").replace(IMAGE, "c2960x-universalk9-mz.152-7.E9.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["line"], 5, "{e}");
    // No device saw a single command, and no rollout exists.
    for n in rig.names() {
        assert!(
            rig.lab.state(&n).unwrap().last_commands.is_empty(),
            "{n} was touched"
        );
    }
    let list: Value = rig
        .app()
        .get("/api/v1/rollouts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["rollouts"].as_array().unwrap().len(), 0);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_stream_over_sse() {
    let rig = Rig::start(1, |_| {}).await;
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let resp = fleetup::http_client::client()
        .get(rig.url(&format!("/api/v1/rollouts/{id}/events?token={TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (found, text) = crate::support::read_stream_until(resp, "event: completed").await;
    assert!(found, "no completed event in the stream: {text}");
    assert!(
        text.contains("event: created") && text.contains("event: step_started"),
        "{text}"
    );
    rig.stop().await;
}

/// `serve` killed with SIGKILL in the middle of a wave, restarted on the same data directory:
/// the rollout completes and every device was reloaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_a_wave_resumes_without_a_second_reload() {
    let mut rig = Rig::options(6)
        .lab(|c| {
            c.boot_time = Duration::from_millis(1500);
            c.rate = Some(2 * 1024 * 1024);
        })
        .serve_process()
        .image_size(2 * 1024 * 1024)
        .start()
        .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 2\n"))
        .await;
    // Kill it once a device of the main wave has been sent its reload while others are not
    // there yet (concurrency 2 staggers them).
    crate::support::wait_reloads_mid_wave(&rig, &id, 1, 1, 1).await;
    rig.kill_serve();
    rig.start_serve().await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for dev in rig.lab.devices() {
        let st = rig.lab.state(&dev.name).unwrap();
        assert_eq!(
            st.reload_count, 1,
            "{} was reloaded {} times",
            dev.name, st.reload_count
        );
        assert_eq!(st.version, IMAGE_VERSION, "{}", dev.name);
    }
    rig.stop().await;
}

/// fleetup records a reload before it sends it, so a crash between the two leaves a device
/// recorded as reloading that never was. After the restart the device must neither be reloaded
/// blindly (the reload may be in flight) nor be failed: once the reload timeout has passed, its
/// uptime, longer than the time since the record, proves the reload never reached it, and the
/// upgrade runs again, reloading it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_recorded_but_never_sent_is_sent_after_the_restart() {
    let mut rig = Rig::options(1)
        .lab(|c| {
            c.boot_time = Duration::from_millis(500);
            // Up for three days, as production boxes are: the uptime is the evidence.
            c.uptime = Duration::from_secs(3 * 86_400);
            c.rate = Some(1024 * 1024);
        })
        .serve_process()
        .image_size(3 * 1024 * 1024)
        .start()
        .await;
    let device = rig.lab.devices()[0].name.clone();
    let id = rig
        .submit(&format!(
            "name: crash-window\ntargets:\n  groups: [lab]\nimage:\n  ios: {IMAGE}\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\nstrategy:\n  canary: 0\n  timeouts: {{poll: 1, reload: 4s}}\n"
        ))
        .await;

    // Kill serve while the device copies (3 MB at 1 MB/s), then write what the engine writes
    // just before it sends the reload: the crash landed in between.
    eventually("the device copying", || async {
        let d = rig.try_detail(&id).await?;
        (jobs(&d).first()?["step"] == "copy").then_some(())
    })
    .await;
    rig.kill_serve();
    let db = crate::support::open_db(&rig.data_dir()).await;
    db.record_step(
        &id,
        &device,
        "reload",
        Some(fleetup::rollout::model::StepState::Started),
        fleetup::rollout::model::EventKind::StepStarted,
        "reload",
    )
    .await
    .unwrap();
    assert!(
        db.jobs(&id).await.unwrap()[0].reload_sent,
        "the crash window is set up"
    );
    assert_eq!(rig.lab.state(&device).unwrap().reload_count, 0);

    rig.start_serve().await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let st = rig.lab.state(&device).unwrap();
    assert_eq!(st.reload_count, 1, "reloaded exactly once");
    assert_eq!(st.version, IMAGE_VERSION);
    let events = db.device_events(&id, &device).await.unwrap();
    let not_sent: Vec<_> = events
        .iter()
        .filter(|e| e.kind == fleetup::rollout::model::EventKind::ReloadNotSent)
        .collect();
    assert_eq!(not_sent.len(), 1, "{events:#?}");
    let message = &not_sent[0].message;
    assert!(
        message.contains("3 days") && message.contains("never reached"),
        "{message}"
    );
    rig.stop().await;
}

/// `transfer.tftp_blocksize`: the devices fetch the image with 8192-byte blocks (seen by
/// fleetup's TFTP server), and their `ip tftp blocksize` is back to what it was before the
/// configuration is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_blocksize_is_set_for_the_copy_and_put_back() {
    let rig = Rig::start(2, |_| {}).await;
    let book = playbook("strategy:\n  canary: 0\n  concurrency: 2\n").replace(
        "  server: 127.0.0.1\n",
        "  server: 127.0.0.1\n  tftp_blocksize: 8192\n",
    );
    let id = rig.submit(&book).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let transfers = rig.transfers().await;
    let downloads: Vec<&Value> = transfers
        .iter()
        .filter(|t| t["file"] == IMAGE && t["state"] == "completed")
        .collect();
    assert_eq!(downloads.len(), 2, "{transfers:#?}");
    assert!(
        downloads.iter().all(|t| t["block_size"] == 8192),
        "{transfers:#?}"
    );
    for name in rig.names() {
        let st = rig.lab.state(&name).unwrap();
        let at = |cmd: &str| {
            st.last_commands
                .iter()
                .position(|c| c.trim() == cmd)
                .unwrap_or_else(|| panic!("{name} never got `{cmd}`: {:#?}", st.last_commands))
        };
        let set = at("ip tftp blocksize 8192");
        let copy = st
            .last_commands
            .iter()
            .position(|c| c.starts_with("copy tftp:"))
            .unwrap_or_else(|| panic!("{name}: no copy in {:#?}", st.last_commands));
        let restore = at("no ip tftp blocksize");
        let save = at("write memory");
        assert!(
            set < copy && copy < restore && restore < save,
            "{:#?}",
            st.last_commands
        );
        assert_eq!(st.reload_count, 1);
        assert!(!st.unsaved_changes);
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_downgrade_is_refused_unless_the_playbook_allows_it() {
    // The lab's c2960x runs 15.2(4)E10; 15.2(2)E7 is older.
    const OLDER: &str = "c2960x-universalk9-mz.152-2.E7.bin";
    let rig = Rig::start(1, |_| {}).await;
    let img = rig.app().dir.path().join(OLDER);
    write_random_file(&img, 2 * 1024 * 1024 + 7, 78);
    let r = rig
        .app()
        .post("/api/v1/images")
        .multipart(multipart_file(&img, OLDER))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let name = rig.names()[0].clone();
    let before = rig.lab.state(&name).unwrap();
    let playbook = playbook("strategy:\n  canary: 0\n").replace(IMAGE, OLDER);

    // Once the version is known, the dry run shows the downgrade.
    let r = rig
        .app()
        .post(&format!("/api/v1/devices/{name}/facts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = rig
        .app()
        .post("/api/v1/rollouts?dry_run=true")
        .body(playbook.clone())
        .send()
        .await
        .unwrap();
    let plan: Value = r.json().await.unwrap();
    let planned = &plan["plan"]["waves"][0]["devices"][0];
    assert_eq!(planned["current_version"], "15.2(4)E10", "{plan:#}");
    assert_eq!(planned["target_version"], "15.2(2)E7", "{plan:#}");
    assert_eq!(planned["downgrade"], true, "{plan:#}");

    // Refused: the job fails right after the facts, nothing on the device changes.
    let id = rig.submit(&playbook).await;
    let d = rig.wait_end(&id).await;
    let job = &jobs(&d)[0];
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("(downgrade)"), "{error}");
    assert!(
        error.contains(&format!(
            "refusing to downgrade {name} from 15.2(4)E10 to 15.2(2)E7: set options.allow_downgrade: true"
        )),
        "{error}"
    );
    let after = rig.lab.state(&name).unwrap();
    assert_eq!(after.boot_variable, before.boot_variable);
    assert_eq!(after.reload_count, 0);
    assert_eq!(after.version, before.version);
    assert!(
        !after.flash.files.iter().any(|f| f.name == OLDER),
        "copied despite the refusal"
    );
    assert!(
        !after.last_commands.iter().any(|c| c.starts_with("copy")),
        "{:?}",
        after.last_commands
    );

    // Allowed: the same playbook with allow_downgrade installs the older release.
    let id = rig
        .submit(&format!("{playbook}options:\n  allow_downgrade: true\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let after = rig.lab.state(&name).unwrap();
    assert_eq!(after.version, "15.2(2)E7");
    assert_eq!(after.reload_count, 1);
    let events = rig.events(&id).await;
    assert!(
        events.iter().any(|e| e["step"] == "facts"
            && e["message"]
                .as_str()
                .unwrap_or("")
                .contains("a downgrade, allowed by options.allow_downgrade")),
        "{events:#?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_model_and_serial_from_show_version_are_kept() {
    let rig = Rig::start(3, |c| {
        c.personas = vec!["c2960x".into(), "c9300".into(), "n9k".into()]
    })
    .await;
    let lab = rig.lab.devices();
    let app = rig.app();
    let device = |name: &str| {
        let request = app.get(&format!("/api/v1/devices/{name}"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // The inventory's own model (what an operator typed) is not a discovered fact.
    let before = device(&lab[0].name).await;
    assert_eq!(before["facts"]["model"], Value::Null, "{before:#}");

    // After a rollout (the c2960x, the only IOS device) its facts name the persona's model.
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let after = device(&lab[0].name).await;
    assert_eq!(after["facts"]["model"], lab[0].model.as_str(), "{after:#}");
    let serial = after["facts"]["serial"].as_str().unwrap_or("").to_string();
    assert!(!serial.is_empty(), "{after:#}");

    // `device facts` (the API behind `fleetup device facts`) on the others: the Catalyst 9300
    // and the Nexus 9300, whose `cisco Nexus9000 C93180YC-EX chassis` is N9K-C93180YC-EX.
    for d in &lab[1..] {
        let r = rig
            .app()
            .post(&format!("/api/v1/devices/{}/facts", d.name))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["facts"]["model"], d.model.as_str(), "{v:#}");
    }

    // Importing the inventory again, here without models, loses no discovered fact.
    let without_models: String = rig
        .lab
        .inventory_yaml()
        .lines()
        .filter(|l| !l.trim_start().starts_with("model:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let r = rig
        .app()
        .post("/api/v1/inventory/import")
        .body(without_models)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let again = device(&lab[0].name).await;
    assert_eq!(again["model"], lab[0].model.as_str(), "{again:#}");
    assert_eq!(again["facts"]["model"], lab[0].model.as_str(), "{again:#}");
    assert_eq!(again["facts"]["serial"], serial.as_str(), "{again:#}");
    rig.stop().await;
}

/// A rollout whose devices all finished, one failed within `max_failures`, ends
/// `completed_with_failures`; retry puts the failed device back in line and the rollout runs
/// again to `completed`, the other devices untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_completed_with_failures_finishes_the_rollout() {
    let rig = Rig::start(3, |_| {}).await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[2], Fault::CorruptDownload));
    let id = rig
        .submit(&playbook(
            "strategy:\n  canary: 1\n  concurrency: 2\n  max_failures: 1\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed_with_failures", "{d:#}");
    assert!(d["finished_at"].is_string(), "{d:#}");
    let events = rig.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "completed_with_failures")
    );
    // Pause and abort are for live rollouts; retry is not refused.
    assert_eq!(rig.action(&id, "pause").await, StatusCode::CONFLICT);
    rig.lab.clear_faults(&names[2]);
    assert_eq!(rig.action(&id, "retry").await, StatusCode::OK);
    // The answer right after the action is current: the failed device is back in line.
    let now = rig.detail(&id).await;
    assert_ne!(job_of(&now, &names[2])["state"], "failed", "{now:#}");
    let d = rig
        .wait_state(&id, &["completed", "halted", "aborted"])
        .await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for n in &names {
        assert_eq!(rig.lab.state(n).unwrap().reload_count, 1, "{n}");
    }
    let failed_again = job_of(&d, &names[2]);
    assert_eq!(failed_again["state"], "succeeded", "{failed_again:#}");
    assert_eq!(failed_again["attempts"], 2, "{failed_again:#}");
    // Completed without failures: nothing left to retry.
    assert_eq!(rig.action(&id, "retry").await, StatusCode::CONFLICT);
    rig.stop().await;
}

/// The crash campaign: 20 devices, and `fleetup serve` killed with SIGKILL ten times at random
/// points of the rollout (a random number of recorded events after each restart). Every device
/// ends upgraded and reloaded exactly once, with no false failure. A kill between a reload's
/// record and its send is proved by the device's uptime after the reload timeout (10 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_campaign_ten_kills_every_device_upgraded_and_reloaded_once() {
    let mut rig = Rig::options(20)
        .lab(|c| {
            // Slow enough that ten kills land before the end even on a loaded machine.
            c.boot_time = Duration::from_millis(1200);
            c.rate = Some(2 * 1024 * 1024);
            c.uptime = Duration::from_secs(3 * 24 * 3600);
        })
        .serve_process()
        .image_size(1024 * 1024)
        .start()
        .await;
    let id = rig
        .submit(
            &playbook("strategy:\n  canary: 1\n  concurrency: 5\n")
                .replace("timeouts: {poll: 1}", "timeouts: {poll: 1, reload: 10}"),
        )
        .await;
    // How many events the service has recorded (None while it is down).
    let count = |rig: &Rig| {
        let req = rig.get(&format!("/api/v1/rollouts/{id}/activity"));
        async move {
            let body: Value = req.send().await.ok()?.json().await.ok()?;
            Some(body["events"].as_array()?.len() as u64)
        }
    };
    let mut kills = 0;
    while kills < 10 {
        let start = eventually("the service to answer", || count(&rig)).await;
        let after = rand::random_range(2..10u64);
        let ended = eventually("more events, or the end", || async {
            if let Some(d) = rig.try_detail(&id).await
                && ["completed", "completed_with_failures", "halted", "aborted"]
                    .contains(&d["state"].as_str().unwrap_or(""))
            {
                return Some(true);
            }
            let now = count(&rig).await?;
            (now >= start + after).then_some(false)
        })
        .await;
        if ended {
            break;
        }
        rig.kill_serve();
        kills += 1;
        rig.start_serve().await;
    }
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "after {kills} kills: {d:#}");
    for j in jobs(&d) {
        assert_eq!(j["state"], "succeeded", "{j:#}");
    }
    for dev in rig.lab.devices() {
        let st = rig.lab.state(&dev.name).unwrap();
        assert_eq!(
            st.reload_count, 1,
            "{} reloaded {} times",
            dev.name, st.reload_count
        );
        assert_eq!(st.version, IMAGE_VERSION, "{}", dev.name);
    }
    assert_eq!(kills, 10, "the rollout ended before ten kills");
    rig.stop().await;
}

/// A playbook of the lab's devices `names` only, one at a time.
fn playbook_of(names: &[&str]) -> String {
    playbook("strategy:\n  canary: 0\n  concurrency: 1\n")
        .replace("groups: [lab]", &format!("names: [{}]", names.join(", ")))
}

/// How many rollouts wait for one of the service's device slots, and how many slots are busy.
async fn slot_use(rig: &Rig) -> (f64, f64) {
    let m = crate::metrics::scrape(rig.get("/metrics")).await;
    (
        m.one("fleetup_device_slot_waits", &[]),
        m.one("fleetup_device_slots", &[("state", "busy")]),
    )
}

/// A lab of three devices and a service of `slots` device slots, running a rollout of the
/// first `devices` of them one at a time, whose first device holds its slot: dark after its
/// reload until its fault is cleared. The rig, the devices' names, and that rollout.
async fn first_device_held(slots: usize, devices: usize) -> (Rig, Vec<String>, String) {
    let rig = Rig::options(3)
        .serve(|a| a.max_concurrent_devices = slots)
        .start()
        .await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[0], Fault::ReloadNeverReturns));
    let of: Vec<&str> = names[..devices].iter().map(String::as_str).collect();
    let first = rig.submit(&playbook_of(&of)).await;
    rig.wait_event(&first, "the first device waiting to be back", |e| {
        e["kind"] == "step_started" && e["step"] == "wait_back" && e["device"] == names[0].as_str()
    })
    .await;
    (rig, names, first)
}

/// A rollout paused while it waits for one of the service's device slots gives the slot back
/// when it gets it, and takes none while paused: a pause may last hours, and the slot is
/// another rollout's meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_rollout_gives_back_the_device_slot_it_waited_for() {
    // The first rollout's device holds the one slot.
    let (rig, names, first) = first_device_held(1, 1).await;
    let paused = rig.submit(&playbook_of(&[&names[1]])).await;
    eventually("the second rollout waiting for the slot", || async {
        (slot_use(&rig).await == (1.0, 1.0)).then_some(())
    })
    .await;
    assert_eq!(rig.action(&paused, "pause").await, StatusCode::OK);
    let third = rig.submit(&playbook_of(&[&names[2]])).await;
    eventually("both rollouts waiting for the slot", || async {
        (slot_use(&rig).await == (2.0, 1.0)).then_some(())
    })
    .await;

    // The first device is back: the slot goes to the paused rollout, first in line, which
    // gives it back; the third rollout runs to its end while the second stays paused.
    assert!(rig.lab.clear_faults(&names[0]));
    assert_eq!(rig.wait_end(&first).await["state"], "completed");
    let d = rig.wait_end(&third).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let d = rig.detail(&paused).await;
    assert_eq!(d["state"], "paused", "{d:#}");
    assert_eq!(job_of(&d, &names[1])["state"], "pending", "{d:#}");
    assert_eq!(
        slot_use(&rig).await,
        (0.0, 0.0),
        "the paused rollout holds and waits for no slot"
    );

    assert_eq!(rig.action(&paused, "resume").await, StatusCode::OK);
    let d = rig.wait_end(&paused).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for name in &names {
        assert_eq!(rig.lab.state(name).unwrap().reload_count, 1, "{name}");
    }
    rig.stop().await;
}

/// A rollout that waits for its own devices (`concurrency`) holds no slot of the service's
/// (`--max-concurrent-devices`) meanwhile: another rollout's device starts in the free one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_at_its_own_concurrency_leaves_the_free_device_slot_to_others() {
    let (rig, names, first) = first_device_held(2, 2).await;
    let other = rig.submit(&playbook_of(&[&names[2]])).await;
    let d = rig.wait_end(&other).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let d = rig.detail(&first).await;
    assert_eq!(
        job_of(&d, &names[1])["state"],
        "pending",
        "the first rollout's concurrency is 1: {d:#}"
    );
    assert!(rig.lab.clear_faults(&names[0]));
    let d = rig.wait_end(&first).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    rig.stop().await;
}

/// A device that failed `never_came_back` but comes back later on the new image is verified
/// on retry, not reloaded a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_back_late_is_verified_on_retry_without_a_second_reload() {
    let rig = Rig::start(2, |_| {}).await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[1], Fault::ReloadNeverReturns));
    let id = rig
        .submit(
            &playbook("strategy:\n  canary: 1\n  concurrency: 1\n  max_failures: 1\n")
                .replace("timeouts: {poll: 1}", "timeouts: {poll: 1, reload: 3}"),
        )
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed_with_failures", "{d:#}");
    let late = |d: &Value| job_of(d, &names[1]);
    assert!(
        late(&d)["error"]
            .as_str()
            .unwrap()
            .contains("never_came_back"),
        "{:#}",
        late(&d)
    );
    assert_eq!(rig.lab.state(&names[1]).unwrap().reload_count, 1);
    // The device comes back (on the new image it was told to boot); retry verifies it.
    rig.lab.clear_faults(&names[1]);
    assert_eq!(rig.action(&id, "retry").await, StatusCode::OK);
    let d = rig
        .wait_state(&id, &["completed", "halted", "aborted"])
        .await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(late(&d)["state"], "succeeded", "{:#}", late(&d));
    let st = rig.lab.state(&names[1]).unwrap();
    assert_eq!(st.reload_count, 1, "reloaded a second time");
    assert_eq!(st.version, IMAGE_VERSION);
    let events = rig.events(&id).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "resumed" && e["device"] == names[1].as_str()),
        "the retry did not take the wait-and-verify path"
    );
    rig.stop().await;
}

/// `GET /rollouts/{id}` is served from a view brought up to date with only what changed.
/// Polled all through a rollout, it must end equal to the report, which is built from the
/// whole history at once; and once the rollout ended, a write to a job by anything else
/// (another service on the same database, say) must show in the next answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rollout_view_kept_between_requests_matches_the_whole_history() {
    let rig = Rig::start(6, |c| c.boot_time = Duration::from_millis(300)).await;
    let id = rig
        .submit(&playbook(
            "strategy:\n  canary: 1\n  waves: [\"100%\"]\n  concurrency: 3\n",
        ))
        .await;
    // wait_end polls the view many times while steps start and end.
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    let report: Value = rig
        .get(&format!("/api/v1/rollouts/{id}/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reported = report["devices"].as_array().unwrap();
    assert_eq!(reported.len(), 6, "{report:#}");
    for r in reported {
        let name = r["device"].as_str().unwrap();
        let j = job_of(&d, name);
        assert_eq!(j["state"], r["result"], "{name}");
        assert_eq!(j["new_version"], r["new_version"], "{name}");
        assert!(
            !r["steps"].as_array().unwrap().is_empty(),
            "{name}: no steps in the report"
        );
        assert_eq!(j["steps"], r["steps"], "{name}: the view's steps differ");
    }

    // The list counts jobs by state in one query; it must agree with the view.
    let list: Value = rig
        .get("/api/v1/rollouts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = list["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {list:#}"));
    assert_eq!(listed["progress"], d["progress"], "{list:#}");
    assert_eq!(d["progress"]["succeeded"], 6, "{d:#}");

    // Another writer on the same database (another service): the view reads the jobs again.
    let other = crate::support::open_db(&rig.data_dir()).await;
    let device = rig.names()[2].clone();
    let changed = sqlx::query(
        "UPDATE rollout_devices SET error = 'written by another service' \
         WHERE rollout_id = $1 AND device = $2",
    )
    .bind(&id)
    .bind(&device)
    .execute(other.pool())
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    other.close().await;
    let after = rig.detail(&id).await;
    assert_eq!(
        job_of(&after, &device)["error"],
        "written by another service",
        "{after:#}"
    );
}

/// A `Server-Timing` answer header as `(name, ms)` pairs, every header in order.
fn server_timing(r: &reqwest::Response) -> Vec<(String, f64)> {
    r.headers()
        .get_all("server-timing")
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap_or_else(|e| panic!("{v:?}: {e}"))
                .split(',')
        })
        .map(|metric| {
            let mut parts = metric.trim().split(';');
            let name = parts.next().unwrap_or_default().to_string();
            let dur = parts
                .find_map(|p| p.trim().strip_prefix("dur="))
                .unwrap_or_else(|| panic!("{metric:?} has no dur"));
            let ms: f64 = dur.parse().unwrap_or_else(|e| panic!("{metric:?}: {e}"));
            assert!(ms.is_finite() && ms >= 0.0, "{metric:?}");
            (name, ms)
        })
        .collect()
}

/// Every API answer says how long fleetup spent on it (`Server-Timing: app`), and the polled
/// rollout view also where: its phases, each inside the router's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_carry_server_timing_and_the_rollout_view_its_phases() {
    let rig = Rig::start(2, |c| c.boot_time = Duration::from_millis(100)).await;
    let id = rig
        .submit(&playbook(
            "strategy:\n  waves: [\"100%\"]\n  concurrency: 2\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    let r = rig
        .get(&format!("/api/v1/rollouts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The answer, a chain of the view's rows, goes with its length, not chunked.
    assert!(r.headers().get("transfer-encoding").is_none(), "{r:?}");
    let length: Option<usize> = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let timing = server_timing(&r);
    let names: Vec<&str> = timing.iter().map(|(n, _)| n.as_str()).collect();
    // The view is kept (the wait for the end polled it): on PostgreSQL the rollout's record
    // comes with the changes, in one round trip, and `read` is not a phase of its own.
    let want: &[&str] = if crate::support::on_postgres() {
        &["lock", "changes", "apply", "write", "app"]
    } else {
        &["read", "lock", "changes", "apply", "write", "app"]
    };
    assert_eq!(names, want, "{timing:?}");
    // The phases follow one another inside the router's time (each rounded to a microsecond).
    let (app, phases) = timing.split_last().unwrap();
    let phases: f64 = phases.iter().map(|(_, ms)| ms).sum();
    assert!(phases <= app.1 + 0.005, "{timing:?}");
    let body = r.bytes().await.unwrap();
    assert_eq!(length, Some(body.len()));
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(parsed["progress"]["succeeded"], 2, "{parsed:#}");

    for (path, status) in [
        ("/api/v1/devices".to_string(), 200),
        ("/api/v1/rollouts/no-such-rollout".to_string(), 404),
        (format!("/api/v1/rollouts/{id}/report"), 200),
    ] {
        let r = rig.get(&path).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let timing = server_timing(&r);
        assert_eq!(timing.len(), 1, "{path}: {timing:?}");
        assert_eq!(timing[0].0, "app", "{path}: {timing:?}");
    }
}

/// `fleetup_rollout_view_catch_ups_total` from `/metrics`: (by requests, by the refresh).
async fn view_catch_ups(rig: &Rig) -> (u64, u64) {
    let text = rig.get_text("/metrics").await;
    let count = |by: &str| {
        let name = format!("fleetup_rollout_view_catch_ups_total{{by=\"{by}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (count("request"), count("refresh"))
}

/// While a rollout's view is polled, a background task brings it up to date with no request
/// asking (so that a request reads only the last moment's changes), and it reads writes by
/// another service too; every request catches up as well, so the answer after an action
/// shows its outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polled_rollout_view_is_brought_up_to_date_in_the_background() {
    // Slow copies, so the pause lands while the canary is copying.
    let rig = Rig::start(3, |c| c.rate = Some(1024 * 1024)).await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 1\n"))
        .await;
    rig.wait_event(&id, "the canary's copy", |e| {
        e["kind"] == "step_started" && e["step"] == "copy"
    })
    .await;
    assert_eq!(rig.action(&id, "pause").await, StatusCode::OK);
    let (requests, _) = view_catch_ups(&rig).await;
    let d = rig.detail(&id).await;
    assert_eq!(d["state"], "paused", "{d:#}");
    let (after_pause, refreshes) = view_catch_ups(&rig).await;
    assert_eq!(after_pause, requests + 1, "the request caught up");
    let waiting = rig.names()[2].clone();
    assert_eq!(job_of(&d, &waiting)["state"], "pending", "{d:#}");

    // Another service writes to a job that waits; no request reads the view meanwhile.
    let other = crate::support::open_db(&rig.data_dir()).await;
    let changed = sqlx::query(
        "UPDATE rollout_devices SET error = 'written by another service' \
         WHERE rollout_id = $1 AND device = $2",
    )
    .bind(&id)
    .bind(&waiting)
    .execute(other.pool())
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    other.close().await;
    // Two more refreshes, and no request: the second began after the first ended, so after
    // the write, and a request finds nothing left to read.
    eventually("two background catch-ups after the write", || async {
        let (_, now) = view_catch_ups(&rig).await;
        (now >= refreshes + 2).then_some(())
    })
    .await;
    assert_eq!(
        view_catch_ups(&rig).await.0,
        after_pause,
        "no request caught up"
    );
    let d = rig.detail(&id).await;
    assert_eq!(
        job_of(&d, &waiting)["error"],
        "written by another service",
        "{d:#}"
    );

    assert_eq!(rig.action(&id, "resume").await, StatusCode::OK);
    assert_eq!(rig.detail(&id).await["state"], "running");
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    rig.stop().await;
}

/// A Nexus 7000 that boots a kickstart and a system image: the playbook names both
/// (`kickstart_image`), fleetup copies and verifies each, installs them with one
/// `install all kickstart K system S`, and the switch comes back running both. A Nexus with a
/// kickstart and a playbook without one is refused before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nexus_7000_upgrades_its_kickstart_and_system_images_together() {
    const SYSTEM: &str = "n7000-s2-dk9.8.4.3.bin";
    const KICKSTART: &str = "n7000-s2-kickstart.8.4.3.bin";
    let rig = Rig::start(1, |c| c.personas = vec!["n7k".into()]).await;
    for (file, size, seed) in [(SYSTEM, 2 * 1024 * 1024 + 7, 81), (KICKSTART, 700_001, 82)] {
        let path = rig.dir.path().join(file);
        write_random_file(&path, size, seed);
        let r = rig
            .post("/api/v1/images")
            .multipart(multipart_file(&path, file))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let name = rig.names()[0].clone();
    let before = rig.lab.state(&name).unwrap();
    assert_eq!(before.version, "8.2(2)");
    assert_eq!(
        before.running_kickstart.as_deref(),
        Some("bootflash:/n7000-s2-kickstart.8.2.2.bin")
    );
    let without = playbook("strategy:\n  canary: 0\n")
        .replace(&format!("ios: {IMAGE}"), &format!("nxos: {SYSTEM}"));

    // No kickstart in the playbook: refused at the facts, nothing copied.
    let id = rig.submit(&without).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &name);
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("kickstart_image"), "{error}");
    let st = rig.lab.state(&name).unwrap();
    assert!(
        !st.flash.files.iter().any(|f| f.name == SYSTEM),
        "{:?}",
        st.flash.files
    );

    // With it: both files staged and verified, one install, both running afterwards.
    let with = without.replace(
        "transfer:",
        &format!("kickstart_image:\n  nxos: {KICKSTART}\ntransfer:"),
    );
    let r = rig
        .post("/api/v1/rollouts?dry_run=true")
        .body(with.clone())
        .send()
        .await
        .unwrap();
    let plan: Value = r.json().await.unwrap();
    assert_eq!(
        plan["plan"]["waves"][0]["devices"][0]["kickstart"], KICKSTART,
        "{plan:#}"
    );
    let id = rig.submit(&with).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let st = rig.lab.state(&name).unwrap();
    assert_eq!(st.version, "8.4(3)");
    assert_eq!(st.running_image, format!("bootflash:/{SYSTEM}"));
    assert_eq!(
        st.running_kickstart.as_deref(),
        Some(format!("bootflash:/{KICKSTART}").as_str())
    );
    assert_eq!(st.reload_count, before.reload_count + 1);
    let sent: Vec<&String> = st
        .last_commands
        .iter()
        .filter(|c| c.starts_with("copy ") || c.starts_with("install ") || c.contains("md5sum"))
        .collect();
    let install = format!("install all kickstart bootflash:{KICKSTART} system bootflash:{SYSTEM}");
    assert!(sent.iter().any(|c| **c == install), "{sent:#?}");
    for file in [SYSTEM, KICKSTART] {
        assert!(
            sent.iter().any(|c| c.starts_with("copy ")
                && c.ends_with(&format!("bootflash:{file} vrf management"))),
            "{sent:#?}"
        );
        assert!(
            sent.iter()
                .any(|c| **c == format!("show file bootflash:{file} md5sum")),
            "{sent:#?}"
        );
    }
    let events = rig.events(&id).await;
    let copies = events
        .iter()
        .filter(|e| e["step"] == "copy" && e["kind"] == "step_done")
        .count();
    assert_eq!(copies, 2, "{events:#?}");
    // Both transfers are the job's own: its claim covers the kickstart too.
    let transfers = rig.transfers().await;
    for file in [SYSTEM, KICKSTART] {
        let t = transfers
            .iter()
            .find(|t| t["file"] == file && t["state"] == "completed")
            .unwrap_or_else(|| panic!("no completed transfer of {file}: {transfers:#?}"));
        assert_eq!(t["job"]["device"], name.as_str(), "{t:#}");
        assert_eq!(t["job"]["rollout"], id.as_str(), "{t:#}");
    }
    rig.stop().await;
}

/// `GET /rollouts/{id}` keeps a view per rollout and writes again only the device rows whose
/// job, steps or transfer changed. Polled all through a rollout, and through an abort that
/// changes the waiting devices' jobs with no step of theirs, its last answer is the one a view
/// built at once gives (the service restarted on the same data), transfers apart: they live
/// in the memory of the service that ran them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rollout_view_polled_through_a_rollout_ends_as_one_built_at_once() {
    let mut rig = Rig::options(5)
        .lab(|c| c.boot_time = Duration::from_millis(400))
        .serve_process()
        .start()
        .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 1\n"))
        .await;
    let answers = std::sync::Mutex::new(std::collections::HashSet::new());
    let (seen, r, id_ref) = (&answers, &rig, &id);
    let poll_until = |what: &'static str, done: fn(&Value) -> bool| {
        eventually(what, move || async move {
            let d = r.try_detail(id_ref).await?;
            seen.lock().unwrap().insert(d.to_string());
            done(&d).then_some(d)
        })
    };
    poll_until("two devices upgraded", |d| {
        jobs(d).iter().filter(|j| j["state"] == "succeeded").count() >= 2
    })
    .await;
    assert_eq!(rig.action(&id, "abort").await, StatusCode::OK);
    let end = poll_until("the rollout to end", |d| {
        ["completed", "completed_with_failures", "halted", "aborted"]
            .contains(&d["state"].as_str().unwrap_or(""))
    })
    .await;
    let answers = answers.into_inner().unwrap();
    assert_eq!(end["state"], "aborted", "{end:#}");
    assert!(
        answers.len() >= 5,
        "the view was read as it changed ({} different answers)",
        answers.len()
    );
    let rows = |d: &Value| -> Vec<Value> {
        jobs(d)
            .into_iter()
            .map(|mut row| {
                row.as_object_mut().unwrap().remove("transfer");
                row
            })
            .collect()
    };
    let polled = rows(&end);
    assert_eq!(polled.len(), 5);
    let states: Vec<&str> = polled
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert!(
        states.iter().filter(|s| **s == "succeeded").count() >= 2 && states.contains(&"aborted"),
        "{states:?}"
    );
    for row in polled.iter().filter(|j| j["state"] == "succeeded") {
        let steps = row["steps"].as_array().unwrap();
        assert!(
            steps.iter().any(|s| s["step"] == "reload")
                && steps.iter().all(|s| s["result"] == "done"),
            "{row:#}"
        );
    }
    rig.kill_serve();
    rig.start_serve().await;
    let fresh = rig.detail(&id).await;
    assert_eq!(polled, rows(&fresh));
    assert_eq!(end["progress"], fresh["progress"]);
    for (a, b) in end["waves"]
        .as_array()
        .unwrap()
        .iter()
        .zip(fresh["waves"].as_array().unwrap())
    {
        assert_eq!(a["progress"], b["progress"]);
        assert_eq!(a["name"], b["name"]);
    }
    rig.stop().await;
}
