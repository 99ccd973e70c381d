//! The rollout core's safety rules, each shown against real parts: one service per data
//! directory, no change before the maintenance window, facts read again after a failure, and
//! transfers tied to the job that started them.

use std::process::Command;

use fleetup::serve::{DataDirError, ServeArgs, ServeError, Service};
use fleetup::sim::Fault;

use serde_json::Value;

use crate::support::{
    IMAGE, IMAGE_VERSION, Rig, ServeProcess, TOKEN, TestApp, eventually, jobs, playbook,
};

#[tokio::test]
async fn a_second_service_on_a_locked_data_directory_is_refused() {
    let app = TestApp::start().await;
    let args = ServeArgs {
        data_dir: app.dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let Err(err) = Service::start(&args, Some(TOKEN.into())).await else {
        panic!("a second service started on a data directory in use");
    };
    let pid = std::process::id();
    match &err {
        ServeError::Locked(DataDirError::InUse { holder, .. }) => {
            assert_eq!(holder, &format!("PID {pid}"));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("--data-dir"), "{err}");
    // Once the first one stops, the directory is free again.
    let dir = app.dir;
    app.service.stop().await;
    // Other tests of this process fork children all the time, and a child holds a copy of
    // every descriptor (the lock's too) from its fork until its exec closes it: wait for that.
    let again = eventually("the data directory to be free after the stop", || async {
        Service::start(&args, Some(TOKEN.into())).await.ok()
    })
    .await;
    assert_eq!(again.http_addr.ip().to_string(), "127.0.0.1");
    again.stop().await;
    drop(dir);
}

#[test]
fn a_second_serve_process_exits_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServeProcess::start(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--tftp",
            "off",
            "--ftp",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("FLEETUP_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second serve started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("PID {}", first.pid())),
        "the message does not name the holder: {stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    // The first one is still serving.
    let health = Command::new("curl")
        .args(["-sf", &format!("{}/health", first.base_url)])
        .output()
        .unwrap();
    assert!(health.status.success());
}

/// A device that failed its post-check after booting the new image shows the version it
/// really runs, and the next rollout does not mistake it for an old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facts_are_read_again_after_a_failed_post_check() {
    let rig = Rig::start(1, |_| {}).await;
    let name = rig.names()[0].clone();
    let device = |rig: &Rig| {
        let url = format!("/api/v1/devices/{name}");
        let req = rig.app().get(&url);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(device(&rig).await["facts"]["version"], Value::Null);
    let bad_post = "checks:\n  post:\n    commands:\n      - run: show version\n        must_contain: NO-SUCH-TEXT\n";
    let id = rig
        .submit(&playbook(&format!("strategy:\n  canary: 0\n{bad_post}")))
        .await;
    let d = rig.wait_end(&id).await;
    let job = &jobs(&d)[0];
    assert_eq!(job["state"], "failed", "{d:#}");
    assert!(
        job["error"].as_str().unwrap().contains("check_failed"),
        "{job:#}"
    );
    // The lab booted the new image; the inventory says so.
    assert_eq!(rig.lab.state(&name).unwrap().version, IMAGE_VERSION);
    let facts = &device(&rig).await["facts"];
    assert_eq!(facts["version"], IMAGE_VERSION, "{facts:#}");
    assert!(
        facts["image"].as_str().unwrap().ends_with(IMAGE),
        "{facts:#}"
    );
    let events = rig.events(&id).await;
    let read = events
        .iter()
        .find(|e| e["kind"] == "facts_read")
        .expect("a facts_read event");
    assert!(
        read["message"].as_str().unwrap().contains(IMAGE_VERSION),
        "{read:#}"
    );
    rig.stop().await;
}

/// A device that never logged in is shown no transfer, not the completed one an earlier
/// rollout made to the same address with the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_is_shown_only_on_the_job_that_started_it() {
    let rig = Rig::start(2, |_| {}).await;
    let names = rig.names();
    let stage = "strategy:\n  canary: 0\n  concurrency: 2\noptions:\n  stage_only: true\n  skip_if_current: false\n";
    let first = rig.submit(&playbook(stage)).await;
    let d = rig.wait_end(&first).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    for j in jobs(&d) {
        let t = &j["transfer"];
        assert_eq!(t["state"], "completed", "{j:#}");
        assert_eq!(t["job"]["rollout"], first.as_str());
        assert_eq!(t["job"]["device"], j["device"]);
    }
    // The second rollout: the first device can no longer log in; the second one finds the
    // image already staged and copies nothing.
    rig.lab.set_fault(&names[0], Fault::WrongCredentials);
    let second = rig.submit(&playbook(stage)).await;
    let d = rig.wait_end(&second).await;
    for j in jobs(&d) {
        if j["device"] == names[0].as_str() {
            assert_eq!(j["state"], "failed", "{j:#}");
            assert!(
                j["transfer"].is_null(),
                "another job's transfer shown: {j:#}"
            );
        } else {
            // Already staged: nothing copied in this rollout, so nothing shown either.
            assert_eq!(j["state"], "succeeded", "{j:#}");
            assert!(j["transfer"].is_null(), "{j:#}");
        }
    }
    // Both transfers are still listed, each with its job.
    let all = rig.transfers().await;
    assert_eq!(
        all.iter()
            .filter(|t| t["job"]["rollout"] == first.as_str())
            .count(),
        2
    );
    rig.stop().await;
}
