//! The store on a full disk: a write that did not commit is never reported as saved, the
//! service says it is degraded while writes fail, and it recovers by itself once there is room.
//! The data directory is a small tmpfs (mounting one needs root, as CI has).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Rig, ServeProcess, TOKEN};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill every free byte with a file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        // dd stops with "No space left on device", which is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", filler.display()))
            .output()
            .unwrap();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn inventory(n: usize) -> String {
    let mut s = String::from("devices:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  - name: full-disk-sw{i:03}\n    host: 10.9.{}.{}\n    platform: ios\n    username: admin\n    password: secret-{i}\n    groups: [access]\n",
            i / 250,
            i % 250 + 1
        ));
    }
    s
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(url);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/yaml", "--data-binary", b]);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn a_full_disk_never_reports_unsaved_writes_and_recovers_by_itself() {
    let disk = SmallDisk::mount("6m");
    let data = disk.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let serve = ServeProcess::start(&data);
    let url = |p: &str| format!("{}{p}", serve.base_url);
    let (code, health) = call("GET", &url("/api/v1/health"), None);
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "ok");

    let filler = disk.fill();
    let inv = inventory(500);
    let (code, body) = call("POST", &url("/api/v1/inventory/import"), Some(&inv));
    assert!(
        !(200..300).contains(&code),
        "an import that could not be saved answered {code}: {body}"
    );
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    let (code, health) = call("GET", &url("/api/v1/health"), None);
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reason"].as_str().unwrap_or("").contains("full"),
        "{health}"
    );

    // Room again: the next write works without a restart, and health says so.
    std::fs::remove_file(&filler).unwrap();
    let (code, body) = call("POST", &url("/api/v1/inventory/import"), Some(&inv));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 500);
    let (code, health) = call("GET", &url("/api/v1/health"), None);
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "ok");

    // And what was reported saved is there after a restart.
    let status = serve.terminate();
    assert!(status.success());
    let serve = ServeProcess::start(&data);
    let (code, page) = call(
        "GET",
        &format!("{}/api/v1/devices?limit=1000", serve.base_url),
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(page["total"], 500, "{page}");
}

/// A rollout whose data directory fills up stops starting steps (a step is recorded before it
/// runs, and that write fails), then goes on by itself once there is room; every device ends
/// upgraded and reloaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_stops_while_the_disk_is_full_and_goes_on_after() {
    use fleetup::shutdown::Shutdown;
    use fleetup::sim::{Lab, LabConfig};
    use std::time::Duration;

    use crate::support::{IMAGE, jobs, playbook};
    use crate::support::{TestApp, eventually, multipart_file, random_base, write_random_file};

    let disk = SmallDisk::mount("48m");
    let data = disk.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let lab_dir = tempfile::tempdir().unwrap();
    let lab_shutdown = Shutdown::new();
    let lab = Lab::start(
        LabConfig {
            devices: 4,
            base_ip: random_base(),
            ssh_port: 0,
            state_dir: lab_dir.path().to_path_buf(),
            boot_time: Duration::from_millis(200),
            // Copies that last about two seconds, so the disk fills while devices work.
            rate: Some(1024 * 1024),
            ..LabConfig::default()
        },
        lab_shutdown.clone(),
    )
    .await
    .unwrap();
    let app = TestApp::start_full(
        |a| {
            a.data_dir = data.clone();
            a.tftp = "127.0.0.1:0".parse().unwrap();
        },
        fleetup::rollout::Clock::System,
    )
    .await;
    let r = app
        .post("/api/v1/inventory/import")
        .body(lab.inventory_yaml())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let img = app.dir.path().join(IMAGE);
    write_random_file(&img, 2 * 1024 * 1024, 5);
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&img, IMAGE))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = app
        .post("/api/v1/rollouts")
        .header("content-type", "application/yaml")
        .body(playbook("strategy:\n  canary: 0\n  concurrency: 4\n"))
        .send()
        .await
        .unwrap();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let db = app.service.state.db.clone();
    eventually("a copy to start", || async {
        let events = db.events_after(&id, 0, 10_000).await.ok()?;
        events
            .iter()
            .any(|e| e.step.as_deref() == Some("copy"))
            .then_some(())
    })
    .await;

    let filler = disk.fill();
    eventually("a write to fail for lack of space", || async {
        db.writes_failing()
    })
    .await;
    let health = app.get("/api/v1/health").send().await.unwrap();
    assert_eq!(health.status(), 503);

    std::fs::remove_file(&filler).unwrap();
    let detail = eventually("the rollout to end", || async {
        let r = app.get(&format!("/api/v1/rollouts/{id}")).send().await;
        let d: Value = r.ok()?.json().await.ok()?;
        let state = d["state"].as_str()?;
        (!["scheduled", "running", "paused"].contains(&state)).then_some(d)
    })
    .await;
    assert_eq!(detail["state"], "completed", "{detail:#}");
    for j in jobs(&detail) {
        let st = lab.state(j["device"].as_str().unwrap()).unwrap();
        assert_eq!(st.reload_count, 1, "{j:#}");
        assert_eq!(j["state"], "succeeded", "{j:#}");
    }
    assert!(db.writes_failing().is_none());
    lab_shutdown.shutdown_and_wait().await;
}

