//! The paths a copy takes in real networks: a management VRF, source interfaces, and the
//! length of the copy line, with lab devices that behave like real ones.

use serde_json::Value;

use crate::support::*;

/// The built-in c2960x persona with its management port (`Vlan1`) in `Mgmt-vrf`, as a
/// persona file.
fn vrf_persona(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas/c2960x.yaml"),
    )
    .unwrap();
    let text = text.replace("name: c2960x\n", "name: c2960x-vrf\nmgmt_vrf: Mgmt-vrf\n");
    assert!(text.contains("mgmt_vrf"), "the persona's name line moved");
    let path = dir.join("c2960x-vrf.yaml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn copy_events(events: &[Value], device: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["device"] == device && e["step"] == "copy")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A device whose management port is in a VRF: a copy that names neither the VRF nor a source
/// interface in it times out, and the job says which playbook setting is missing; classic IOS
/// refuses `vrf` in a copy before anything is sent; with `source_interface` the copy goes
/// through, and the device's own setting is back before the configuration is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_in_a_management_vrf_copies_only_through_it() {
    let persona_dir = tempfile::tempdir().unwrap();
    let persona = vrf_persona(persona_dir.path());
    let rig = Rig::start(1, |c| c.personas = vec![persona]).await;
    let name = rig.names()[0].clone();
    let strategy = "strategy:\n  canary: 0\n";

    // No VRF, no source interface: the copy cannot reach fleetup.
    let id = rig.submit(&playbook(strategy)).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &name);
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("timeout"), "{error}");
    assert!(
        error.contains("transfer.vrf or transfer.source_interface"),
        "{error}"
    );
    let st = rig.lab.state(&name).unwrap();
    assert_eq!(st.reload_count, 0);
    assert!(
        st.last_commands.iter().any(|c| c.starts_with("copy tftp:")),
        "{:#?}",
        st.last_commands
    );

    // `vrf` alone on classic IOS: refused before the device is even logged in to.
    let commands_before = rig.lab.state(&name).unwrap().last_commands.len();
    let id = rig
        .submit(&playbook(strategy).replace(
            "  server: 127.0.0.1\n",
            "  server: 127.0.0.1\n  vrf: Mgmt-vrf\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &name);
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("classic IOS") && error.contains("transfer.source_interface"),
        "{error}"
    );
    assert_eq!(
        rig.lab.state(&name).unwrap().last_commands.len(),
        commands_before,
        "a command was sent"
    );

    // Through the management interface: copied, and the setting put back before the save.
    let id = rig
        .submit(&playbook(strategy).replace(
            "  server: 127.0.0.1\n",
            "  server: 127.0.0.1\n  vrf: Mgmt-vrf\n  source_interface: Vlan1\n",
        ))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let st = rig.lab.state(&name).unwrap();
    assert_eq!(st.version, IMAGE_VERSION);
    assert_eq!(st.reload_count, 1);
    assert!(!st.unsaved_changes);
    let cmds = &st.last_commands;
    let at = |want: &dyn Fn(&str) -> bool, what: &str| {
        cmds.iter()
            .rposition(|c| want(c.trim()))
            .unwrap_or_else(|| panic!("{name} never got {what}: {cmds:#?}"))
    };
    let set = at(
        &|c| c == "ip tftp source-interface Vlan1",
        "the source interface",
    );
    let copy = at(&|c| c.starts_with("copy tftp:"), "the copy");
    let restore = at(&|c| c == "no ip tftp source-interface", "the restore");
    let save = at(&|c| c == "write memory", "the save");
    assert!(set < copy && copy < restore && restore < save, "{cmds:#?}");
    let events = rig.events(&id).await;
    let copies = copy_events(&events, &name);
    assert!(
        copies
            .iter()
            .any(|m| m.contains("over tftp from Vlan1 (vrf Mgmt-vrf)")
                && m.contains("`no ip tftp source-interface` restored the source interface")),
        "{copies:#?}"
    );
    rig.stop().await;
}

/// A copy line longer than IOS-XE takes (253 characters) is refused before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_over_long_copy_line_is_refused_before_it_is_sent() {
    let rig = Rig::start(1, |_| {}).await;
    let name = rig.names()[0].clone();
    let long_server = format!("{}.example.net", "image-server-of-the-campus".repeat(9));
    let id = rig
        .submit(&playbook("strategy:\n  canary: 0\n").replace(
            "  server: 127.0.0.1\n",
            &format!("  server: {long_server}\n"),
        ))
        .await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &name);
    assert_eq!(job["state"], "failed", "{d:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("253") && error.contains("characters long"),
        "{error}"
    );
    let st = rig.lab.state(&name).unwrap();
    assert!(
        !st.last_commands.iter().any(|c| c.starts_with("copy")),
        "{:#?}",
        st.last_commands
    );
    rig.stop().await;
}

/// The playbook for one named device over `protocol` (a word or a YAML list).
fn book_for(device: &str, protocol: &str) -> String {
    playbook("strategy:\n  canary: 0\n")
        .replace("  groups: [lab]\n", &format!("  names: [{device}]\n"))
        .replace("protocol: tftp", &format!("protocol: {protocol}"))
}

