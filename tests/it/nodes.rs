//! Several `fleetup serve` nodes on one PostgreSQL database: a rollout is driven by the node
//! that holds its lease; when that node dies (kill -9) or stops answering (SIGSTOP past its
//! lease), another node takes the rollout over from what was recorded, and no device is
//! reloaded twice. A node whose lease was taken over can no longer record a step (fencing).
//!
//! Each node is a real `fleetup serve` process with a data directory of its own; they share
//! the database only. The image is uploaded to the first node; the second fetches it from the
//! first by SHA-256 while the rollout runs (`GET /api/v1/blobs/sha256/…`), before it is needed.
//! PostgreSQL only: run by scripts/test's PostgreSQL pass.

use std::path::Path;
use std::time::Duration;

use fleetup::sim::Fault;
use serde_json::Value;

use crate::support::{
    IMAGE, Rig, ServeProcess, assert_every_device_reloaded_once, eventually, jobs, playbook,
    test_database, wait_reloads_mid_wave,
};

/// The lease of both nodes in these tests, in seconds.
const LEASE: &str = "3";

/// A rig whose service is node `a` (a `fleetup serve` process), a lab of `devices` copying at
/// `rate` bytes per second, a second node `b` on the same database, and a rollout of
/// `strategy` submitted to `a`. The scratch directory holds `b`'s data.
async fn two_nodes(
    devices: usize,
    rate: u64,
    boot: Duration,
    strategy: &str,
) -> (Rig, tempfile::TempDir, ServeProcess, String) {
    let rig = Rig::options(devices)
        .lab(|c| {
            c.boot_time = boot;
            c.rate = Some(rate);
        })
        .serve_process()
        .process_flags(&["--node-name", "a", "--lease", LEASE])
        .image_size(2 * 1024 * 1024)
        .start()
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let b = second_node(&rig, scratch.path(), "b");
    let id = rig
        .submit(&playbook(&format!("strategy:\n{strategy}")))
        .await;
    (rig, scratch, b, id)
}

/// A second node `name` on the rig's database, with its own data directory in `dir` (and no
/// image file).
fn second_node(rig: &Rig, dir: &Path, name: &str) -> ServeProcess {
    let url = test_database(&rig.data_dir()).expect(
        "FLEETUP_TEST_POSTGRES names the PostgreSQL that scripts/test starts (scripts/postgres up DIR)",
    );
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    ServeProcess::start_with(
        &data,
        &[
            "--database",
            &url,
            "--node-name",
            name,
            "--lease",
            LEASE,
            "--tftp",
            "127.0.0.1:0",
            "--ftp",
            "127.0.0.1:0",
        ],
    )
}

/// Wait until node `name` (data in `dir`) holds the rollout's image, fetched from node a, byte
/// for byte.
async fn wait_image_fetched(rig: &Rig, dir: &Path, name: &str) {
    let want = std::fs::read(rig.data_dir().join("images").join(IMAGE)).unwrap();
    let path = dir.join(name).join("images").join(IMAGE);
    eventually(
        &format!("node {name} to fetch the image by SHA-256"),
        || async { (std::fs::read(&path).ok()? == want).then_some(()) },
    )
    .await;
    // The cache's index is written once the file is in place: wait for it too.
    let index = dir.join(name).join("images").join(".cache.json");
    eventually(
        &format!("node {name} to list the image as fetched (evictable)"),
        || async {
            std::fs::read_to_string(&index)
                .ok()?
                .contains(IMAGE)
                .then_some(())
        },
    )
    .await;
}