/// An export without secrets, imported back, keeps every stored password and enable secret
/// (as `PUT` does); the export says the secrets were left out.
#[tokio::test]
async fn exporting_without_secrets_and_importing_back_keeps_the_secrets() {
    use crate::support::TestApp;
    let app = TestApp::start().await;
    let export = |secrets: bool| {
        let req = app.get(if secrets {
            "/api/v1/inventory/export?with_secrets=true"
        } else {
            "/api/v1/inventory/export"
        });
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let import = |text: String| {
        let req = app.post("/api/v1/inventory/import").body(text);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let inv = "devices:\n  - name: sec-sw1\n    host: 10.1.1.1\n    platform: ios\n    username: admin\n    password: pw-one\n    enable_secret: en-one\n  - name: sec-sw2\n    host: 10.1.1.2\n    platform: iosxe\n    username: admin\n    password_env: LAB_PW\n";
    assert_eq!(import(inv.to_string()).await["created"], 2);
    let plain = export(false).await;
    assert!(
        !plain.contains("pw-one") && !plain.contains("en-one"),
        "{plain}"
    );
    assert!(plain.contains("LEFT OUT"), "{plain}");
    assert!(
        plain.contains("LAB_PW"),
        "environment names are kept: {plain}"
    );
    let body = import(plain).await;
    assert_eq!(body["unchanged"], 2, "{body}");
    assert_eq!(body["updated"], 0, "{body}");
    let full = export(true).await;
    assert!(full.contains("pw-one") && full.contains("en-one"), "{full}");
    // A change elsewhere in the entry still updates it, and still keeps the secret.
    let changed: String = full
        .replace("10.1.1.1", "10.1.1.9")
        .lines()
        .filter(|l| !l.contains("password:") && !l.contains("enable_secret:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(import(changed).await["updated"], 1);
    let full = export(true).await;
    assert!(
        full.contains("pw-one") && full.contains("10.1.1.9"),
        "{full}"
    );
}

/// A database that refuses the devices' step records (not for lack of space: here a trigger
/// refuses them) halts the rollout after a few tries spaced out, rather than putting the
/// devices back in line at full speed for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_whose_steps_cannot_be_recorded_backs_off_then_halts() {
    let rig = crate::support::Rig::options(2).start().await;
    let db_file = rig.app().dir.path().join("fleetup.db");
    let out = Command::new("sqlite3")
        .arg(&db_file)
        .arg(
            "CREATE TRIGGER refuse_steps BEFORE INSERT ON rollout_events \
             WHEN NEW.kind = 'step_started' \
             BEGIN SELECT RAISE(ABORT, 'step records refused by the test'); END;",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = rig
        .submit(&crate::support::playbook(
            "strategy:\n  canary: 0\n  concurrency: 2\n",
        ))
        .await;
    let d = rig.wait_state(&id, &["halted"]).await;
    let reason = d["halt_reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("could finish in 3 attempts"),
        "halted for the refused records: {d:#}"
    );
    // Each device went back in line once per attempt, not thousands of times.
    let events = rig
        .app()
        .service
        .state
        .db
        .events_after(&id, 0, 100_000)
        .await
        .unwrap();
    let requeued = events
        .iter()
        .filter(|e| e.kind.as_str() == "device_requeued")
        .count();
    assert!(requeued <= 2 * 3, "{requeued} requeues");
    for dev in rig.lab.devices() {
        assert_eq!(rig.lab.state(&dev.name).unwrap().reload_count, 0);
    }
    rig.stop().await;
}

/// `fleetup db migrate` copies a SQLite store only while no service runs on its directory:
/// a copy taken under a running service could miss what it writes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn db_migrate_refuses_a_store_a_service_is_running_on() {
    let mut rig = Rig::options(1).serve_process().start().await;
    let from = format!("sqlite://{}", rig.data_dir().join("fleetup.db").display());
    let target = tempfile::tempdir().unwrap();
    let to = format!("sqlite://{}", target.path().join("fleetup.db").display());
    let refused = rig
        .fleetup(&["db", "migrate", "--from", &from, "--to", &to])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("in use by a running fleetup service") && err.contains("stop it"),
        "{err}"
    );
    assert!(
        !target.path().join("fleetup.db").exists(),
        "nothing was written to the target"
    );

    rig.terminate_serve();
    let copied = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["db", "migrate", "--from", &from, "--to", &to, "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let report: Value = serde_json::from_slice(&copied.stdout).unwrap();
    let devices = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "devices")
        .map(|t| t["rows"].as_u64());
    assert_eq!(devices, Some(Some(1)), "{report:#}");
}

/// A store on a fresh SQLite file, and the directory that holds it.
async fn sqlite_store() -> (tempfile::TempDir, fleetup::store::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = fleetup::store::Db::open(&dir.path().join("fleetup.db"))
        .await
        .unwrap();
    (dir, db)
}

#[tokio::test]
async fn sqlite_job_rows_keep_the_rev_of_their_last_change() {
    let (_dir, db) = sqlite_store().await;
    job_rows_keep_the_rev_of_their_last_change(&db).await;
}

#[tokio::test]
async fn sqlite_a_lease_renewal_alone_leaves_the_jobs_rev() {
    let (_dir, db) = sqlite_store().await;
    a_lease_renewal_alone_leaves_the_jobs_rev(&db).await;
}

#[tokio::test]
async fn sqlite_reads_a_rollout_views_catch_up_one_by_one() {
    let (_dir, db) = sqlite_store().await;
    rollout_with_jobs(&db, &["sw1"]).await;
    // No one-round-trip read on SQLite (`postgres::` has it): the view reads one by one.
    assert!(
        db.rollout_catch_up("r1", true, None, 0)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn sqlite_a_step_record_at_a_stale_epoch_is_refused_and_keeps_nothing() {
    let (_dir, db) = sqlite_store().await;
    a_step_record_at_a_stale_epoch_is_refused_and_keeps_nothing(&db).await;
}

/// A step record under a fence whose epoch the rollout's lease, or the job's claim, has left
/// is refused (`Fenced`, naming both epochs) and leaves no event; at the current epoch it is
/// kept. On PostgreSQL (`postgres::`) such a record goes in one round trip, whose check
/// fails the server's transaction; on SQLite, through `BEGIN IMMEDIATE`.
pub async fn a_step_record_at_a_stale_epoch_is_refused_and_keeps_nothing(db: &fleetup::store::Db) {
    use fleetup::rollout::model::{EventKind, StepState};
    use fleetup::store::StoreError;
    use fleetup::store::leases::Fence;
    rollout_with_jobs(db, &["sw1"]).await;
    sqlx::query("UPDATE rollouts SET lease_epoch = 4 WHERE id = 'r1'")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE rollout_devices SET runner_epoch = 7 WHERE device = 'sw1'")
        .execute(db.pool())
        .await
        .unwrap();
    let record = |epoch: i64, device: Option<&str>, message: &'static str| {
        let fence = Fence {
            rollout: "r1".into(),
            epoch,
            device: device.map(str::to_string),
        };
        fence.scope(db.record_step(
            "r1",
            "sw1",
            "reload",
            Some(StepState::Started),
            EventKind::StepStarted,
            message,
        ))
    };
    let messages = || async {
        db.events_after("r1", 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
    };
    for (epoch, device, says) in [
        (
            3,
            None,
            "rollout r1: another node took its lease over (epoch 3 here, 4 now)",
        ),
        (
            6,
            Some("sw1"),
            "rollout r1 device sw1: the job was claimed again or taken back (epoch 6 here, 7 now)",
        ),
    ] {
        match record(epoch, device, "a stale reload").await {
            Err(StoreError::Fenced(m)) => assert!(m.starts_with(says), "{m}"),
            other => panic!("epoch {epoch} {device:?}: {other:?}"),
        }
    }
    assert!(messages().await.is_empty(), "{:?}", messages().await);
    let job = || async {
        sqlx::query_as::<_, (Option<String>, i64)>(
            "SELECT step, reload_sent FROM rollout_devices WHERE rollout_id = 'r1' AND device = 'sw1'",
        )
        .fetch_one(db.pool())
        .await
        .unwrap()
    };
    assert_eq!(job().await, (None, 0));

    record(4, None, "the node's reload").await.unwrap();
    record(7, Some("sw1"), "the agent's reload").await.unwrap();
    assert_eq!(
        messages().await,
        ["the node's reload", "the agent's reload"]
    );
    assert_eq!(job().await, (Some("reload".to_string()), 1));
}

/// What `GET /rollouts/{id}` relies on to read only the jobs that changed: every write to a
/// job moves the rollout's `jobs_rev` and stamps the row with it; the rows past a count read
/// before are exactly those written since; a row copied with its rev (`db migrate`) keeps it
/// and moves nothing. Run on SQLite here and on PostgreSQL by `postgres::`.
pub async fn job_rows_keep_the_rev_of_their_last_change(db: &fleetup::store::Db) {
    let names = |jobs: Vec<fleetup::rollout::model::DeviceJob>| -> Vec<String> {
        jobs.into_iter().map(|j| j.device).collect()
    };
    rollout_with_jobs(db, &["sw1", "sw2", "sw3"]).await;
    let after_insert = db.jobs_rev("r1").await.unwrap();
    assert_eq!(after_insert, 3, "each insert moved the count");
    assert_eq!(
        names(db.jobs_changed_since("r1", 1).await.unwrap()),
        ["sw2", "sw3"]
    );
    assert!(
        db.jobs_changed_since("r1", after_insert)
            .await
            .unwrap()
            .is_empty()
    );

    for (device, state) in [("sw3", "running"), ("sw1", "running"), ("sw3", "succeeded")] {
        sqlx::query(
            "UPDATE rollout_devices SET state = $1 WHERE rollout_id = 'r1' AND device = $2",
        )
        .bind(state)
        .bind(device)
        .execute(db.pool())
        .await
        .unwrap();
    }
    assert_eq!(db.jobs_rev("r1").await.unwrap(), after_insert + 3);
    let changed = db.jobs_changed_since("r1", after_insert).await.unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|j| (j.device.as_str(), j.state.as_str()))
            .collect::<Vec<_>>(),
        [("sw1", "running"), ("sw3", "succeeded")],
        "in wave and position order, as last written"
    );
    assert_eq!(
        names(db.jobs_changed_since("r1", after_insert + 2).await.unwrap()),
        ["sw3"]
    );
    let revs: Vec<(String, i64)> =
        sqlx::query_as("SELECT device, rev FROM rollout_devices ORDER BY position")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        revs,
        [("sw1".into(), 5), ("sw2".into(), 2), ("sw3".into(), 6)]
    );

    // A row written with its rev set (what a copy does) keeps it and moves no count.
    sqlx::query("UPDATE rollout_devices SET rev = 2, state = 'failed' WHERE device = 'sw1'")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO rollout_devices (rollout_id, device, wave, position, image, rev) \
         VALUES ('r1', 'sw4', 0, 3, 'img.bin', 4)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    assert_eq!(db.jobs_rev("r1").await.unwrap(), after_insert + 3);
    let rev: i64 = sqlx::query_scalar("SELECT rev FROM rollout_devices WHERE device = 'sw4'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(rev, 4);
}

/// A site agent's heartbeat, which moves only a job's `runner_until_ms`, leaves the rollout's
/// `jobs_rev` and the row's rev where they were (hundreds of rows a call, none of it shown by
/// the API); a write of any other column of a job stamps the row, so a column added later and
/// left out of the update trigger's list fails here. Run on SQLite here and on PostgreSQL by
/// `postgres::`.
pub async fn a_lease_renewal_alone_leaves_the_jobs_rev(db: &fleetup::store::Db) {
    rollout_with_jobs(db, &["sw1", "sw2"]).await;
    let rev = |device: &'static str| async move {
        let row: i64 = sqlx::query_scalar("SELECT rev FROM rollout_devices WHERE device = $1")
            .bind(device)
            .fetch_one(db.pool())
            .await
            .unwrap();
        (db.jobs_rev("r1").await.unwrap(), row)
    };
    db.offer_job("r1", "sw1", "lab", "handed", &Value::Null)
        .await
        .unwrap();
    let held: Vec<_> = db
        .claim_site_jobs_noted("lab", "a1", 60_000, 10, |_| None)
        .await
        .unwrap()
        .into_iter()
        .map(|(job, _)| job)
        .collect();
    assert_eq!(held.len(), 1);
    let until = || async {
        let until: i64 =
            sqlx::query_scalar("SELECT runner_until_ms FROM rollout_devices WHERE device = 'sw1'")
                .fetch_one(db.pool())
                .await
                .unwrap();
        until
    };
    let claimed_until = until().await;
    let claimed = rev("sw1").await;
    assert_eq!(claimed.0, claimed.1, "the claim stamped the row");

    assert!(
        db.renew_site_jobs("a1", "lab", &held, 120_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(rev("sw1").await, claimed, "a renewal moves no rev");
    assert!(
        db.jobs_changed_since("r1", claimed.0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(until().await > claimed_until, "the lease was renewed");

    let table = db
        .schema()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "rollout_devices")
        .unwrap();
    let mut stamped = 0;
    for column in table.columns.iter().map(|c| c.name.as_str()) {
        if matches!(column, "runner_until_ms" | "rev") {
            continue;
        }
        let before = rev("sw2").await;
        sqlx::query(&format!(
            "UPDATE rollout_devices SET {column} = {column} WHERE device = 'sw2'"
        ))
        .execute(db.pool())
        .await
        .unwrap();
        let after = rev("sw2").await;
        assert_eq!(
            after,
            (before.0 + 1, before.0 + 1),
            "a write of {column} stamps the row"
        );
        stamped += 1;
    }
    assert!(stamped >= 20, "{stamped} columns written");
}

/// Rollout r1, running, with a pending job for each of `devices` in that order (wave 0), each
/// inserted on its own, as SQL: what the store's tests build on (here and in `postgres::`).
pub async fn rollout_with_jobs(db: &fleetup::store::Db, devices: &[&str]) {
    sqlx::query(
        "INSERT INTO rollouts (id, name, state, created_at, updated_at) \
         VALUES ('r1', 'r1', 'running', '2026-12-07T00:00:00Z', '2026-12-07T00:00:00Z')",
    )
    .execute(db.pool())
    .await
    .unwrap();
    for (position, device) in devices.iter().enumerate() {
        sqlx::query(
            "INSERT INTO rollout_devices (rollout_id, device, wave, position, image) \
             VALUES ('r1', $1, 0, $2, 'img.bin')",
        )
        .bind(*device)
        .bind(position as i64)
        .execute(db.pool())
        .await
        .unwrap();
    }
}
