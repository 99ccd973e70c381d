//! Configuration backups against the lab: a rollout keeps each device's running and startup
//! configuration before its first change and the running one once it is back; they are
//! served (with the diff) only by the configs endpoints and only with the token, and a
//! configuration's text is in no other response, event, transcript, database column or file.
//! `checks.pre.unsaved_config` in its three modes, proved by the lab's own state.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{Rig, TOKEN, job_of, playbook, stderr, stdout};

/// A line that only the lab device's configuration holds.
const COMMUNITY: &str = "S3CR3T-COMM-4471";

/// Type configuration lines on a lab device over its CLI (SSH), leaving them unsaved.
async fn configure(rig: &Rig, device: &str, lines: &[&str]) {
    let info = rig
        .lab
        .devices()
        .into_iter()
        .find(|d| d.name == device)
        .unwrap();
    let mut vty = crate::lab::enabled(info.ssh, device).await;
    let config = format!("{device}(config)#");
    vty.cmd("configure terminal", &config).await;
    for l in lines {
        vty.cmd(l, &config).await;
    }
    vty.cmd("end", &format!("{device}#")).await;
}

/// A playbook for one device of the lab.
fn playbook_for(device: &str, extra: &str) -> String {
    playbook(extra).replace("groups: [lab]", &format!("names: [{device}]"))
}

