//! Stacks and chassis with two supervisors, upgraded by fleetup end to end against the lab's
//! personas: every member ready before any change, the image on every classic stack member's
//! own flash with `boot system switch all`, and the same members back, Ready and on the new
//! version (the standby HOT) before the device counts as done. Each lab fault ends with
//! `members_not_ready`, naming the member or supervisor, and a boot variable that names files
//! the members have.

use std::time::Duration;

use fleetup::sim::{DeviceState, Fault};
use serde_json::Value;

use crate::support::*;

const XE_IMAGE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";
const NX_IMAGE: &str = "nxos.10.2.5.M.bin";
const PERSONAS: [&str; 4] = [
    "c9300-stack",
    "c2960x-stack",
    "c9400-dual-sup",
    "n9k-dual-sup",
];

/// A lab of the four personas in [`PERSONAS`] order, with an image for each platform in the
/// store.
async fn rig() -> Rig {
    let rig = Rig::start(4, |c| {
        c.personas = PERSONAS.iter().map(|p| p.to_string()).collect();
        c.abort_timer_minute = Duration::from_secs(60);
    })
    .await;
    add_images(&rig, 70).await;
    rig
}

/// Add an IOS-XE and an NX-OS image (random bytes from `seed`) to the rig's store.
async fn add_images(rig: &Rig, seed: u64) {
    for (i, name) in [XE_IMAGE, NX_IMAGE].iter().enumerate() {
        let path = rig.dir.path().join(name);
        write_random_file(&path, 400_000 + i, seed + i as u64);
        let r = rig
            .post("/api/v1/images")
            .multipart(multipart_file(&path, name))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED, "{name}");
    }
}

fn book(devices: &[String], extra: &str) -> String {
    format!(
        "name: stacks\ntargets:\n  names: [{}]\nimage:\n  ios: {IMAGE}\n  iosxe: {XE_IMAGE}\n  nxos: {NX_IMAGE}\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\nstrategy:\n  canary: 0\n  max_failures: 100%\n  timeouts: {{poll: 1, members: 3s}}\n{extra}",
        devices.join(", ")
    )
}

fn messages(events: &[Value], device: &str, step: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["device"] == device && e["step"] == step)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

fn member(st: &DeviceState, n: u32) -> &fleetup::sim::MemberState {
    st.members
        .iter()
        .find(|m| m.number == n)
        .unwrap_or_else(|| panic!("no member {n}: {:#?}", st.members))
}

