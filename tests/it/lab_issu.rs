//! ISSU in the lab: NX-OS `show install all impact nxos F [non-disruptive]` and `install all
//! nxos F non-disruptive`, IOS-XE `show issu state detail` and `install activate issu`, on
//! the dual-supervisor personas, a single supervisor and a stack, with the `issu-incompatible`
//! fault. Outputs are read with fleetup's own parsers (`device::issu`); the fleetup side runs
//! through `Session` too.

use super::*;
use fleetup::device::issu::{
    IssuActivation, iosxe_issu_activation, iosxe_issu_state, nxos_impact,
    nxos_non_disruptive_refused,
};
use fleetup::device::{DeviceError, IssuCheck, Session, Target, Timeouts};
use fleetup::inventory::{Login, Platform, Secret};

const NX: &str = "nxos.10.2.5.M.bin";
const XE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";

fn target(lab: &TestLab, k: usize, platform: Platform) -> Target {
    let addr = lab.ssh(k);
    Target {
        name: format!("lab-sw-{:03}", k + 1),
        host: addr.ip().to_string(),
        port: addr.port(),
        platform,
        login: Login {
            username: "admin".into(),
            password: Some(Secret("cisco".into())),
            enable_secret: Some(Secret("cisco".into())),
        },
        private_key: None,
        known_host_key: None,
        transcript: None,
    }
}