async fn get(rig: &Rig, path: &str) -> (StatusCode, String) {
    let r = rig.get(path).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn get_json(rig: &Rig, path: &str) -> Value {
    let (status, text) = get(rig, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_backups_are_served_only_by_the_configs_endpoints_with_the_token() {
    let rig = Rig::options(1).serve(|a| a.read_open = true).start().await;
    let name = rig.names()[0].clone();
    // A secret in the running configuration, saved, so that running and startup agree.
    configure(
        &rig,
        &name,
        &[&format!("snmp-server community {COMMUNITY} RO")],
    )
    .await;
    let mut vty = crate::lab::enabled(rig.lab.devices()[0].ssh, &name).await;
    vty.cmd("write memory", &format!("{name}#")).await;
    assert!(!rig.lab.state(&name).unwrap().unsaved_changes);

    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    // The listing: running and startup before, running after; no text in it.
    let base = format!("/api/v1/devices/{name}/configs");
    let (status, list_text) = get(&rig, &base).await;
    assert_eq!(status, StatusCode::OK, "{list_text}");
    assert!(!list_text.contains(COMMUNITY), "{list_text}");
    let list: Value = serde_json::from_str(&list_text).unwrap();
    let backups = list["backups"].as_array().unwrap();
    let kinds: Vec<(String, String)> = backups
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap().to_string(),
                b["moment"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("running".into(), "before".into()),
            ("startup".into(), "before".into()),
            ("running".into(), "after".into())
        ],
        "{list:#}"
    );
    for b in backups {
        assert_eq!(b["rollout_id"], id.as_str());
        assert_eq!(b["sha256"].as_str().unwrap().len(), 64);
    }
    // The text, with the token: the device's own configuration.
    let before = get_json(&rig, &format!("{base}/{}", backups[0]["id"])).await;
    let text = before["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("snmp-server community {COMMUNITY} RO")),
        "{text}"
    );
    assert_eq!(before["size"].as_u64().unwrap(), text.len() as u64);
    let after = get_json(&rig, &format!("{base}/{}", backups[2]["id"])).await;
    assert!(after["text"].as_str().unwrap().contains(COMMUNITY));

    // The diff: the boot variable changed with the upgrade, the community did not.
    let diff = get_json(&rig, &format!("{base}/diff/{id}")).await;
    let lines = diff["diff"].as_str().unwrap();
    assert!(diff["added"].as_u64().unwrap() >= 1, "{diff:#}");
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("+boot system") && l.contains(crate::support::IMAGE)),
        "{lines}"
    );
    assert!(
        !lines
            .lines()
            .any(|l| l.starts_with('+') && l.contains(COMMUNITY)),
        "{lines}"
    );
    assert!(
        !lines.contains("Current configuration"),
        "volatile lines are left out: {lines}"
    );

    // In the database, the text is in its backup's row and in no other column of any table:
    // not an event, a transcript line, the facts or the audit log.
    let data = rig.data_dir();
    let db = crate::support::open_db(&data).await;
    let mut holders = Vec::new();
    for table in db.schema().await.unwrap() {
        let rows = db.dump_table(&table.name).await.unwrap();
        for (i, column) in table.columns.iter().enumerate() {
            let holds = |row: &Vec<Option<String>>| {
                row.get(i)
                    .and_then(Option::as_deref)
                    .is_some_and(|v| v.contains(COMMUNITY))
            };
            if rows.iter().any(holds) {
                holders.push(format!("{}.{}", table.name, column.name));
            }
        }
    }
    assert_eq!(holders, ["config_backups.text"]);
    // No file of the data directory holds it but the database's own (SQLite's file and its
    // journal): not a log, not a report, not a file of its own.
    for f in files(&data) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if f.parent() == Some(data.as_path()) && name.starts_with("fleetup.db") {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes
                .windows(COMMUNITY.len())
                .any(|w| w == COMMUNITY.as_bytes()),
            "{} holds the configuration's secret",
            f.display()
        );
    }
    // The transcript says a configuration was kept, without it.
    let job = get_json(&rig, &format!("/api/v1/devices/{name}/rollouts/{id}")).await;
    let backup_step = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "config_backup")
        .unwrap_or_else(|| panic!("no config_backup step: {job:#}"));
    let outputs: Vec<&str> = backup_step["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["output"].as_str().unwrap())
        .collect();
    assert!(
        outputs
            .iter()
            .any(|o| o.starts_with("(configuration kept as a backup, ")),
        "{outputs:?}"
    );

    // Every other GET route of the OpenAPI document, with the token: never the secret.
    let spec: Value = fleetup::http_client::client()
        .get(rig.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut walked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if item.get("get").is_none() || path.ends_with("/events") {
            // The event stream never ends; `/activity` serves the same events.
            continue;
        }
        let concrete = path
            .replace(
                "{name}",
                if path.starts_with("/images") {
                    crate::support::IMAGE
                } else {
                    &name
                },
            )
            .replace("{id}", &id)
            .replace("{rollout}", &id);
        let query = if path == "/devices/{name}/configs" {
            format!("?rollout={id}")
        } else {
            String::new()
        };
        let (status, text) = get(&rig, &format!("/api/v1{concrete}{query}")).await;
        walked += 1;
        if path.starts_with("/devices/{name}/configs") {
            // Served, but only with the token, even with --read-open.
            let anon = fleetup::http_client::client()
                .get(rig.url(&format!("/api/v1{concrete}{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(anon.status(), StatusCode::UNAUTHORIZED, "{concrete}");
            continue;
        }
        assert!(
            !text.contains(COMMUNITY),
            "{concrete} ({status}) serves the configuration's secret"
        );
    }
    assert!(walked > 10, "{walked}");
    // --read-open still serves the other reads without the token.
    let anon = fleetup::http_client::client()
        .get(rig.url(&format!("/api/v1/devices/{name}/history")))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::OK);
    let (_, report) = get(&rig, &format!("/api/v1/rollouts/{id}/report?format=csv")).await;
    assert!(!report.contains(COMMUNITY));

    // The CLI: the listing, one text, the diff, and the report's configuration changes.
    let out = rig.fleetup(&["device", "configs", &name]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(listing.contains("3 backup(s)"), "{listing}");
    assert!(!listing.contains(COMMUNITY), "{listing}");
    let show_id = backups[1]["id"].to_string();
    let out = rig
        .fleetup(&["device", "configs", &name, "--show", &show_id])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(COMMUNITY), "{}", stdout(&out));
    let out = rig.fleetup(&["device", "configs", &name, "--diff"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("+boot system"), "{printed}");
    assert!(printed.contains(&format!("rollout {id}")), "{printed}");
    let out = rig.fleetup(&["rollout", "report", &id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("configuration changes"), "{printed}");
    assert!(printed.contains("+boot system"), "{printed}");
    // Without the token the configs are refused, and say why.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["device", "configs", &name])
        .env("FLEETUP_SERVER", rig.base_url())
        .env("FLEETUP_API_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token"), "{}", stderr(&out));
    let _ = TOKEN;
    rig.stop().await;
}

/// The lab's record of a device after a rollout: reloads, boot variable, unsaved changes.
fn lab_state(rig: &Rig, name: &str) -> fleetup::sim::DeviceState {
    rig.lab.state(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsaved_config_fail_warn_and_save() {
    let rig = Rig::start(3, |_| {}).await;
    let names = rig.names();
    for (i, name) in names.iter().enumerate() {
        configure(&rig, name, &[&format!("logging host 10.9.9.{}", i + 1)]).await;
        assert!(lab_state(&rig, name).unsaved_changes, "{name}");
    }

    // fail: the device fails before any change, untouched.
    let (failing, boot_before) = (&names[0], lab_state(&rig, &names[0]).boot_variable);
    let id = rig
        .submit(&playbook_for(
            failing,
            "checks:\n  pre:\n    unsaved_config: fail\nstrategy:\n  canary: 0\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, failing);
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("unsaved_config") && error.contains("unsaved changes"),
        "{error}"
    );
    let st = lab_state(&rig, failing);
    assert_eq!(st.reload_count, 0);
    assert!(st.unsaved_changes, "nothing was saved");
    assert_eq!(
        st.boot_variable, boot_before,
        "the boot variable is untouched"
    );
    assert!(
        !st.last_commands
            .iter()
            .any(|c| c.starts_with("boot system") || c.starts_with("write")),
        "{:#?}",
        st.last_commands
    );
    // Both configurations were kept before the check: the unsaved line is in running only.
    let list = get_json(
        &rig,
        &format!("/api/v1/devices/{failing}/configs?rollout={id}"),
    )
    .await;
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2, "{list:#}");
    let text_of = |kind: &str| {
        let b = backups.iter().find(|b| b["kind"] == kind).unwrap();
        format!("/api/v1/devices/{failing}/configs/{}", b["id"])
    };
    let running = get_json(&rig, &text_of("running")).await;
    let startup = get_json(&rig, &text_of("startup")).await;
    assert!(
        running["text"]
            .as_str()
            .unwrap()
            .contains("logging host 10.9.9.1")
    );
    assert!(
        !startup["text"]
            .as_str()
            .unwrap()
            .contains("logging host 10.9.9.1")
    );

    // warn: an event says so, and the upgrade goes on.
    let warned = &names[1];
    let id = rig
        .submit(&playbook_for(warned, "strategy:\n  canary: 0\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let events = rig.events(&id).await;
    assert!(
        events.iter().any(|e| e["step"] == "config_backup"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("WARNING") && m.contains("unsaved changes"))),
        "{events:#?}"
    );
    assert_eq!(lab_state(&rig, warned).reload_count, 1);

    // save: `write memory` before any change, and the event says so.
    let saved = &names[2];
    let id = rig
        .submit(&playbook_for(
            saved,
            "checks:\n  pre:\n    unsaved_config: save\nstrategy:\n  canary: 0\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let events = rig.events(&id).await;
    assert!(
        events.iter().any(|e| e["step"] == "config_backup"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("saved with `write memory` before any change"))),
        "{events:#?}"
    );
    let st = lab_state(&rig, saved);
    assert_eq!(st.reload_count, 1);
    let first = |prefix: &str| st.last_commands.iter().position(|c| c.starts_with(prefix));
    let (write, boot) = (first("write memory"), first("boot system"));
    assert!(
        write.is_some() && boot.is_some() && write < boot,
        "{:#?}",
        st.last_commands
    );
    // No configuration text in any event of these rollouts.
    for e in &events {
        let m = e["message"].as_str().unwrap_or_default();
        assert!(!m.contains("logging host"), "{m}");
    }
    rig.stop().await;
}
