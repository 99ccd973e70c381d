//! The device view's API against the lab: a device's facts history, its rollouts, and per
//! rollout its steps with the commands fleetup sent and what the device printed, never a
//! secret.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{IMAGE, IMAGE_VERSION, Rig, playbook};

const PASSWORD: &str = "Lab-Pass-7731x";
const ENABLE: &str = "Lab-Enable-4409q";

async fn get(rig: &Rig, path: &str) -> (StatusCode, String) {
    let r = rig.app().get(path).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Every transcript line of a job detail, as (step, kind, command, output).
fn lines(job: &Value) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|step| {
            step["transcript"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        s(&step["step"]),
                        s(&l["kind"]),
                        s(&l["command"]),
                        s(&l["output"]),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_devices_history_shows_its_steps_commands_and_outputs_without_secrets() {
    let rig = Rig::start(1, |c| {
        c.password = PASSWORD.into();
        c.enable_secret = ENABLE.into();
    })
    .await;
    let name = rig.names()[0].clone();
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n").replace("protocol: tftp", "protocol: ftp"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    // The one-time FTP password, as the device received it in the copy URL.
    let st = rig.lab.state(&name).unwrap();
    let copy = st
        .last_commands
        .iter()
        .find(|c| c.starts_with("copy ftp://"))
        .unwrap_or_else(|| panic!("no copy in {:#?}", st.last_commands));
    let userinfo = copy["copy ftp://".len()..].split('@').next().unwrap();
    let ftp_password = userinfo.split(':').nth(1).unwrap().to_string();
    assert!(ftp_password.len() >= 8, "{copy}");

    // History: the facts over time and the rollout with the job's versions.
    let (status, text) = get(&rig, &format!("/api/v1/devices/{name}/history")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let history: Value = serde_json::from_str(&text).unwrap();
    let facts = history["facts"].as_array().unwrap();
    assert!(!facts.is_empty(), "{history:#}");
    assert_eq!(
        facts[0]["version"], IMAGE_VERSION,
        "newest first: {history:#}"
    );
    let rollouts = history["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 1, "{history:#}");
    let r = &rollouts[0];
    assert_eq!(r["rollout_id"], id.as_str());
    assert_eq!(r["rollout_state"], "completed");
    assert_eq!(r["state"], "succeeded");
    assert_eq!(r["new_version"], IMAGE_VERSION);
    assert!(r["old_version"].is_string(), "{r:#}");
    let steps: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for want in [
        "connect",
        "facts",
        "copy",
        "verify_md5",
        "set_boot",
        "save",
        "reload",
    ] {
        assert!(steps.contains(&want), "{want} missing from {steps:?}");
    }

    // The job: each step with the commands sent and the device's output.
    let (status, job_text) = get(&rig, &format!("/api/v1/devices/{name}/rollouts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{job_text}");
    let job: Value = serde_json::from_str(&job_text).unwrap();
    assert_eq!(job["state"], "succeeded");
    let all = lines(&job);
    let find = |step: &str, prefix: &str| {
        all.iter()
            .find(|(s, k, c, _)| s == step && k == "command" && c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}…` in step {step}: {all:#?}"))
    };
    let (_, _, command, output) = find("copy", "copy ftp://");
    assert!(
        command.contains(":***@") && command.ends_with(&format!("flash:{IMAGE}")),
        "{command}"
    );
    assert!(output.contains("bytes copied"), "{output}");
    let (_, _, _, output) = find("verify_md5", "verify /md5 flash:");
    assert!(
        output.contains("verify /md5") || output.contains('='),
        "{output}"
    );
    find("set_boot", "configure terminal");
    find("set_boot", &format!("boot system flash:{IMAGE}"));
    let (_, _, _, output) = find("save", "write memory");
    assert!(output.contains("[OK]"), "{output}");
    find("reload", "reload");
    let (_, _, _, output) = find("facts", "show version");
    assert!(output.contains("Version"), "{output}");
    // Answers typed to the device's questions are there too: the enable password (masked),
    // the copy's destination and the reload confirmation.
    let answered = |q: &str| {
        all.iter()
            .any(|(_, k, _, question)| k == "answer" && question.contains(q))
    };
    assert!(answered("Destination filename"), "{all:#?}");
    assert!(answered("[confirm]"), "{all:#?}");
    assert!(
        all.iter()
            .any(|(s, k, c, _)| s == "connect" && k == "answer" && c == "***"),
        "the enable secret is typed masked: {all:#?}"
    );
    // The transfer is the job's own.
    assert_eq!(job["transfer"]["job"]["device"], name.as_str(), "{job:#}");

    // No secret anywhere: not the device's password, not its enable secret, not the one-time
    // FTP password.
    let (_, events) = get(&rig, &format!("/api/v1/rollouts/{id}")).await;
    for (what, body) in [("history", &text), ("job", &job_text), ("rollout", &events)] {
        for secret in [PASSWORD, ENABLE, ftp_password.as_str()] {
            assert!(!body.contains(secret), "{what} leaks {secret:?}");
        }
    }
    // The event stream for this device only: its steps, none of the rollout-level events.
    let resp = rig
        .app()
        .get(&format!("/api/v1/rollouts/{id}/events?device={name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let mut sse = String::new();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        use futures_util::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            sse.push_str(&String::from_utf8_lossy(&chunk));
            if sse.contains("event: device_succeeded") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "{sse}");
    assert!(sse.contains("event: step_done"), "{sse}");
    for kind in ["created", "started", "wave_started"] {
        assert!(
            !sse.contains(&format!("event: {kind}\n")),
            "{kind} in {sse}"
        );
    }
    let device_field = format!("\"device\":\"{name}\"");
    for data in sse.lines().filter(|l| l.starts_with("data:")) {
        assert!(data.contains(&device_field), "{data}");
    }

    // Unknown device or rollout: the usual error shape.
    let (status, text) = get(&rig, "/api/v1/devices/nope/history").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text.contains("\"not_found\""), "{text}");
    let (status, _) = get(&rig, &format!("/api/v1/devices/{name}/rollouts/r-nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    rig.stop().await;
}
