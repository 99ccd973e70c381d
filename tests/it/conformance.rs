//! The lab as real clients see it: `fleetup lab` runs for real, and tests/python/conformance.py
//! drives every built-in persona with Netmiko, scrapli and pyATS/unicon (default connection
//! settings, so unicon's setup commands run), reads each output with TextFSM (ntc-templates)
//! and Genie, and compares what they read with the lab's admin API. A client that disagrees
//! fails this test, and so does a built-in persona missing from `PERSONAS`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::support::random_base;

/// A persona as the conformance run drives it.
struct Conformance {
    persona: &'static str,
    /// The port whose description each client sets (the one `link-down-after-reload` takes).
    uplink: &'static str,
    /// Three boots (one per client), each into an image newer than the last.
    images: [&'static str; 3],
    /// On a Nexus with separate images, the kickstart booted with each image.
    kickstarts: Option<[&'static str; 3]>,
}

/// Every built-in persona (`every_built_in_persona_is_driven` holds the list to the lab's).
const PERSONAS: &[Conformance] = &[
    Conformance {
        persona: "c2960x",
        uplink: "GigabitEthernet1/0/1",
        images: [
            "c2960x-universalk9-mz.152-7.E8.bin",
            "c2960x-universalk9-mz.152-7.E9.bin",
            "c2960x-universalk9-mz.152-7.E10.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "c9300",
        uplink: "TenGigabitEthernet1/1/1",
        images: [
            "cat9k_iosxe.17.09.04a.SPA.bin",
            "cat9k_iosxe.17.09.05.SPA.bin",
            "cat9k_iosxe.17.12.03.SPA.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "n9k",
        uplink: "Ethernet1/49",
        images: ["nxos.9.3.9.bin", "nxos.9.3.10.bin", "nxos.10.2.5.M.bin"],
        kickstarts: None,
    },
    Conformance {
        persona: "n7k",
        uplink: "Ethernet4/1",
        images: [
            "n7000-s2-dk9.8.2.8.bin",
            "n7000-s2-dk9.8.4.4.bin",
            "n7000-s2-dk9.8.4.7.bin",
        ],
        kickstarts: Some([
            "n7000-s2-kickstart.8.2.8.bin",
            "n7000-s2-kickstart.8.4.4.bin",
            "n7000-s2-kickstart.8.4.7.bin",
        ]),
    },
    Conformance {
        persona: "c9300-stack",
        uplink: "TenGigabitEthernet1/1/1",
        images: [
            "cat9k_iosxe.17.09.04a.SPA.bin",
            "cat9k_iosxe.17.09.05.SPA.bin",
            "cat9k_iosxe.17.12.03.SPA.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "c2960x-stack",
        uplink: "GigabitEthernet1/0/1",
        images: [
            "c2960x-universalk9-mz.152-7.E8.bin",
            "c2960x-universalk9-mz.152-7.E9.bin",
            "c2960x-universalk9-mz.152-7.E10.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "c9400-dual-sup",
        uplink: "TenGigabitEthernet3/0/1",
        images: [
            "cat9k_iosxe.17.09.04a.SPA.bin",
            "cat9k_iosxe.17.09.05.SPA.bin",
            "cat9k_iosxe.17.12.03.SPA.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "c9400-dual-sup-bundle",
        uplink: "TenGigabitEthernet3/0/1",
        images: [
            "cat9k_iosxe.17.09.04a.SPA.bin",
            "cat9k_iosxe.17.09.05.SPA.bin",
            "cat9k_iosxe.17.12.03.SPA.bin",
        ],
        kickstarts: None,
    },
    Conformance {
        persona: "n9k-dual-sup",
        uplink: "Ethernet1/49",
        images: ["nxos.9.3.9.bin", "nxos.9.3.10.bin", "nxos.10.2.5.M.bin"],
        kickstarts: None,
    },
];

/// The built-in personas that `PERSONAS` leaves out.
fn personas_not_driven() -> Vec<&'static str> {
    fleetup::sim::built_in_personas()
        .into_iter()
        .filter(|name| !PERSONAS.iter().any(|p| p.persona == *name))
        .collect()
}

/// The shared venv of third-party test tools (scripts/test creates it).
fn venv_python() -> PathBuf {
    let venv = std::env::var_os("FLEETUP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Python venv with the test clients at {}: run scripts/test (it creates target/venv \
         from tests/python/requirements.txt), or point FLEETUP_VENV at one",
        venv.display()
    );
    python
}

/// One `lab-sw-001  ssh admin@127.0.10.1 -p 2222  (c2960x, WS-C2960X-48FPD-L)` line.
fn device_line(line: &str) -> Option<(String, SocketAddr, String)> {
    let mut words = line.split_whitespace();
    let name = words.next()?.to_string();
    let _ssh = words.next().filter(|w| *w == "ssh")?;
    let ip: Ipv4Addr = words.next()?.split_once('@')?.1.parse().ok()?;
    let _p = words.next().filter(|w| *w == "-p")?;
    let port: u16 = words.next()?.parse().ok()?;
    let persona = words.next()?.trim_start_matches('(').trim_end_matches(',');
    Some((name, SocketAddr::from((ip, port)), persona.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netmiko_scrapli_and_unicon_agree_with_the_lab_on_every_persona() {
    let missing = personas_not_driven();
    assert!(
        missing.is_empty(),
        "built-in personas no client drives: {missing:?}; add each to PERSONAS"
    );
    let python = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let personas: Vec<&str> = PERSONAS.iter().map(|p| p.persona).collect();
    let mut lab = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["lab", "--devices"])
        .arg(PERSONAS.len().to_string())
        .args(["--ssh-port", "0", "--boot-time", "0.3"])
        .arg("--persona")
        .arg(personas.join(","))
        .arg("--base-ip")
        .arg(random_base().to_string())
        .arg("--admin")
        .arg("127.0.0.1:0")
        .arg("--state-dir")
        .arg(&state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(lab.stdout.take().unwrap()).lines();
    let mut devices = Vec::new();
    let admin = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("fleetup lab prints its devices")
            .unwrap()
            .expect("fleetup lab stopped before printing its admin API");
        if let Some(url) = line.strip_prefix("admin API: ") {
            break url.trim_end_matches("/api/devices").to_string();
        }
        if let Some(d) = device_line(&line) {
            devices.push(d);
        }
    };
    assert_eq!(devices.len(), PERSONAS.len(), "{devices:?}");

    // Stage the images the clients will boot, as a finished copy leaves them in flash.
    let mut list = Vec::new();
    for (k, (name, addr, persona)) in devices.iter().enumerate() {
        let p = &PERSONAS[k];
        assert_eq!(persona, p.persona);
        let kickstarts = p.kickstarts.iter().flatten();
        for (n, image) in p.images.iter().chain(kickstarts).enumerate() {
            let data = fleetup::images::pseudo_random_bytes(64 * 1024, 40 + n as u64);
            std::fs::write(state.join(name).join("flash").join(image), data).unwrap();
        }
        list.push(serde_json::json!({
            "name": name,
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "persona": persona,
            "uplink": p.uplink,
            "images": p.images,
            "kickstarts": p.kickstarts,
        }));
    }
    let args = serde_json::json!({
        "admin": admin,
        "password": "cisco",
        "enable": "cisco",
        "devices": list,
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/conformance.py");
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(args.to_string())
            .current_dir(dir.path())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the conformance script finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "real clients disagree with the lab:\n{stdout}\n{stderr}"
    );
    // Every client did every step on every persona.
    for client in ["netmiko", "scrapli", "unicon"] {
        for (name, _, _) in &devices {
            assert!(
                stdout.contains(&format!("ok   {client} {name} ")),
                "{client} never reached {name}:\n{stdout}"
            );
        }
    }
    let rounds = 3 * PERSONAS.len();
    assert!(
        stdout.contains(&format!("\n{rounds} client rounds, 0 disagreements")),
        "{stdout}"
    );
    lab.start_kill().unwrap();
    let _ = lab.wait().await;
}

/// A built-in persona that no client drives fails here too, without the venv or a lab.
#[test]
fn every_built_in_persona_is_driven() {
    assert!(!fleetup::sim::built_in_personas().is_empty());
    assert_eq!(
        personas_not_driven(),
        Vec::<&str>::new(),
        "add each to PERSONAS in tests/it/conformance.rs"
    );
}

#[test]
fn lab_device_lines_are_read() {
    assert_eq!(
        device_line("lab-sw-003  ssh admin@127.0.44.3 -p 45569  (n9k, N9K-C93180YC-EX)"),
        Some((
            "lab-sw-003".to_string(),
            "127.0.44.3:45569".parse().unwrap(),
            "n9k".to_string()
        ))
    );
    assert_eq!(
        device_line("admin API: http://127.0.0.1:1/api/devices"),
        None
    );
}