async fn detail(node: &ServeProcess, id: &str) -> Option<Value> {
    let r = node
        .get(&format!("/api/v1/rollouts/{id}"))
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

async fn wait_end(node: &ServeProcess, id: &str) -> Value {
    eventually(
        &format!("rollout {id} to end on the other node"),
        || async {
            let d = detail(node, id).await?;
            matches!(
                d["state"].as_str(),
                Some("completed" | "completed_with_failures" | "halted" | "aborted")
            )
            .then_some(d)
        },
    )
    .await
}

async fn events(node: &ServeProcess, id: &str) -> Vec<Value> {
    let r: Value = node
        .get(&format!("/api/v1/rollouts/{id}/activity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn two_nodes_kill_9_of_the_holder_mid_wave_and_every_device_is_reloaded_once() {
    let (mut rig, scratch, b, id) = two_nodes(
        30,
        2 * 1024 * 1024,
        Duration::from_millis(1500),
        "  canary: 1\n  concurrency: 10\n",
    )
    .await;
    // Node a took it (the submit started it there); node b sees that a holds its lease.
    eventually("node a to hold the rollout", || async {
        let nodes: Value = b
            .get("/api/v1/nodes")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let a = nodes["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["name"] == "a")?
            .clone();
        a["rollouts"]
            .as_array()?
            .iter()
            .any(|r| r == id.as_str())
            .then_some(())
    })
    .await;
    // b's live stream shows what a records: opened after the last event b can read now, it
    // brings steps that only a runs.
    let seen: Vec<Value> = events(&b, &id).await;
    let after = seen
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0);
    let stream = b
        .get(&format!("/api/v1/rollouts/{id}/events?after={after}"))
        .send()
        .await
        .unwrap();
    assert!(stream.status().is_success());
    let (relayed, _) = crate::support::read_stream_until(stream, "event: step_started").await;
    assert!(relayed, "node b's live stream shows node a's steps");
    // b fetches the running rollout's image ahead of need: a dies with the only upload.
    wait_image_fetched(&rig, scratch.path(), "b").await;
    // Kill a in the main wave once some reloads are sent and others are still far off.
    wait_reloads_mid_wave(&rig, &id, 1, 2, 10).await;
    rig.kill_serve();

    let d = wait_end(&b, &id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(jobs(&d).len(), 30);
    assert_every_device_reloaded_once(&rig);
    let taken = events(&b, &id).await.into_iter().find(|e| {
        e["kind"] == "resumed" && e["data"]["node"] == "b" && e["data"]["previous_node"] == "a"
    });
    assert!(
        taken.is_some(),
        "b says it took the rollout over from a: {:#?}",
        events(&b, &id).await
    );
    // Every device's configurations, kept by the node that ran its steps (a, for those it
    // read before it died), are shown and compared by b.
    for j in jobs(&d) {
        let name = j["device"].as_str().unwrap();
        let r = b
            .get(&format!("/api/v1/devices/{name}/configs/diff/{id}"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{name}: {status} {body}");
        assert!(body["before"]["id"].as_i64().is_some(), "{name}: {body}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn a_node_paused_past_its_lease_cannot_record_a_step_after_the_takeover() {
    // About eight seconds per copy: the node is stopped in the middle of them.
    let (rig, scratch, b, id) = two_nodes(
        4,
        256 * 1024,
        Duration::from_millis(500),
        "  canary: 0\n  concurrency: 4\n",
    )
    .await;
    eventually("every device copying on node a", || async {
        let d = rig.try_detail(&id).await?;
        let jobs = jobs(&d);
        (jobs.len() == 4 && jobs.iter().all(|j| j["step"] == "copy")).then_some(())
    })
    .await;
    wait_image_fetched(&rig, scratch.path(), "b").await;
    let a_pid = rig.serve_handle().pid().to_string();
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &a_pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {a_pid}");
    };
    signal("-STOP");
    // b takes the rollout over once a's lease lapses, and goes on with it.
    eventually("node b to take the rollout over", || async {
        events(&b, &id)
            .await
            .into_iter()
            .any(|e| e["kind"] == "resumed" && e["data"]["node"] == "b")
            .then_some(())
    })
    .await;
    signal("-CONT");
    // a wakes up in the middle of its copies: whatever it tries to record now is refused, and
    // it stops driving the rollout.
    eventually("node a to find its lease taken over", || async {
        let log = rig.serve_handle().log();
        (log.contains("another node took its lease over")
            || log.contains("another node took the rollout's lease over"))
        .then_some(())
    })
    .await;
    let d = wait_end(&b, &id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    // No event after the takeover comes from a: b's events are the only ones that name a node.
    let nodes: Value = b
        .get("/api/v1/nodes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["rollouts"].as_array().unwrap().is_empty()),
        "the ended rollout's lease was given back: {nodes:#}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn a_token_made_or_revoked_on_one_node_counts_on_the_other() {
    let rig = Rig::options(1)
        .serve_process()
        .process_flags(&["--node-name", "a", "--lease", LEASE])
        .start()
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let b = second_node(&rig, scratch.path(), "b");
    let http = fleetup::http_client::client();
    // Made on b with the admin token.
    let made = http
        .post(format!("{}/api/v1/tokens", b.base_url))
        .bearer_auth(crate::support::TOKEN)
        .json(&serde_json::json!({"name": "ops-viewer", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    let made: Value = made.json().await.unwrap();
    let secret = made["secret"]
        .as_str()
        .expect("a new token's secret")
        .to_string();
    let status = |base: String| {
        let (http, secret) = (http.clone(), secret.clone());
        async move {
            http.get(format!("{base}/api/v1/devices"))
                .bearer_auth(secret)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    eventually("node a to accept the token made on node b", || async {
        (status(rig.base_url()).await? == 200).then_some(())
    })
    .await;
    // Revoked on a: refused by b.
    let r = http
        .delete(format!("{}/api/v1/tokens/ops-viewer", rig.base_url()))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    eventually("node b to refuse the token revoked on node a", || async {
        (status(b.base_url.clone()).await? == 401).then_some(())
    })
    .await;
    rig.stop().await;
}

/// A rollout halts on node a while devices of the wave are still reloading there, and the
/// operator retries it through node b at once. b's retry waits for a's task to end (a still
/// holds the rollout's lease), then runs the rollout again; a's last writes cannot undo it,
/// and the rollout completes with every device reloaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn a_retry_through_another_node_waits_for_the_halted_task_and_the_rollout_completes() {
    // Four seconds per copy and per boot: the wave's other devices are reloading when the
    // corrupt copy halts the rollout.
    let (rig, _scratch, b, id) = two_nodes(
        5,
        512 * 1024,
        Duration::from_secs(4),
        "  canary: 1\n  concurrency: 4\n  max_failures: 0\n",
    )
    .await;
    // The canary runs first; the fault is in place before the main wave starts.
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[1], Fault::CorruptDownload));
    let halted = eventually("the rollout to halt, seen from node b", || async {
        let d = detail(&b, &id).await?;
        (d["state"] == "halted").then_some(d)
    })
    .await;
    let still_running = jobs(&halted)
        .iter()
        .filter(|j| j["state"] == "running")
        .count();
    eprintln!("devices still running on node a when the rollout halted: {still_running}");

    rig.lab.clear_faults(&names[1]);
    let retry = b
        .post(&format!("/api/v1/rollouts/{id}/retry"))
        .send()
        .await
        .unwrap();
    let status = retry.status();
    let body: Value = retry.json().await.unwrap_or_default();
    assert_eq!(status, reqwest::StatusCode::OK, "{body:#}");

    let d = wait_end(&b, &id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    let kinds: Vec<Value> = events(&b, &id)
        .await
        .into_iter()
        .map(|e| e["kind"].clone())
        .collect();
    let halt = kinds.iter().rposition(|k| k == "halted");
    let retried = kinds.iter().rposition(|k| k == "retry");
    assert!(
        halt.is_some() && retried > halt,
        "the retry came after the last halt, which nothing undid: {kinds:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run by scripts/test's PostgreSQL pass"]
async fn kill_9_of_the_leading_node_while_an_agent_drives_its_site_and_every_device_is_reloaded_once()
 {
    let rig = Rig::options(12)
        .lab(|c| {
            c.boot_time = Duration::from_millis(1500);
            c.rate = Some(2 * 1024 * 1024);
        })
        .serve_process()
        .process_flags(&["--node-name", "a", "--lease", LEASE])
        .image_size(2 * 1024 * 1024)
        .start()
        .await;
    let scratch = tempfile::tempdir().unwrap();
    let b = second_node(&rig, scratch.path(), "b");
    // The site's agent reports to node b, which fetches the image from node a for it.
    let agent_dir = scratch.path().join("agent");
    let agent =
        crate::agents::AgentProcess::start_named(&b.base_url, "lab", "agent-lab", &agent_dir, &[]);
    eventually("the agent to drive its site", || async {
        let list: Value = b
            .get("/api/v1/agents")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list["agents"]
            .as_array()?
            .iter()
            .any(|a| a["name"] == "agent-lab" && a["live"] == true && a["drives"] == true)
            .then_some(())
    })
    .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 4\n"))
        .await;
    // Node a leads; kill it once the agent sent some reloads of the main wave.
    wait_reloads_mid_wave(&rig, &id, 1, 1, 4).await;
    let mut rig = rig;
    rig.kill_serve();

    let d = wait_end(&b, &id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(jobs(&d).len(), 12);
    assert_every_device_reloaded_once(&rig);
    let all = events(&b, &id).await;
    let said = |text: &str| {
        all.iter()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(text)))
            .count()
    };
    // Every device was driven by the agent, handed to it by a and then by b.
    assert_eq!(
        said("claimed by agent agent-lab of site lab"),
        12,
        "{all:#?}"
    );
    assert!(
        all.iter().any(|e| e["kind"] == "resumed"
            && e["data"]["node"] == "b"
            && e["data"]["previous_node"] == "a"),
        "b took the rollout over from a: {all:#?}"
    );
    agent.assert_logged("claimed a device job");
    drop(agent);
    rig.stop().await;
}