/// The image's MD5, as `verify /md5` must print it.
fn image_md5(rig: &Rig) -> String {
    md5sum(&rig.dir.path().join(IMAGE))
}

/// A device's completed download of the image over `protocol`, claimed by its job.
fn claimed_download(transfers: &[Value], protocol: &str, id: &str, device: &str) -> Value {
    transfers
        .iter()
        .find(|t| t["protocol"] == protocol && t["file"] == IMAGE && t["state"] == "completed")
        .cloned()
        .map(|t| {
            assert_eq!(t["job"]["rollout"], id, "{t:#}");
            assert_eq!(t["job"]["device"], device, "{t:#}");
            t
        })
        .unwrap_or_else(|| panic!("no completed {protocol} download: {transfers:#?}"))
}

/// Lab rollouts over HTTP and over HTTPS: each device pulls the image through its job's
/// one-time path token, the whole file (the transfer's bytes are the image's size), and
/// `verify /md5` on the device finds the image's MD5 before anything else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lab_rollouts_over_http_and_https_are_byte_exact_and_verified() {
    let rig = Rig::options(2)
        .image_http(true)
        .image_https(true)
        .start()
        .await;
    let names = rig.names();
    let md5 = image_md5(&rig);
    let size = std::fs::metadata(rig.dir.path().join(IMAGE)).unwrap().len();
    for (device, protocol) in [(&names[0], "http"), (&names[1], "https")] {
        let id = rig.submit(&book_for(device, protocol)).await;
        let d = rig.wait_end(&id).await;
        assert_eq!(d["state"], "completed", "{protocol}: {d:#}");
        let st = rig.lab.state(device).unwrap();
        assert_eq!(st.version, IMAGE_VERSION);
        assert_eq!(st.reload_count, 1);
        let t = claimed_download(&rig.transfers().await, protocol, &id, device);
        assert_eq!(t["bytes"], size, "{t:#}");
        let cmds = &st.last_commands;
        let copy = cmds
            .iter()
            .find(|c| c.starts_with(&format!("copy {protocol}://127.0.0.1:")))
            .unwrap_or_else(|| panic!("no {protocol} copy: {cmds:#?}"));
        assert!(
            copy.contains("/j/") && copy.ends_with(&format!("/{IMAGE} flash:{IMAGE}")),
            "{copy}"
        );
        assert!(
            cmds.iter()
                .any(|c| c == &format!("verify /md5 flash:{IMAGE}")),
            "{cmds:#?}"
        );
        let events = rig.events(&id).await;
        let verified = events.iter().any(|e| {
            e["step"] == "verify_md5"
                && e["kind"] == "step_done"
                && e["message"].as_str().unwrap_or_default().contains(&md5)
        });
        assert!(verified, "{events:#?}");
        assert!(
            copy_events(&events, device)
                .iter()
                .any(|m| m.ends_with(&format!("bytes copied over {protocol}"))),
            "{events:#?}"
        );
        // The token died with the job: the same URL now gets 404.
        let path = copy
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let out = std::process::Command::new("curl")
            .args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", &path])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "404", "{path}");
    }
    rig.stop().await;
}

/// `protocol: [https, ftp]` where the device's HTTPS copy is refused (nothing listens where it
/// connects): the copy falls back to FTP, and the events say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_protocol_list_falls_back_from_a_refused_https_to_ftp() {
    let rig = Rig::options(1)
        .image_https(true)
        // The HTTPS server listens on another address than the one devices are told.
        .serve(|a| a.image_https = "127.0.0.2:0".parse().unwrap())
        .start()
        .await;
    let name = rig.names()[0].clone();
    let id = rig.submit(&book_for(&name, "[https, ftp]")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(rig.lab.state(&name).unwrap().version, IMAGE_VERSION);
    let events = rig.events(&id).await;
    let started: Vec<String> = events
        .iter()
        .filter(|e| e["device"] == name && e["step"] == "copy" && e["kind"] == "step_started")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(started.len(), 2, "{started:#?}");
    assert!(
        started[0].starts_with("copy https://127.0.0.1:"),
        "{started:#?}"
    );
    assert!(
        started[1].starts_with("https failed (")
            && started[1].contains("falling back to ftp: copy ftp://"),
        "{started:#?}"
    );
    assert!(
        copy_events(&events, &name)
            .iter()
            .any(|m| m.ends_with("bytes copied over ftp")),
        "{events:#?}"
    );
    let transfers = rig.transfers().await;
    claimed_download(&transfers, "ftp", &id, &name);
    assert!(
        !transfers.iter().any(|t| t["protocol"] == "https"),
        "{transfers:#?}"
    );
    rig.stop().await;
}

