//! `fleetup demo` as a newcomer runs it: starts, the dashboard answers, the demo rollout ends
//! with the faulty device failed for its reason and every other device upgraded, and Ctrl-C
//! stops everything.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::eventually;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_its_rollout_and_stops_on_ctrl_c() {
    run_demo(Command::new(env!("CARGO_BIN_EXE_fleetup"))).await;
}

/// As a normal user the demo cannot bind 22 and 69: it must pick free ports and still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_works_as_an_unprivileged_user() {
    let cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_fleetup"),
        ])
        .env("HOME", std::env::temp_dir());
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_fleetup"))
    };
    run_demo(cmd).await;
}

async fn run_demo(mut cmd: Command) {
    let base = crate::support::random_base().to_string();
    let mut child = cmd
        .args([
            "demo",
            "--fast",
            "--http",
            "127.0.0.1:0",
            "--base-ip",
            &base,
        ])
        .env("FLEETUP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut token, mut faulty) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let t = line.trim();
        if let Some(u) = t.strip_prefix("dashboard:") {
            url = Some(u.trim().trim_end_matches('/').to_string());
        } else if let Some(k) = t.strip_prefix("API token:") {
            token = Some(k.trim().to_string());
        } else if t.contains("has an injected fault") {
            faulty = t.split_whitespace().next().map(str::to_string);
        } else if t.contains("started from playbooks/demo.yml") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let (url, token, faulty) = (url.unwrap(), token.unwrap(), faulty.unwrap());
    let http = fleetup::http_client::client();
    // The dashboard answers.
    let page = http.get(format!("{url}/")).send().await.unwrap();
    assert!(page.status().is_success());
    assert!(page.text().await.unwrap().contains("fleetup"));
    let get = |path: String| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let v: Value = http
                .get(format!("{url}/api/v1{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(v)
        }
    };
    let detail = eventually("the demo rollout to end", || {
        let get = &get;
        async move {
            let list = get("/rollouts".into()).await?;
            let id = list["rollouts"][0]["id"].as_str()?.to_string();
            let d = get(format!("/rollouts/{id}")).await?;
            ["completed", "completed_with_failures", "halted", "aborted"]
                .contains(&d["state"].as_str()?)
                .then_some(d)
        }
    })
    .await;
    assert_eq!(detail["state"], "completed_with_failures", "{detail:#}");
    let jobs = crate::support::jobs(&detail);
    assert_eq!(jobs.len(), 12);
    for j in jobs {
        if j["device"] == faulty.as_str() {
            assert_eq!(j["state"], "failed");
            assert!(
                j["error"].as_str().unwrap().contains("corrupt_image"),
                "{j:#}"
            );
        } else {
            assert_eq!(j["state"], "succeeded", "{j:#}");
        }
    }
    // Ctrl-C: the process exits cleanly and its listeners are gone.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        http.get(format!("{url}/api/v1/health"))
            .send()
            .await
            .is_err(),
        "the service still answers"
    );
    let lab_ssh = std::net::TcpStream::connect((base.as_str(), 22));
    assert!(lab_ssh.is_err(), "a lab device still listens");
}