/// Two n9k-dual-sup (the second `issu-incompatible`) and a single-supervisor n9k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxos_non_disruptive_install_runs_in_service_or_is_refused_without_reload() {
    let data = pseudo_random_bytes(60_000, 31);
    let server = tftp_server(&[(NX, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(3, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["n9k-dual-sup".into(), "n9k-dual-sup".into(), "n9k".into()];
    })
    .await;
    assert_eq!(
        set_fault(&lab, "lab-sw-002", "issu-incompatible").await,
        200
    );
    for k in 0..3 {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let mut vty = Vty::open(lab.ssh(k), "admin", "cisco").await.unwrap();
        vty.expect(&format!(r"(?m)^{host}#$")).await;
        vty.cmd("terminal length 0", &p).await;
        let out = vty
            .cmd(
                &format!("copy tftp://{ip}/{NX} bootflash: vrf management"),
                &p,
            )
            .await;
        assert!(out.ends_with("Copy complete.\r\n"), "{out:?}");

        // Without the keyword NX-OS upgrades disruptively, as real Nexus 9000s do.
        let plain = vty
            .cmd(&format!("show install all impact nxos bootflash:{NX}"), &p)
            .await;
        let i = nxos_impact(&plain).unwrap();
        assert!(i.disruptive(), "{plain}");
        assert!(
            i.reason()
                .unwrap()
                .contains("default upgrade is not hitless"),
            "{plain}"
        );

        let impact = vty
            .cmd(
                &format!("show install all impact nxos bootflash:{NX} non-disruptive"),
                &p,
            )
            .await;
        let i = nxos_impact(&impact).unwrap();
        match k {
            0 => {
                assert_eq!(i.check(), IssuCheck::NonDisruptive, "{impact}");
                let mods: Vec<u32> = i.modules.iter().map(|m| m.module).collect();
                assert_eq!(mods, [27, 28]);
                assert_line(
                    &impact,
                    r"^    27       yes  non-disruptive          none\r$",
                );
            }
            1 => assert_eq!(
                i.reason().as_deref(),
                Some(
                    "module 27: Incompatible image for ISSU; module 28: Incompatible image for ISSU"
                ),
                "{impact}"
            ),
            _ => assert_eq!(
                i.reason().as_deref(),
                Some("module 1: default upgrade is not hitless"),
                "{impact}"
            ),
        }

        vty.send(&format!("install all nxos bootflash:{NX} non-disruptive\n"))
            .await;
        if k == 0 {
            let out = vty
                .expect(r"Do you want to continue with the installation \(y/n\)\?  \[n\] $")
                .await;
            assert!(!out.contains("reloaded for disruptive upgrade"), "{out}");
            vty.send("y\n").await;
            let tail = vty.wait_closed().await;
            assert_line(&tail, r"^Install has been successful\.\r$");
            assert!(nxos_non_disruptive_refused(&format!("{out}{tail}")).is_none());
            assert!(lab.lab.wait_until_up(&host).await);
            let st = lab.lab.state(&host).unwrap();
            assert_eq!(st.version, "10.2(5)M");
            assert!(st.last_upgrade_issu);
            let sups: Vec<(String, String)> = st
                .members
                .iter()
                .map(|m| (m.state.clone(), m.version.clone()))
                .collect();
            assert_eq!(
                sups,
                [
                    ("active".to_string(), "10.2(5)M".to_string()),
                    ("ha-standby".to_string(), "10.2(5)M".to_string()),
                ]
            );
        } else {
            let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
            assert_line(&out, r"^Install has been aborted\.\r$");
            let reason = nxos_non_disruptive_refused(&out).unwrap();
            let want = if k == 1 {
                "Incompatible image for ISSU"
            } else {
                "default upgrade is not hitless"
            };
            assert!(reason.contains(want), "{reason}");
            let st = lab.lab.state(&host).unwrap();
            assert_eq!(st.reload_count, 0);
            assert_eq!(st.version, "9.3(8)");
            assert!(!st.last_upgrade_issu);
        }
    }

    // fleetup's side: the pre-check and the refusal, the session still usable after it.
    let t = Timeouts::default();
    let mut s = Session::open(&target(&lab, 1, Platform::Nxos), &t)
        .await
        .unwrap();
    s.facts().await.unwrap();
    let check = s.issu_check(NX, None).await.unwrap();
    assert!(
        matches!(&check, IssuCheck::Disruptive { reason } if reason.contains("Incompatible image for ISSU")),
        "{check:?}"
    );
    let err = s.install_all_non_disruptive(NX).await.unwrap_err();
    assert!(
        matches!(&err, DeviceError::Rejected { message, .. } if message.contains("Incompatible image for ISSU")),
        "{err:?}"
    );
    s.facts().await.unwrap();
    s.close().await;
    assert_eq!(lab.lab.state("lab-sw-002").unwrap().reload_count, 0);
    lab.stop().await;
}

/// Two c9400-dual-sup (the second `issu-incompatible`) and a c9300 stack, which has no ISSU.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iosxe_install_activate_issu_switches_over_or_is_refused_without_change() {
    let data = pseudo_random_bytes(70_000, 32);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(3, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec![
            "c9400-dual-sup".into(),
            "c9400-dual-sup".into(),
            "c9300-stack".into(),
        ];
    })
    .await;
    assert_eq!(
        set_fault(&lab, "lab-sw-002", "issu-incompatible").await,
        200
    );
    for k in 0..3 {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let fs = if k < 2 { "bootflash" } else { "flash" };
        let mut vty = enabled(lab.ssh(k), &host).await;
        let state = vty.cmd("show issu state detail", &p).await;
        let s = iosxe_issu_state(&state).unwrap();
        if k < 2 {
            // The image pair is only judged by the activation itself.
            assert_eq!(s.check(), IssuCheck::DecidedByActivation, "{state}");
        } else {
            assert_eq!(
                s.reason().as_deref(),
                Some("Platform ISSU Support: No; Standby Online: No; SSO Mode: No"),
                "{state}"
            );
        }
        vty.send(&format!("copy tftp://{ip}/{XE} {fs}:\n")).await;
        vty.expect(r"Destination filename \[\S+\]\? $").await;
        vty.send("\n").await;
        let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
        assert!(out.contains("[OK - 70000 bytes]"), "{out:?}");
        let add = vty.cmd(&format!("install add file {fs}:{XE}"), &p).await;
        assert_line(&add, r"^SUCCESS: install_add ");
        let before = lab.lab.state(&host).unwrap();
        vty.send("install activate issu\n").await;
        if k == 0 {
            let out = vty.expect(r"Do you want to proceed\? \[y/n\]$").await;
            assert_line(&out, r"^install_activate: Activating ISSU\r$");
            vty.send("y\n").await;
            let tail = vty.wait_closed().await;
            assert_eq!(
                iosxe_issu_activation(&format!("{out}{tail}")),
                Ok(IssuActivation::Proceeding)
            );
            assert!(lab.lab.wait_until_up(&host).await);
            let st = lab.lab.state(&host).unwrap();
            assert_eq!(st.version, "17.09.04a");
            assert!(st.last_upgrade_issu);
            assert!(st.install_uncommitted);
            assert_eq!(st.members[1].state, "STANDBY HOT");
            assert_eq!(st.members[1].version, "17.09.04a");
            let mut vty = enabled(lab.ssh(k), &host).await;
            let commit = vty.cmd("install commit", &p).await;
            assert_line(&commit, r"^SUCCESS: install_commit ");
            assert!(!lab.lab.state(&host).unwrap().install_uncommitted);
        } else {
            let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
            let why = match iosxe_issu_activation(&out) {
                Ok(IssuActivation::Refused { reason }) => reason,
                other => panic!("{other:?} from {out}"),
            };
            let want = if k == 1 {
                "ISSU is not supported from 17.06.05 to 17.09.04a"
            } else {
                "ISSU pre-check failed: Platform ISSU Support No"
            };
            assert!(why.contains(want), "{why}");
            let st = lab.lab.state(&host).unwrap();
            assert_eq!(st.reload_count, before.reload_count);
            assert_eq!(st.version, before.version);
            assert!(!st.install_uncommitted && !st.last_upgrade_issu);
        }
    }

    // fleetup's side: on the chassis the check defers to the activation; on the stack, which
    // has no ISSU, the check says so and the activation is refused with the device's line
    // (fleetup names IOS-XE images `flash:F`, which the c9400 persona's `bootflash:` does not
    // take); the session goes on.
    let t = Timeouts::default();
    let mut s = Session::open(&target(&lab, 1, Platform::Iosxe), &t)
        .await
        .unwrap();
    s.facts().await.unwrap();
    assert_eq!(
        s.issu_check(XE, None).await.unwrap(),
        IssuCheck::DecidedByActivation
    );
    s.close().await;
    let mut s = Session::open(&target(&lab, 2, Platform::Iosxe), &t)
        .await
        .unwrap();
    s.facts().await.unwrap();
    let check = s.issu_check(XE, None).await.unwrap();
    assert!(
        matches!(&check, IssuCheck::Disruptive { reason } if reason.contains("Platform ISSU Support: No")),
        "{check:?}"
    );
    let err = s.install_activate_issu(XE).await.unwrap_err();
    assert!(
        matches!(&err, DeviceError::Rejected { command, message, .. }
            if command == "install activate issu" && message.contains("Platform ISSU Support No")),
        "{err:?}"
    );
    s.facts().await.unwrap();
    s.close().await;
    lab.stop().await;
}