/// The dry run says how devices will get the image, per site, and which protocols of a list
/// this service cannot offer (their server is off), in the API and in `fleetup run --dry-run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dry_run_shows_each_sites_transfer_path() {
    let rig = Rig::start(1, |_| {}).await;
    let text = playbook("strategy:\n  canary: 0\n").replace(
        "  protocol: tftp\n  server: 127.0.0.1\n",
        "  protocol: [https, ftp, tftp]\n  server: 127.0.0.1\n  vrf: Mgmt-vrf\n  sites:\n    branch-7:\n      server: 192.0.2.9\n      protocol: scp-push\n      source_interface: Vlan100\n",
    );
    let dry: Value = rig
        .post("/api/v1/rollouts?dry_run=true")
        .body(text.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = dry["transfer"].as_array().cloned().unwrap_or_default();
    assert_eq!(paths.len(), 2, "{dry:#}");
    assert_eq!(paths[0]["site"], Value::Null);
    assert_eq!(
        paths[0]["protocols"],
        serde_json::json!(["https", "ftp", "tftp"])
    );
    assert_eq!(paths[0]["vrf"], "Mgmt-vrf");
    // This service runs TFTP and FTP only.
    assert_eq!(paths[0]["unavailable"], serde_json::json!(["https"]));
    assert_eq!(paths[1]["site"], "branch-7");
    assert_eq!(paths[1]["protocols"], serde_json::json!(["scp-push"]));
    assert_eq!(paths[1]["server"], "192.0.2.9");
    assert_eq!(paths[1]["vrf"], "Mgmt-vrf");
    assert_eq!(paths[1]["source_interface"], "Vlan100");
    assert_eq!(paths[1]["unavailable"], serde_json::json!([]));

    let file = rig.write_playbook("paths.yml", &text);
    let out = rig
        .fleetup(&["run", "--dry-run", file.to_str().unwrap()])
        .await;
    assert_success(&out);
    let printed = stdout(&out);
    assert!(
        printed.contains(
            "  transfer: https, then ftp, then tftp from 127.0.0.1, vrf Mgmt-vrf; https off in this service: left out"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("  transfer (site branch-7): scp-push from 192.0.2.9, vrf Mgmt-vrf, source interface Vlan100"),
        "{printed}"
    );
    rig.stop().await;
}

/// Lab rollouts over SCP and SFTP (a one-time account per job, the password in the URL) and by
/// SCP push (fleetup turns the device's `ip scp server enable` on for the copy and off again
/// before the save): the whole image arrives and `verify /md5` on the device finds its MD5.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lab_rollouts_over_scp_sftp_and_scp_push_are_byte_exact_and_verified() {
    let rig = Rig::options(3).image_scp(true).start().await;
    let names = rig.names();
    let md5 = image_md5(&rig);
    let size = std::fs::metadata(rig.dir.path().join(IMAGE)).unwrap().len();
    for (device, protocol) in [
        (&names[0], "scp"),
        (&names[1], "sftp"),
        (&names[2], "scp-push"),
    ] {
        let id = rig.submit(&book_for(device, protocol)).await;
        let d = rig.wait_end(&id).await;
        assert_eq!(d["state"], "completed", "{protocol}: {d:#}");
        let st = rig.lab.state(device).unwrap();
        assert_eq!(st.version, IMAGE_VERSION);
        assert_eq!(st.reload_count, 1);
        assert!(!st.unsaved_changes);
        let wire = if protocol == "scp-push" {
            "scp"
        } else {
            protocol
        };
        let t = claimed_download(&rig.transfers().await, wire, &id, device);
        assert_eq!(t["bytes"], size, "{t:#}");
        let events = rig.events(&id).await;
        let verified = events.iter().any(|e| {
            e["device"] == device.as_str()
                && e["step"] == "verify_md5"
                && e["kind"] == "step_done"
                && e["message"].as_str().unwrap_or_default().contains(&md5)
        });
        assert!(verified, "{events:#?}");
        assert!(
            copy_events(&events, device)
                .iter()
                .any(|m| m.contains(&format!("bytes copied over {protocol}"))),
            "{events:#?}"
        );
        let cmds = &st.last_commands;
        if protocol == "scp-push" {
            assert_eq!(t["direction"], "push", "{t:#}");
            let at = |want: &str| {
                cmds.iter()
                    .position(|c| c.trim() == want)
                    .unwrap_or_else(|| panic!("{device} never got `{want}`: {cmds:#?}"))
            };
            let on = at("ip scp server enable");
            let off = at("no ip scp server enable");
            let verify = at(&format!("verify /md5 flash:{IMAGE}"));
            let save = at("write memory");
            assert!(on < off && off < save && on < verify, "{cmds:#?}");
            assert!(!cmds.iter().any(|c| c.starts_with("copy scp")), "{cmds:#?}");
        } else {
            let copy = cmds
                .iter()
                .find(|c| c.starts_with(&format!("copy {protocol}://")))
                .unwrap_or_else(|| panic!("no {protocol} copy: {cmds:#?}"));
            // The account's password is in the command the device got, never in an event.
            let password = copy
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .and_then(|(creds, _)| creds.split_once(':'))
                .map(|(_, p)| p.to_string())
                .unwrap_or_else(|| panic!("no password in {copy}"));
            assert!(
                !serde_json::to_string(&events).unwrap().contains(&password),
                "the password leaked into the events"
            );
        }
    }
    rig.stop().await;
}