/// Each persona upgraded end to end: members checked before, the classic stack's members
/// given the image on their own flash and `boot system switch all`, every member and standby
/// back on the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stack_and_dual_supervisor_persona_is_upgraded_end_to_end() {
    let rig = rig().await;
    let names = rig.names();
    let id = rig.submit(&book(&names, "")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let events = rig.events(&id).await;
    let wanted = ["17.09.04a", IMAGE_VERSION, "17.09.04a", "10.2(5)M"];
    for (name, version) in names.iter().zip(wanted) {
        let job = job_of(&d, name);
        assert_eq!(job["state"], "succeeded", "{name}: {job:#}");
        let st = rig.lab.state(name).unwrap();
        assert_eq!(st.reload_count, 1, "{name}");
        assert_eq!(st.version, version, "{name}");
        assert!(st.members.len() >= 2, "{name}: {:#?}", st.members);
        for m in &st.members {
            assert_eq!(m.version, version, "{name} member {}: {m:#?}", m.number);
        }
        let pre = messages(&events, name, "pre_check").join("\n");
        let post = messages(&events, name, "post_check").join("\n");
        if name == &names[0] || name == &names[1] {
            assert!(pre.contains("every member Ready"), "{name}: {pre}");
            assert!(post.contains("stack members back"), "{name}: {post}");
        } else {
            assert!(pre.contains("STANDBY HOT"), "{name}: {pre}");
            assert!(post.contains("STANDBY HOT"), "{name}: {post}");
        }
    }

    // The classic stack: member 2 got the image on its own flash, verified there, and boots
    // it first with the old image as the fallback, like the active member.
    let c2960 = &names[1];
    let copies = messages(&events, c2960, "copy").join("\n");
    assert!(
        copies.contains(&format!("copy flash:{IMAGE} flash2:{IMAGE}")),
        "{copies}"
    );
    let verified = messages(&events, c2960, "verify_md5").join("\n");
    assert!(verified.contains("member 2's flash2:"), "{verified}");
    let st = rig.lab.state(c2960).unwrap();
    let m2 = member(&st, 2);
    assert_eq!(
        m2.boot_variable.first().map(String::as_str),
        Some(format!("flash:{IMAGE}").as_str()),
        "{m2:#?}"
    );
    assert!(m2.running_image.ends_with(IMAGE), "{m2:#?}");
    assert!(
        st.last_commands
            .iter()
            .any(|c| c.starts_with("boot system switch all ")),
        "{:#?}",
        st.last_commands
    );
    // Install mode: the members' flash was checked, `install add` did the copying.
    let space = messages(&events, &names[0], "free_space").join("\n");
    assert!(
        space.contains("member 2") && space.contains("member 3"),
        "{space}"
    );

    // The inventory lists each stack's members as the device reported them after the upgrade.
    for (name, count) in [(&names[0], 3), (&names[1], 2)] {
        let d: Value = rig
            .get(&format!("/api/v1/devices/{name}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let members = d["facts"]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(members.len(), count, "{name}: {d:#}");
        let lab = rig.lab.state(name).unwrap();
        for (m, want) in members.iter().zip(&lab.members) {
            assert_eq!(m["number"], want.number, "{name}: {m:#}");
            // IOS 15 prints the active member as the master.
            let role = want.role.replace("Master", "Active");
            assert_eq!(m["role"], role.as_str(), "{name}: {m:#}");
            assert_eq!(m["state"], "Ready", "{name}: {m:#}");
            assert_eq!(m["version"], want.version.as_str(), "{name}: {m:#}");
            assert_eq!(m["model"], lab.model.as_str(), "{name}: {m:#}");
            let serial = m["serial"].as_str().unwrap_or_default();
            assert!(serial.len() >= 8, "{name}: {m:#}");
        }
        let serials: std::collections::BTreeSet<&str> = members
            .iter()
            .filter_map(|m| m["serial"].as_str())
            .collect();
        assert_eq!(serials.len(), count, "one serial per member: {members:#?}");
    }
    rig.stop().await;
}

/// Each fault of a stack member or standby ends the device with `members_not_ready`, naming
/// the member or supervisor. Install mode is not committed and goes back to its old version
/// (`install abort`); the others stay on the new image with a boot variable that names files
/// every member has. A second rollout then stops before any change, since the stack is not
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_or_standby_that_is_not_back_fails_the_device_and_is_named() {
    let rig = rig().await;
    let names = rig.names();
    let faults = [
        Fault::StackMemberLost,
        Fault::StackMemberVersionMismatch,
        Fault::StandbyNotHot,
        Fault::StandbyNotHot,
    ];
    let before: Vec<DeviceState> = names.iter().map(|n| rig.lab.state(n).unwrap()).collect();
    for (name, fault) in names.iter().zip(faults) {
        assert!(rig.lab.set_fault(name, fault), "{name}");
    }
    let id = rig.submit(&book(&names, "")).await;
    let d = rig.wait_end(&id).await;
    let named = [
        "member 3",
        "member 2",
        "standby supervisor",
        "standby supervisor",
    ];
    let ends = ["rolled_back", "failed", "rolled_back", "failed"];
    for (i, name) in names.iter().enumerate() {
        let job = job_of(&d, name);
        assert_eq!(job["state"], ends[i], "{name}: {job:#}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("members_not_ready") && error.contains(named[i]),
            "{name}: {error}"
        );
        let st = rig.lab.state(name).unwrap();
        if ends[i] == "rolled_back" {
            assert_eq!(st.version, before[i].version, "{name}");
            assert_eq!(st.reload_count, 2, "{name}: activated, then aborted");
        } else {
            assert_eq!(st.reload_count, 1, "{name}");
        }
    }
    // The classic stack: every member's boot variable names files on its own flash.
    let st = rig.lab.state(&names[1]).unwrap();
    for m in &st.members {
        assert_eq!(
            m.boot_variable.first().map(String::as_str),
            Some(format!("flash:{IMAGE}").as_str()),
            "member {}: {m:#?}",
            m.number
        );
    }
    let m2 = member(&st, 2);
    assert_eq!(m2.state, "V-Mismatch", "{m2:#?}");

    // The stack is not whole now: a new rollout stops it before any change.
    for name in &names[..2] {
        assert!(rig.lab.clear_faults(name), "{name}");
    }
    let xe = rig.lab.state(&names[0]).unwrap();
    let id = rig.submit(&book(&names[..2], "")).await;
    let d = rig.wait_end(&id).await;
    for (name, reloads, who) in [
        (&names[0], xe.reload_count, "member 3"),
        (&names[1], 1, "member 2"),
    ] {
        let job = job_of(&d, name);
        assert_eq!(job["state"], "failed", "{name}: {job:#}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("members_not_ready")
                && error.contains(who)
                && error.contains("pre_check"),
            "{name}: {error}"
        );
        assert_eq!(
            rig.lab.state(name).unwrap().reload_count,
            reloads,
            "{name}: untouched"
        );
    }
    rig.stop().await;
}

/// `strategy.issu`: `required` upgrades a Catalyst 9400 (`install activate issu`) and a
/// Nexus 9500 (`install all … non-disruptive`) in service, and fails a device whose check says
/// the upgrade would be disruptive before any change; `preferred` falls back to a normal
/// reload when the device refuses, and the events say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issu_required_runs_in_service_or_changes_nothing_and_preferred_falls_back() {
    let rig = Rig::start(4, |c| {
        c.personas = vec!["c9400-dual-sup".into(), "n9k-dual-sup".into()];
        c.abort_timer_minute = Duration::from_secs(60);
    })
    .await;
    add_images(&rig, 80).await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[3], Fault::IssuIncompatible));
    let required = |devices: &[String]| {
        book(devices, "").replace("strategy:\n", "strategy:\n  issu: required\n")
    };
    let id = rig
        .submit(&required(&[
            names[0].clone(),
            names[1].clone(),
            names[3].clone(),
        ]))
        .await;
    let d = rig.wait_end(&id).await;
    let events = rig.events(&id).await;
    for name in &names[..2] {
        let job = job_of(&d, name);
        assert_eq!(job["state"], "succeeded", "{name}: {job:#}");
        let st = rig.lab.state(name).unwrap();
        assert!(st.last_upgrade_issu, "{name}: upgraded in service");
        assert!(
            st.members.iter().all(|m| m.version == st.version),
            "{name}: {:#?}",
            st.members
        );
        let install = messages(&events, name, "install").join("\n");
        assert!(
            install.contains("installed in service"),
            "{name}: {install}"
        );
    }
    let job = job_of(&d, &names[3]);
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("issu_not_possible") && error.contains("pre_check"),
        "{error}"
    );
    let st = rig.lab.state(&names[3]).unwrap();
    assert_eq!(st.reload_count, 0, "untouched");
    assert!(
        !st.last_commands
            .iter()
            .any(|c| c.starts_with("install all")),
        "{:#?}",
        st.last_commands
    );

    // preferred: the Catalyst refuses `install activate issu`; the upgrade reloads instead.
    assert!(rig.lab.set_fault(&names[2], Fault::IssuIncompatible));
    let preferred = book(&names[2..3], "").replace("strategy:\n", "strategy:\n  issu: preferred\n");
    let id = rig.submit(&preferred).await;
    let d = rig.wait_end(&id).await;
    let job = job_of(&d, &names[2]);
    assert_eq!(job["state"], "succeeded", "{job:#}");
    let st = rig.lab.state(&names[2]).unwrap();
    assert!(!st.last_upgrade_issu);
    assert_eq!(st.reload_count, 1);
    assert_eq!(st.version, "17.09.04a");
    let events = rig.events(&id).await;
    let install = messages(&events, &names[2], "install").join("\n");
    assert!(
        install.contains("refused the in-service upgrade")
            && install.contains("install activate auto-abort-timer"),
        "{install}"
    );
    rig.stop().await;
}

