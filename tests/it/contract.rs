//! The API contract: schemathesis (a third-party OpenAPI tester) runs every one of its checks
//! against a real `fleetup serve` process, with a lab inventory, an image and two rollouts (one
//! ended, one scheduled) so that device and rollout routes have something real to talk to. It
//! must find no failure, and no 5xx other than the documented `device_error` (502) of
//! `POST /devices/{name}/facts`. The settings it runs with are in `tests/contract/`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{IMAGE, Rig, TOKEN};

/// The shared venv of third-party test tools: `FLEETUP_VENV`, else `target/venv`.
fn venv() -> PathBuf {
    let dir = std::env::var_os("FLEETUP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv"));
    let tool = dir.join("bin/schemathesis");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/test once (it creates the venv from \
         tests/python/requirements.txt), or set FLEETUP_VENV",
        tool.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_contract_violation() {
    let venv = venv();
    let rig = Rig::options(3).serve_process().start().await;
    let names = rig.names();
    let on = |device: &str, extra: &str| {
        format!(
            "name: contract-{device}\ntargets:\n  names: [{device}]\nimage:\n  ios: {IMAGE}\n\
             transfer:\n  protocol: tftp\n  server: 127.0.0.1\n{extra}"
        )
    };
    let ended = rig
        .submit(&on(&names[0], "strategy:\n  timeouts: {poll: 1}\n"))
        .await;
    rig.wait_end(&ended).await;
    let scheduled = rig
        .submit(&on(
            &names[1],
            "schedule:\n  start_at: 2099-01-01T00:00:00Z\n",
        ))
        .await;
    rig.wait_state(&scheduled, &["scheduled"]).await;

    let spec: Value = fleetup::http_client::client()
        .get(rig.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host_pattern =
        spec["components"]["schemas"]["DeviceInput"]["properties"]["host"]["pattern"]
            .as_str()
            .expect("the host pattern in the OpenAPI document")
            .to_string();

    let contract = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/contract");
    let reports = rig.dir.path().join("schemathesis");
    let url = rig.url("/api/v1/openapi.json");
    let work = rig.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(venv.join("bin/schemathesis"))
            .arg("--config-file")
            .arg(contract.join("schemathesis.toml"))
            .args(["run", &url, "--checks", "all"])
            // A device's name is its key and `PUT /devices/{name}` may rename it: after
            // POST /devices → PUT (rename) → POST /devices/{old name}/facts the old name is
            // rightly gone (404). The stateful check that a created resource stays reachable at
            // the URL it was created under (ST302) cannot know that; every other check runs, and
            // tests/it/api.rs checks what a rename does to the old and the new name.
            .args(["--exclude-checks", "ensure_resource_availability"])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            // Bounded and reproducible: a fixed number of cases per operation, a fixed seed,
            // one worker (the stateful phase changes devices the other phases read).
            .args([
                "--max-examples",
                "20",
                "--seed",
                "20261204",
                "--workers",
                "1",
            ])
            .args(["--generation-database", "none", "--no-color"])
            .args(["--report", "har", "--report-dir"])
            .arg(&reports)
            .env("SCHEMATHESIS_HOOKS", contract.join("hooks.py"))
            .env("FLEETUP_HOST_PATTERN", &host_pattern)
            .current_dir(&work)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Its closing line counts failures and errors when there are any (warnings alone, such as
    // an operation that answers 404 to most generated names, do not fail the contract).
    let last = report
        .lines()
        .rfind(|l| l.starts_with("====="))
        .unwrap_or_default();
    let clean = !["failure", "error", "nterrupted", "Empty", "No checks"]
        .iter()
        .any(|w| last.contains(w));
    assert!(
        out.status.success() && clean && !report.contains(" FAILURES "),
        "schemathesis found contract violations (exit {:?}):\n{report}",
        out.status.code()
    );

    // Every answer schemathesis got, from its HAR report: no 5xx but `device_error`.
    let har = std::fs::read_dir(rig.dir.path().join("schemathesis"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("har"))
        .expect("a HAR report");
    let har: Value = serde_json::from_slice(&std::fs::read(har.path()).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    assert!(entries.len() > 500, "too few requests: {}", entries.len());
    let mut device_errors = 0;
    for e in entries {
        let status = e["response"]["status"].as_u64().unwrap_or(0);
        if status < 500 {
            continue;
        }
        let url = e["request"]["url"].as_str().unwrap_or("");
        let body = e["response"]["content"]["text"].as_str().unwrap_or("");
        let code = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|b| b["error"]["code"].as_str().map(str::to_string));
        assert!(
            status == 502 && code.as_deref() == Some("device_error") && url.ends_with("/facts"),
            "an undocumented server error: {status} {url}\n{body}\n\nschemathesis:\n{report}"
        );
        device_errors += 1;
    }
    println!(
        "schemathesis: {} requests, {device_errors} device_error answers",
        entries.len()
    );
    rig.stop().await;
}
