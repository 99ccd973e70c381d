//! Site agents (`fleetup agent`): a real agent process next to the service fetches the image
//! its site needs once, by SHA-256, serves it over TFTP only once the checksum matched, and
//! the site's devices copy from it. A file damaged on the agent's disk is taken out of service,
//! and fetched again; an image whose origin file is damaged is never served.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::Digest as _;

use crate::support::{
    IMAGE, IMAGE_VERSION, Rig, TOKEN, assert_every_device_reloaded_once, assert_success,
    eventually, fleetup_alone, jobs, playbook, stdout,
};

/// A `fleetup agent` process for `site`, beating every second.
pub(crate) struct AgentProcess {
    pub(crate) child: Child,
    tftp: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl AgentProcess {
    /// An agent that serves files only: the serve node drives the devices.
    fn start(server: &str, site: &str, dir: &Path) -> AgentProcess {
        Self::start_with(server, site, dir, &["--drive", "false"])
    }

    fn start_with(server: &str, site: &str, dir: &Path, extra: &[&str]) -> AgentProcess {
        Self::start_named(server, site, &format!("agent-{site}"), dir, extra)
    }

    pub(crate) fn start_named(
        server: &str,
        site: &str,
        name: &str,
        dir: &Path,
        extra: &[&str],
    ) -> AgentProcess {
        Self::start_as(server, site, name, dir, extra, Some(TOKEN))
    }

    /// An agent that presents `token` (`FLEETUP_AGENT_TOKEN`); with none, `extra` says where
    /// its token is.
    fn start_as(
        server: &str,
        site: &str,
        name: &str,
        dir: &Path,
        extra: &[&str],
        token: Option<&str>,
    ) -> AgentProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fleetup"));
        if let Some(token) = token {
            command.env("FLEETUP_AGENT_TOKEN", token);
        }
        let mut child = command
            .args(["agent", "--site", site, "--server", server, "--name", name])
            .arg("--data-dir")
            .arg(dir)
            .args(["--tftp", "127.0.0.1:0", "--heartbeat", "1"])
            .args(extra)
            .env("FLEETUP_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tftp = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(addr) = line.trim().strip_prefix("TFTP: ") {
                tftp = addr.parse().ok();
                break;
            }
        }
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        AgentProcess {
            child,
            tftp: tftp.unwrap_or_else(|| panic!("agent printed its TFTP address: {log:?}")),
            log,
            dir: dir.to_path_buf(),
        }
    }

    /// The agent logged a line containing `text`.
    pub(crate) fn assert_logged(&self, text: &str) {
        let log = self.log();
        assert!(log.contains(text), "{text:?} in the agent's log:\n{log}");
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn cached(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join("images").join(IMAGE)).ok()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` downloaded from the TFTP server at `addr` with curl; `None` when refused.
fn tftp_get(addr: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("tftp://{addr}/{name}"))
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

async fn agent_view(rig: &Rig, name: &str) -> Option<Value> {
    let list: Value = rig
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
        .find(|a| a["name"] == name)
        .cloned()
}

/// Wait until agent `name` beats and drives its site.
async fn wait_driving(rig: &Rig, name: &str) {
    eventually(
        &format!("agent {name} to show as live and driving"),
        || async {
            agent_view(rig, name)
                .await
                .filter(|a| a["live"] == true && a["drives"] == true)
        },
    )
    .await;
}

/// Wait until agent `name` reports `n` completed downloads of the image over `protocol`.
async fn wait_downloads(rig: &Rig, name: &str, protocol: &str, n: usize) {
    eventually(
        &format!("agent {name} to report {n} {protocol} downloads"),
        || async {
            let a = agent_view(rig, name).await?;
            let done = a["transfers"]
                .as_array()?
                .iter()
                .filter(|t| {
                    t["file"] == IMAGE && t["protocol"] == protocol && t["state"] == "completed"
                })
                .count();
            (done == n).then_some(())
        },
    )
    .await;
}

/// A rig of `devices` lab devices that take six seconds to boot: long enough to stop an
/// agent while they come back.
async fn slow_boot_rig(devices: usize) -> Rig {
    Rig::options(devices)
        .lab(|c| c.boot_time = std::time::Duration::from_secs(6))
        .start()
        .await
}

/// Wait until every lab device was sent its reload.
async fn wait_all_reloading(rig: &Rig) {
    eventually("every device reloading", || async {
        rig.lab
            .devices()
            .iter()
            .all(|d| rig.lab.state(&d.name).is_some_and(|s| s.reload_count == 1))
            .then_some(())
    })
    .await;
}

fn image_bytes(rig: &Rig) -> Vec<u8> {
    std::fs::read(rig.dir.path().join(IMAGE)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_site_copies_from_its_agent_which_fetched_the_image_once_by_sha256() {
    let rig = Rig::options(3).start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&rig.base_url(), "lab", dir.path());
    let view = eventually("the agent to show as live", || async {
        agent_view(&rig, "agent-lab")
            .await
            .filter(|a| a["live"] == true)
    })
    .await;
    assert_eq!(view["site"], "lab");
    assert_eq!(view["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(view["tftp"], agent.tftp.to_string());
    assert!(view["images"].as_array().unwrap().is_empty(), "{view:#}");
    // Nothing to serve before a rollout needs it.
    assert_eq!(tftp_get(agent.tftp, IMAGE), None);

    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 3\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(jobs(&d).len(), 3);
    assert_every_device_reloaded_once(&rig);
    let want = image_bytes(&rig);
    assert_eq!(agent.cached().as_deref(), Some(&want[..]));
    let sha = hex::encode(sha2::Sha256::digest(&want));
    // The agent reports the three devices' downloads; the service served none of them.
    let view = eventually("the agent to report three finished downloads", || async {
        let a = agent_view(&rig, "agent-lab").await?;
        let done = a["transfers"]
            .as_array()?
            .iter()
            .filter(|t| t["file"] == IMAGE && t["state"] == "completed")
            .count();
        (done == 3).then_some(a)
    })
    .await;
    assert_eq!(view["images"], serde_json::json!([sha]), "{view:#}");
    let own: Value = rig
        .get("/api/v1/transfers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        own["transfers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["file"] != IMAGE),
        "the devices copied from the agent, not the service: {own:#}"
    );
    agent.assert_logged("image fetched by SHA-256 and checked");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_serves_an_image_only_once_its_sha256_matches_and_fetches_a_damaged_one_again() {
    let rig = Rig::options(1).start().await;
    // A rollout waiting for its approval: the site's device still has to copy the image.
    let id = rig
        .submit(&playbook("approval: required\nstrategy:\n  canary: 0\n"))
        .await;
    rig.wait_state(&id, &["awaiting_approval"]).await;
    let want = image_bytes(&rig);
    let origin = rig.app().dir.path().join("images").join(IMAGE);
    // The service's own file is damaged: it refuses to send it, the agent serves nothing.
    let mut damaged = want.clone();
    damaged[4321] ^= 0x5a;
    std::fs::write(&origin, &damaged).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&rig.base_url(), "lab", dir.path());
    eventually("the agent to be refused the damaged image", || async {
        agent
            .log()
            .contains("cannot fetch an image the site needs")
            .then_some(())
    })
    .await;
    agent.assert_logged("HTTP 404");
    assert_eq!(tftp_get(agent.tftp, IMAGE), None);
    assert_eq!(agent.cached(), None);
    let view = agent_view(&rig, "agent-lab").await.unwrap();
    assert!(view["images"].as_array().unwrap().is_empty(), "{view:#}");

    // Restored from a backup: checked again, sent, checked by the agent, served.
    std::fs::write(&origin, &want).unwrap();
    let served = eventually("the agent to serve the image", || async {
        tftp_get(agent.tftp, IMAGE)
    })
    .await;
    assert_eq!(served, want);

    // Damaged on the agent's disk (same size): taken out of service, fetched again.
    let cached = dir.path().join("images").join(IMAGE);
    std::fs::write(&cached, &damaged).unwrap();
    eventually("the agent to fetch the damaged file again", || async {
        (agent.log().contains("no longer matches its SHA-256") && agent.cached()? == want)
            .then_some(())
    })
    .await;
    assert_eq!(tftp_get(agent.tftp, IMAGE).as_deref(), Some(&want[..]));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_an_agent_mid_copy_and_the_copies_resume_from_it_when_it_is_back() {
    // About six seconds per copy: the agent is killed in the middle of them.
    let rig = Rig::options(2)
        .lab(|c| c.rate = Some(512 * 1024))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start(&rig.base_url(), "lab", dir.path());
    eventually("the agent to show as live", || async {
        agent_view(&rig, "agent-lab")
            .await
            .filter(|a| a["live"] == true)
    })
    .await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 2\n"))
        .await;
    eventually("both devices copying from the agent", || async {
        let a = agent_view(&rig, "agent-lab").await?;
        let active = a["transfers"]
            .as_array()?
            .iter()
            .filter(|t| t["state"] == "active" && t["bytes"].as_u64().unwrap_or(0) > 0)
            .count();
        (active == 2).then_some(())
    })
    .await;
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    // Back on the same cache, with a new TFTP port.
    let old_tftp = agent.tftp;
    agent = AgentProcess::start(&rig.base_url(), "lab", dir.path());
    assert_ne!(agent.tftp, old_tftp);

    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    let said = messages(&rig, &id).await;
    let retried = said
        .iter()
        .filter(|(_, m)| m.starts_with("the copy from agent agent-lab of site lab failed"))
        .count();
    assert!(retried >= 2, "each device's copy is tried again: {said:#?}");
    // The agent that came back served both copies again, from the cache it checked at start.
    agent.assert_logged("cached images checked");
    wait_downloads(&rig, "agent-lab", "tftp", 2).await;
    rig.stop().await;
}

/// The messages of a rollout's events.
async fn messages(rig: &Rig, id: &str) -> Vec<(Option<String>, String)> {
    let activity: Value = rig
        .get(&format!("/api/v1/rollouts/{id}/activity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["device"].as_str().map(str::to_string),
                e["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_drives_its_sites_devices_and_records_every_step_through_the_service() {
    let rig = Rig::options(3).start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start_with(&rig.base_url(), "lab", dir.path(), &[]);
    wait_driving(&rig, "agent-lab").await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 1\n  concurrency: 3\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    for j in jobs(&d) {
        assert_eq!(j["state"], "succeeded", "{j:#}");
    }
    let said = messages(&rig, &id).await;
    for dev in rig.lab.devices() {
        let of = |text: &str| {
            said.iter()
                .filter(|(d, m)| d.as_deref() == Some(dev.name.as_str()) && m.contains(text))
                .count()
        };
        assert_eq!(
            of("handed to the agents of site lab"),
            1,
            "{}: {said:#?}",
            dev.name
        );
        // The steps the agent ran were recorded by the service, the reload among them.
        assert!(of("reload") >= 1, "{}: {said:#?}", dev.name);
        // The claim is on the job's record, with the token that made it.
        assert_eq!(
            of("claimed by agent agent-lab of site lab with token admin"),
            1,
            "{}: {said:#?}",
            dev.name
        );
    }
    // The agent's heartbeats, claims and calls come every second: the audit log keeps them
    // only when refused, and the submission is there.
    let audit: Value = rig
        .get("/api/v1/audit?by=admin&limit=1000")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"/api/v1/rollouts"), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.starts_with("/api/v1/agents/")),
        "{paths:?}"
    );
    // Every device copied the image from the agent's own TFTP server.
    wait_downloads(&rig, "agent-lab", "tftp", 3).await;
    agent.assert_logged("claimed a device job of the site");
    // The service counts the agent's calls, and the ops they carried by op: one end and one
    // attempt per job, the step records. The writes whose moment does not matter went with
    // the next write: each job's attempt with its first step, its facts and the version
    // before with its end.
    let metrics = rig.get_text("/metrics").await;
    let sample = |line: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {line}in {metrics}"))
    };
    let calls = |op: &str| sample(&format!("fleetup_agent_job_calls_total{{op=\"{op}\"}} "));
    assert_eq!(calls("finish"), 3);
    assert_eq!(calls("start_attempt"), 3);
    assert!(calls("steps") >= 3 * 10, "{metrics}");
    assert_eq!(calls("wait_for_window"), 0);
    assert!(calls("batch") >= 2 * 3, "{metrics}");
    // Each batch saved at least one call: fewer calls than ops outside batches.
    let ops: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("fleetup_agent_job_calls_total{") && !l.contains("\"batch\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let requests = sample("fleetup_agent_job_requests_total ");
    assert!(requests + calls("batch") <= ops, "{metrics}");
    // A batch carries writes only, and no batch.
    let device = rig.lab.devices()[0].name.clone();
    for (ops, why) in [
        (
            serde_json::json!([{"op": "view"}]),
            "a batch holds writes only",
        ),
        (
            serde_json::json!([{"op": "batch", "ops": []}]),
            "a batch holds no batch",
        ),
    ] {
        let refused = rig
            .post(&format!("/api/v1/agents/jobs/{id}/{device}"))
            .json(&serde_json::json!({"epoch": 1, "op": {"op": "batch", "ops": ops}}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 422);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["message"], why, "{body:#}");
    }
    // A step record at an epoch the job has left (every claim moved it past 0) is refused,
    // and nothing of it is kept: not its event, not its transcript line. On PostgreSQL it
    // goes in one round trip, whose fence's check fails the server's transaction.
    let before = rig.events(&id).await.len();
    let stale = rig
        .post(&format!("/api/v1/agents/jobs/{id}/{device}"))
        .json(&serde_json::json!({"epoch": 0, "op": {"op": "steps", "records": [{
            "step": "reload",
            "state": "started",
            "kind": "step_started",
            "message": "a stale agent's reload",
            "transcript": [{"kind": "command", "command": "reload", "output": "stale-output-7731",
                            "at": "2026-12-07T18:00:00Z"}],
        }]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    let body: Value = stale.json().await.unwrap();
    assert_eq!(body["error"]["code"], "fenced", "{body:#}");
    let said = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        said.contains(&format!("device {device}: the job was claimed again"))
            && said.contains("(epoch 0 here, ")
            && !said.contains("{now}"),
        "{said}"
    );
    let after = rig.events(&id).await;
    assert_eq!(after.len(), before, "{after:#?}");
    assert!(
        !after
            .iter()
            .any(|e| e["message"] == "a stale agent's reload"),
        "{after:#?}"
    );
    let job = rig
        .get(&format!("/api/v1/devices/{device}/rollouts/{id}"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert!(!job.to_string().contains("stale-output-7731"), "{job:#}");
    rig.stop().await;
}

/// A new token's secret, made by the admin token; the answer's `site` is checked against
/// `site`.
async fn new_token(rig: &Rig, name: &str, role: &str, site: Option<&str>) -> String {
    let made = rig
        .post("/api/v1/tokens")
        .json(&serde_json::json!({"name": name, "role": role, "site": site}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["role"], role, "{made:#}");
    assert_eq!(made["site"].as_str(), site, "{made:#}");
    made["secret"].as_str().expect("the new token").to_string()
}

/// The status and error message of a call with `token`.
async fn call_as(
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = fleetup::http_client::client()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, message)
}

/// An agent refuses to start, saying why, without a token it can use: a `--token-file` it
/// cannot read or that holds nothing, both `--token` and `--token-file`, or neither.
#[test]
fn an_agent_without_a_usable_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let empty = empty.to_str().unwrap();
    let missing = dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let data = dir.path().join("data");
    for (args, said) in [
        (vec!["--token-file", missing], "cannot read the token"),
        (vec!["--token-file", empty], "is empty"),
        (
            vec!["--token-file", empty, "--token", "x"],
            "cannot be used with",
        ),
        (vec![], "--token"),
    ] {
        let out = fleetup_alone()
            .args(["agent", "--site", "lab", "--server", "http://127.0.0.1:9"])
            .arg("--data-dir")
            .arg(&data)
            .args(["--tftp", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {said:?} in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_token_runs_its_own_sites_jobs_and_nothing_else() {
    let rig = Rig::options(3).start().await;
    // An agent token is bound to a site; no other role has one.
    for (body, why) in [
        (
            serde_json::json!({"name": "x1", "role": "agent"}),
            "an agent token is bound to a site: give its `site`",
        ),
        (
            serde_json::json!({"name": "x2", "role": "operator", "site": "lab"}),
            "only an agent token has a site, not an operator token",
        ),
    ] {
        let refused = rig.post("/api/v1/tokens").json(&body).send().await.unwrap();
        assert_eq!(refused.status(), 422);
        let said: Value = refused.json().await.unwrap();
        assert_eq!(said["error"]["message"], why, "{said:#}");
    }
    // The lab's token, minted as a script would for the agent's --token-file.
    let minted = rig
        .fleetup(&[
            "token",
            "create",
            "--role",
            "agent",
            "--site",
            "lab",
            "--name",
            "agent-lab-token",
            "--secret-only",
        ])
        .await;
    assert_success(&minted);
    let lab = stdout(&minted);
    assert_eq!(lab.lines().count(), 1, "the secret alone: {lab:?}");
    let lab = lab.trim().to_string();
    assert!(lab.len() >= 32, "{lab:?}");
    let token_file = rig.dir.path().join("agent-lab-token");
    std::fs::write(&token_file, format!("{lab}\n")).unwrap();
    let elsewhere = new_token(&rig, "agent-elsewhere-token", "agent", Some("elsewhere")).await;
    let listed = rig.get_json("/api/v1/tokens").await;
    let site_of = |name: &str| {
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["site"].clone())
    };
    assert_eq!(site_of("agent-lab-token"), Some(Value::from("lab")));
    assert_eq!(site_of("admin"), Some(Value::Null));

    // The lab's agent, with the lab's token, drives the lab's devices.
    let dir = tempfile::tempdir().unwrap();
    let token_file = token_file.to_str().unwrap();
    let _agent = AgentProcess::start_as(
        &rig.base_url(),
        "lab",
        "agent-lab",
        dir.path(),
        &["--token-file", token_file],
        None,
    );
    wait_driving(&rig, "agent-lab").await;
    let id = rig
        .submit(&playbook(
            "strategy:
  canary: 1
  concurrency: 3
",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    let said = messages(&rig, &id).await;
    for dev in rig.lab.devices() {
        assert!(
            said.iter()
                .any(|(d, m)| d.as_deref() == Some(dev.name.as_str())
                    && m.contains(
                        "claimed by agent agent-lab of site lab with token agent-lab-token"
                    )),
            "{}: {said:#?}",
            dev.name
        );
    }

    // Nothing but a site agent's calls: no read, no change, no token.
    let api = |path: &str| rig.url(&format!("/api/v1{path}"));
    use reqwest::Method;
    for (method, path, body) in [
        (Method::GET, "/devices", None),
        (Method::GET, "/agents", None),
        (Method::GET, &format!("/rollouts/{id}") as &str, None),
        (
            Method::POST,
            "/rollouts",
            Some(serde_json::json!({"name": "x"})),
        ),
        (Method::GET, "/tokens", None),
    ] {
        let (status, why) = call_as(&lab, method.clone(), api(path), body).await;
        assert_eq!(status, 403, "{method} {path}: {why}");
        assert!(
            why.starts_with("an agent token may only make a site agent's calls"),
            "{why}"
        );
    }
    // The image's bytes, by checksum, as the agent fetched them.
    let sha = hex::encode(sha2::Sha256::digest(image_bytes(&rig)));
    let blob = fleetup::http_client::client()
        .get(api(&format!("/blobs/sha256/{sha}")))
        .bearer_auth(&lab)
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(blob.bytes().await.unwrap().to_vec(), image_bytes(&rig));

    // Never for another site: not its heartbeat, not its claims, not its jobs.
    let beat = |name: &str, site: &str| {
        serde_json::json!({"name": name, "site": site, "instance": "i", "version": "0",
                           "started_at": "2026-12-08T00:00:00Z", "heartbeat_seconds": 1,
                           "images": [], "transfers": []})
    };
    let device = rig.lab.devices()[0].name.clone();
    let job = format!("/agents/jobs/{id}/{device}");
    let view = serde_json::json!({"epoch": 1, "op": {"op": "view"}});
    for (token, path, body, status, why) in [
        (
            &lab,
            "/agents/heartbeat",
            beat("agent-lab-2", "elsewhere"),
            403,
            "token agent-lab-token is an agent token of site lab: it may not act for site elsewhere"
                .to_string(),
        ),
        (
            &elsewhere,
            "/agents/heartbeat",
            beat("agent-lab", "elsewhere"),
            403,
            "agent agent-lab is recorded for site lab: an agent token of site elsewhere may not beat under its name"
                .to_string(),
        ),
        (
            &elsewhere,
            "/agents/heartbeat",
            beat("agent-elsewhere", "elsewhere"),
            200,
            String::new(),
        ),
        (
            &elsewhere,
            "/agents/jobs/claim",
            serde_json::json!({"name": "agent-elsewhere", "site": "lab", "max": 5, "heartbeat_seconds": 1}),
            403,
            "token agent-elsewhere-token is an agent token of site elsewhere: it may not act for site lab"
                .to_string(),
        ),
        (
            &elsewhere,
            &job,
            view.clone(),
            403,
            format!(
                "token agent-elsewhere-token is an agent token of site elsewhere: the job of \
                 {device} in rollout {id} is handed to site lab"
            ),
        ),
    ] {
        let got = call_as(token, Method::POST, api(path), Some(body)).await;
        assert_eq!(got, (status, why), "{path}");
    }
    let (status, _) = call_as(
        &elsewhere,
        Method::POST,
        api(&format!("/agents/jobs/{id}/no-such-device")),
        Some(view),
    )
    .await;
    assert_eq!(status, 404);
    // Refused calls are in the audit log, with the token that made them.
    let audit = rig
        .get_json("/api/v1/audit?by=agent-elsewhere-token&limit=100")
        .await;
    let refused: Vec<(String, i64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or_default().to_string(),
                e["status"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    for path in [
        "/api/v1/agents/heartbeat".to_string(),
        "/api/v1/agents/jobs/claim".to_string(),
        format!("/api/v1/agents/jobs/{id}/{device}"),
    ] {
        assert!(
            refused.contains(&(path.clone(), 403)),
            "{path}: {refused:?}"
        );
    }
    // Its one allowed heartbeat is not.
    assert_eq!(
        refused.iter().filter(|(_, s)| *s != 403).count(),
        0,
        "{refused:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_without_an_admin_token_only_serves_files_and_the_serve_node_drives() {
    let rig = Rig::options(1).start().await;
    let operator: Value = rig
        .post("/api/v1/tokens")
        .json(&serde_json::json!({"name": "site-agent", "role": "operator"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = operator["secret"]
        .as_str()
        .expect("the new token")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["agent", "--site", "lab", "--server", &rig.base_url()])
        .args([
            "--name",
            "agent-lab",
            "--tftp",
            "127.0.0.1:0",
            "--heartbeat",
            "1",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("FLEETUP_AGENT_TOKEN", &secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the agent to beat, not driving", || async {
        agent_view(&rig, "agent-lab")
            .await
            .filter(|a| a["live"] == true && a["drives"] == false)
    })
    .await;
    // Its claims are refused outright.
    let refused = fleetup::http_client::client()
        .post(rig.url("/api/v1/agents/jobs/claim"))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"name": "agent-lab", "site": "lab", "max": 5, "heartbeat_seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let said = messages(&rig, &id).await;
    assert!(
        !said.iter().any(|(_, m)| m.contains("handed to the agents")),
        "{said:#?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_driving_agent_after_a_reload_and_the_job_resumes_when_it_is_back_without_a_second_reload()
 {
    // Slow boots: the agent is killed while the devices come back.
    let rig = slow_boot_rig(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start_with(&rig.base_url(), "lab", dir.path(), &[]);
    wait_driving(&rig, "agent-lab").await;
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n  concurrency: 2\n"))
        .await;
    wait_all_reloading(&rig).await;
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    // Back, on the same cache; it claims the jobs again once their leases lapsed.
    agent = AgentProcess::start_with(&rig.base_url(), "lab", dir.path(), &[]);

    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    let said = messages(&rig, &id).await;
    let resumed = said
        .iter()
        .filter(|(_, m)| m.starts_with("the reload was already sent before the restart"))
        .count();
    assert_eq!(resumed, 2, "{said:#?}");
    agent.assert_logged("claimed a device job of the site");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_agent_cannot_record_a_step_for_a_job_another_agent_of_its_site_took_over() {
    // A slow boot: the first agent is stopped while the device comes back.
    let rig = slow_boot_rig(1).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = AgentProcess::start_named(&rig.base_url(), "lab", "lab-1", dir_a.path(), &[]);
    wait_driving(&rig, "lab-1").await;
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let device = rig.lab.devices()[0].name.clone();
    wait_all_reloading(&rig).await;
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &first.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    // Another agent of the site claims the job once the first one's lease lapsed, and
    // finishes it: the reload was recorded, so it only waits and checks.
    let second = AgentProcess::start_named(&rig.base_url(), "lab", "lab-2", dir_b.path(), &[]);
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    // Back: the first agent's job may no longer write, and its heartbeat stops it.
    signal("-CONT");
    eventually("the first agent to learn that it lost the job", || async {
        let log = first.log();
        (log.contains("the service took this job back")
            || log.contains("this agent no longer writes for it"))
        .then_some(())
    })
    .await;
    eventually("the first agent to hold no job", || async {
        agent_view(&rig, "lab-1")
            .await
            .filter(|a| a["jobs"].as_array().is_some_and(Vec::is_empty))
    })
    .await;
    let said = messages(&rig, &id).await;
    let of = |text: &str| said.iter().filter(|(_, m)| m.starts_with(text)).count();
    assert_eq!(of("claimed by agent lab-1 of site lab"), 1, "{said:#?}");
    assert_eq!(of("claimed by agent lab-2 of site lab"), 1, "{said:#?}");
    assert_eq!(
        of("the reload was already sent before the restart"),
        1,
        "{said:#?}"
    );
    // One end, written by the agent that held the job.
    let ends = said
        .iter()
        .filter(|(d, m)| d.as_deref() == Some(device.as_str()) && m.starts_with("upgraded"))
        .count();
    assert_eq!(ends, 1, "{said:#?}");
    let st = rig.lab.state(&device).unwrap();
    assert_eq!(st.reload_count, 1);
    assert_eq!(st.version, IMAGE_VERSION);
    second.assert_logged("claimed a device job");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_driving_agent_serves_its_sites_copies_over_http_from_its_own_image_server() {
    let rig = Rig::options(2).start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start_with(
        &rig.base_url(),
        "lab",
        dir.path(),
        &["--image-http", "127.0.0.1:0"],
    );
    let http = eventually("the agent to offer HTTP and drive", || async {
        let a = agent_view(&rig, "agent-lab").await?;
        (a["live"] == true && a["drives"] == true)
            .then(|| a["servers"]["http"].as_str().map(str::to_string))
            .flatten()
    })
    .await;
    assert!(http.starts_with("127.0.0.1:"), "{http}");
    let id = rig
        .submit(
            &playbook("strategy:\n  canary: 0\n  concurrency: 2\n")
                .replace("protocol: tftp", "protocol: http"),
        )
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_every_device_reloaded_once(&rig);
    let said = messages(&rig, &id).await;
    assert_eq!(
        said.iter()
            .filter(|(_, m)| m.starts_with("handed to the agents of site lab"))
            .count(),
        2,
        "{said:#?}"
    );
    // Both copies came from the agent's HTTP server, each with a path token of its own.
    wait_downloads(&rig, "agent-lab", "http", 2).await;
    // The serve node served none: its own transfers list no download.
    let serve_transfers: Value = rig
        .get("/api/v1/transfers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served = serve_transfers["transfers"]
        .as_array()
        .map_or(0, |t| t.len());
    assert_eq!(served, 0, "{serve_transfers:#}");
    drop(agent);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nexus_copies_its_kickstart_and_system_images_from_the_sites_agent() {
    const SYSTEM: &str = "n7000-s2-dk9.8.4.3.bin";
    const KICKSTART: &str = "n7000-s2-kickstart.8.4.3.bin";
    let rig = Rig::start(1, |c| c.personas = vec!["n7k".into()]).await;
    for (file, size, seed) in [(SYSTEM, 2 * 1024 * 1024 + 7, 81), (KICKSTART, 700_001, 82)] {
        let path = rig.dir.path().join(file);
        crate::support::write_random_file(&path, size, seed);
        let r = rig
            .post("/api/v1/images")
            .multipart(crate::support::multipart_file(&path, file))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // An agent that serves files only: the serve node drives the Nexus, which copies both
    // images from the agent once it holds both checked.
    let dir = tempfile::tempdir().unwrap();
    let agent = AgentProcess::start(&rig.base_url(), "lab", dir.path());
    eventually("the agent to show as live", || async {
        agent_view(&rig, "agent-lab")
            .await
            .filter(|a| a["live"] == true)
    })
    .await;
    let id = rig
        .submit(
            &playbook("strategy:\n  canary: 0\n")
                .replace(&format!("ios: {IMAGE}"), &format!("nxos: {SYSTEM}"))
                .replace(
                    "transfer:",
                    &format!("kickstart_image:\n  nxos: {KICKSTART}\ntransfer:"),
                ),
        )
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let name = rig.names()[0].clone();
    let st = rig.lab.state(&name).unwrap();
    assert_eq!(st.version, "8.4(3)");
    assert_eq!(
        st.running_kickstart.as_deref(),
        Some(format!("bootflash:/{KICKSTART}").as_str())
    );
    // Both came over TFTP from the agent, which fetched both by SHA-256; the service served
    // neither.
    eventually("the agent to report both downloads", || async {
        let a = agent_view(&rig, "agent-lab").await?;
        let done: Vec<&str> = a["transfers"]
            .as_array()?
            .iter()
            .filter(|t| t["state"] == "completed")
            .filter_map(|t| t["file"].as_str())
            .collect();
        (done.contains(&SYSTEM) && done.contains(&KICKSTART)).then_some(())
    })
    .await;
    for file in [SYSTEM, KICKSTART] {
        assert!(dir.path().join("images").join(file).exists(), "{file}");
    }
    let own: Value = rig
        .get("/api/v1/transfers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        own["transfers"].as_array().map_or(0, Vec::len),
        0,
        "{own:#}"
    );
    agent.assert_logged("image fetched by SHA-256 and checked");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abort_takes_back_a_job_whose_agent_died_and_ends_it_without_touching_the_device() {
    // A slow boot: the agent dies while the device comes back.
    let rig = slow_boot_rig(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = AgentProcess::start_with(&rig.base_url(), "lab", dir.path(), &[]);
    wait_driving(&rig, "agent-lab").await;
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let device = rig.lab.devices()[0].name.clone();
    wait_all_reloading(&rig).await;
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let r = rig
        .post(&format!("/api/v1/rollouts/{id}/abort"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // Once the dead agent's lease lapsed, the node takes the job back and ends it.
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "aborted", "{d:#}");
    let job = crate::support::job_of(&d, &device);
    assert_eq!(job["state"], "aborted", "{job:#}");
    let said = messages(&rig, &id).await;
    assert!(
        said.iter()
            .any(|(d, m)| d.as_deref() == Some(device.as_str())
                && m.starts_with("aborted while no agent of site lab held the job")),
        "{said:#?}"
    );
    // Nothing more was sent to the device: one reload, the one the agent sent.
    assert_eq!(rig.lab.state(&device).unwrap().reload_count, 1);
    rig.stop().await;
}