/// Two supervisors in bundle mode: each boots from its own flash, so fleetup finds the
/// standby's (`stby-bootflash:`), copies the image there and verifies it before the reload,
/// and removes the old image from both afterwards. The standby comes back HOT on the new
/// version (the lab boots it from its own flash only: without the copy it would come back on
/// the old one, out of SSO).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_mode_standby_supervisor_gets_the_image_on_its_own_flash() {
    let rig = Rig::start(1, |c| {
        c.personas = vec!["c9400-dual-sup-bundle".into()];
    })
    .await;
    add_images(&rig, 71).await;
    let names = rig.names();
    let name = &names[0];
    let old = rig.lab.state(name).unwrap().running_image;
    let old = old
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(old.ends_with(".bin"), "bundle mode: {old}");

    let id = rig
        .submit(&book(&names, "options:\n  delete_old_image: true\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(job_of(&d, name)["state"], "succeeded", "{d:#}");
    let events = rig.events(&id).await;
    let pre = messages(&events, name, "pre_check").join("\n");
    assert!(pre.contains("STANDBY HOT"), "{pre}");
    let copies = messages(&events, name, "copy").join("\n");
    assert!(
        copies.contains(&format!(
            "copy flash:{XE_IMAGE} stby-bootflash:{XE_IMAGE} (the standby supervisor)"
        )),
        "{copies}"
    );
    let verified = messages(&events, name, "verify_md5").join("\n");
    assert!(
        verified.contains("verified on the standby supervisor's stby-bootflash:"),
        "{verified}"
    );

    let st = rig.lab.state(name).unwrap();
    assert_eq!(st.reload_count, 1);
    assert_eq!(st.version, "17.09.04a");
    let standby = &st.members[1];
    assert_eq!(standby.version, "17.09.04a", "{standby:#?}");
    assert_eq!(standby.state, "STANDBY HOT", "{standby:#?}");
    assert!(standby.running_image.ends_with(XE_IMAGE), "{standby:#?}");
    let sent = |c: String| st.last_commands.contains(&c);
    assert!(
        sent(format!("delete /force stby-bootflash:{old}")),
        "the old image goes from the standby's flash too: {:#?}",
        st.last_commands
    );
    assert!(
        !st.flash.files.iter().any(|f| f.name == old),
        "{:#?}",
        st.flash
    );
    rig.stop().await;
}
