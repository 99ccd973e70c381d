//! Stacks and dual-supervisor chassis in the lab (`c9300-stack`, `c2960x-stack`,
//! `c9400-dual-sup`, `n9k-dual-sup`), their faults, and IOS-XE `install activate
//! auto-abort-timer` with `install commit`, `install abort` and the timer's own rollback. Each
//! upgrade is driven by hand over SSH and checked both in what the device prints and in
//! `Lab::state`.

use super::*;

/// `copy tftp://… DEST` answering the destination prompt with Return.
async fn copy_tftp_to(
    vty: &mut Vty,
    server: Ipv4Addr,
    file: &str,
    dest: &str,
    host: &str,
) -> String {
    vty.send(&format!("copy tftp://{server}/{file} {dest}\n"))
        .await;
    vty.expect(&format!(
        r"Destination filename \[{}\]\? $",
        regex::escape(file)
    ))
    .await;
    vty.send("\n").await;
    vty.expect(&format!(r"(?m)^{host}#$")).await
}

/// `(number, role, state)` of every member in the admin API's view.
fn members(lab: &TestLab, host: &str) -> Vec<(u32, String, String, String)> {
    lab.lab
        .state(host)
        .unwrap()
        .members
        .iter()
        .map(|m| (m.number, m.role.clone(), m.state.clone(), m.version.clone()))
        .collect()
}

fn owned(rows: &[(u32, &str, &str, &str)]) -> Vec<(u32, String, String, String)> {
    rows.iter()
        .map(|(n, r, s, v)| (*n, r.to_string(), s.to_string(), v.to_string()))
        .collect()
}

const XE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";

/// `install add file flash:XE activate commit`, confirmed; returns once the device is back.
async fn install_one_shot(lab: &TestLab, k: usize, fs: &str) {
    let host = format!("lab-sw-{:03}", k + 1);
    let mut vty = enabled(lab.ssh(k), &host).await;
    vty.send(&format!("install add file {fs}:{XE} activate commit\n"))
        .await;
    vty.expect(r"Do you want to proceed\? \[y/n\]$").await;
    vty.send("y\n").await;
    let tail = vty.wait_closed().await;
    assert_line(&tail, r"^SUCCESS: install_add_activate_commit ");
    assert!(lab.lab.wait_until_up(&host).await);
}

#[tokio::test]
async fn c9300_stack_install_upgrades_every_member_and_the_stack_faults_show() {
    let data = pseudo_random_bytes(120_000, 21);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(3, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c9300-stack".into()];
    })
    .await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let mut vty = enabled(lab.ssh(0), host).await;
    let sw = vty.cmd("show switch", &p).await;
    assert_line(
        &sw,
        r"^Switch#   Role    Mac Address     Priority Version  State \r$",
    );
    assert_line(&sw, r"^\*1       Active   \S+     15     V02     Ready\r$");
    assert_line(&sw, r"^ 2       Standby  \S+     14     V02     Ready\r$");
    assert_line(&sw, r"^ 3       Member   \S+     13     V02     Ready\r$");
    let ver = vty.cmd("show version", &p).await;
    for n in 1..=3 {
        assert_line(
            &ver,
            &format!(r"^[* ]    {n} 41    C9300-24P\s+17\.06\.05\s+CAT9K_IOSXE\s+INSTALL\r$"),
        );
    }
    assert_line(&ver, r"^Switch 02\r$");
    assert_line(&ver, r"^Switch 03\r$");
    let out = copy_tftp_to(&mut vty, ip, XE, "flash:", host).await;
    assert!(out.contains("[OK - 120000 bytes]"), "{out:?}");
    // Every member's flash (install mode keeps them in sync) has the image and room.
    for n in 1..=3 {
        let dir = vty.cmd(&format!("dir flash-{n}:"), &p).await;
        assert_line(&dir, &format!(r"^Directory of flash-{n}:/\r$"));
        assert_line(&dir, &format!(r"\s120000  .*  {}\r$", regex::escape(XE)));
        assert_line(&dir, r"^\d+ bytes total \(\d+ bytes free\)\r$");
    }
    vty.send(&format!("install add file flash:{XE} activate commit\n"))
        .await;
    let out = vty.expect(r"Do you want to proceed\? \[y/n\]$").await;
    assert_line(&out, r"^Copying flash:\S+ from switch 1 to switch 1,2,3\r$");
    assert_line(&out, r"^  \[3\] Add package\(s\) on switch 3\r$");
    assert_line(&out, r"^Add: Passed on \[1 2 3\]\r$");
    vty.send("y\n").await;
    let tail = vty.wait_closed().await;
    assert_line(&tail, r"^Commit: Passed on \[1 2 3\]\r$");
    assert!(lab.lab.wait_until_up(host).await);

    let mut vty = enabled(lab.ssh(0), host).await;
    let sw = vty.cmd("show switch", &p).await;
    assert_eq!(sw.matches("Ready").count(), 3, "{sw}");
    let ver = vty.cmd("show version", &p).await;
    assert_eq!(
        Regex::new(r"(?m)^[* ]    \d 41    C9300-24P\s+17\.09\.04a\s")
            .unwrap()
            .find_iter(&ver)
            .count(),
        3,
        "{ver}"
    );
    let boot = vty.cmd("show boot", &p).await;
    assert_eq!(
        boot.matches("BOOT variable = flash:packages.conf;").count(),
        6,
        "{boot}"
    );
    let summary = vty.cmd("show install summary", &p).await;
    assert_line(
        &summary,
        r"^\[ Switch 1 2 3 \] Installed Package\(s\) Information:\r$",
    );
    assert_eq!(
        members(&lab, host),
        owned(&[
            (1, "Active", "Ready", "17.09.04a"),
            (2, "Standby", "Ready", "17.09.04a"),
            (3, "Member", "Ready", "17.09.04a"),
        ])
    );
    let api = admin_state(&lab, host).await;
    assert_eq!(api["members"][2]["state"], "Ready");
    assert_eq!(api["members"][2]["boot_variable"][0], "flash:packages.conf");
    assert_eq!(api["reload_count"], 1);

    // stack-member-lost and stack-member-version-mismatch on the next two stacks.
    assert_eq!(
        set_fault(&lab, "lab-sw-002", "stack-member-lost").await,
        200
    );
    assert_eq!(
        set_fault(&lab, "lab-sw-003", "stack-member-version-mismatch").await,
        200
    );
    for k in 1..=2 {
        let host = format!("lab-sw-{:03}", k + 1);
        let mut vty = enabled(lab.ssh(k), &host).await;
        let out = copy_tftp_to(&mut vty, ip, XE, "flash:", &host).await;
        assert!(out.contains("[OK - 120000 bytes]"), "{out:?}");
        drop(vty);
        install_one_shot(&lab, k, "flash").await;
    }
    let lost = members(&lab, "lab-sw-002");
    assert_eq!(
        lost,
        owned(&[
            (1, "Active", "Ready", "17.09.04a"),
            (2, "Standby", "Ready", "17.09.04a"),
            (3, "Member", "Removed", "17.06.05"),
        ])
    );
    let mut vty = enabled(lab.ssh(1), "lab-sw-002").await;
    let sw = vty.cmd("show switch", "lab-sw-002#").await;
    assert_line(&sw, r"^ 3       Member   \S+     13     V02     Removed\r$");
    let ver = vty.cmd("show version", "lab-sw-002#").await;
    assert!(!ver.contains("Switch 03"), "{ver}");
    let mismatch = members(&lab, "lab-sw-003");
    assert_eq!(
        mismatch[2],
        (3, "Member".into(), "V-Mismatch".into(), "17.06.05".into())
    );
    let mut vty = enabled(lab.ssh(2), "lab-sw-003").await;
    let sw = vty.cmd("show switch", "lab-sw-003#").await;
    assert_line(
        &sw,
        r"^ 3       Member   \S+     13     0       V-Mismatch\r$",
    );
    let ver = vty.cmd("show version", "lab-sw-003#").await;
    assert_line(&ver, r"^     3 41    C9300-24P\s+17\.06\.05\s+CAT9K_IOSXE");
    lab.stop().await;
}

#[tokio::test]
async fn c2960x_stack_image_on_every_member_flash_and_boot_system_switch_all() {
    const IMG: &str = "c2960x-universalk9-mz.152-7.E8.bin";
    let data = pseudo_random_bytes(200_000, 22);
    let server = tftp_server(&[(IMG, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(2, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c2960x-stack".into()];
    })
    .await;
    let want = md5sum(&server.dir.path().join(IMG)).await;
    for (k, to_member_2) in [(0usize, true), (1, false)] {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let mut vty = enabled(lab.ssh(k), &host).await;
        let sw = vty.cmd("show switch", &p).await;
        assert_line(&sw, r"^\*1       Master \S+     15     4       Ready\r$");
        assert_line(&sw, r"^ 2       Member \S+     14     4       Ready\r$");
        let out = copy_tftp_to(&mut vty, ip, IMG, "flash1:", &host).await;
        assert!(out.contains("[OK - 200000 bytes]"), "{out:?}");
        let dir2 = vty.cmd("dir flash2:", &p).await;
        assert_line(&dir2, r"^Directory of flash2:/\r$");
        assert!(!dir2.contains(IMG), "{dir2}");
        if to_member_2 {
            vty.send(&format!("copy flash1:{IMG} flash2:{IMG}\n")).await;
            vty.expect(r"Destination filename \[\S+\]\? $").await;
            vty.send("\n").await;
            let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
            assert!(out.contains("200000 bytes copied"), "{out:?}");
            for fs in ["flash1", "flash2"] {
                let out = vty.cmd(&format!("verify /md5 {fs}:{IMG} {want}"), &p).await;
                assert_line(
                    &out,
                    &format!(r"^Verified \({fs}:{}\) = {want}\r$", regex::escape(IMG)),
                );
            }
        } else {
            let out = vty.cmd(&format!("verify /md5 flash2:{IMG}"), &p).await;
            assert_line(
                &out,
                r"^%Error opening flash2:\S+ \(No such file or directory\)\r$",
            );
        }
        let out = vty
            .cmd("configure terminal", &format!("{host}(config)#"))
            .await;
        assert!(out.contains("Enter configuration commands"), "{out}");
        vty.cmd(
            &format!("boot system switch all flash:/{IMG}"),
            &format!("{host}(config)#"),
        )
        .await;
        vty.cmd("end", &p).await;
        let boot = vty.cmd("show boot", &p).await;
        assert_eq!(
            boot.matches(&format!("BOOT path-list      : flash:/{IMG}"))
                .count(),
            2,
            "{boot}"
        );
        assert_line(&boot, r"^Switch 2\r$");
        vty.cmd("write memory", &p).await;
        vty.send("reload\n").await;
        vty.expect(r"Proceed with reload\? \[confirm\]$").await;
        vty.send("\n").await;
        vty.wait_closed().await;
        assert!(lab.lab.wait_until_up(&host).await);
        let mut vty = enabled(lab.ssh(k), &host).await;
        let sw = vty.cmd("show switch", &p).await;
        let ver = vty.cmd("show version", &p).await;
        assert_line(
            &ver,
            r"^\*    1 52    WS-C2960X-48FPD-L\s+15\.2\(7\)E8\s+C2960X-UNIVERSALK9-M\r$",
        );
        if to_member_2 {
            assert_line(&sw, r"^ 2       Member \S+     14     4       Ready\r$");
            assert_line(&ver, r"^     2 52    WS-C2960X-48FPD-L\s+15\.2\(7\)E8\s");
            assert_eq!(
                members(&lab, &host),
                owned(&[
                    (1, "Master", "Ready", "15.2(7)E8"),
                    (2, "Member", "Ready", "15.2(7)E8"),
                ])
            );
        } else {
            // Its own boot loader found no such file: it booted the old image it has.
            assert_line(
                &sw,
                r"^ 2       Member \S+     14     0       V-Mismatch\r$",
            );
            assert_line(&ver, r"^     2 52    WS-C2960X-48FPD-L\s+15\.2\(4\)E10\s");
            let m = &lab.lab.state(&host).unwrap().members[1];
            assert_eq!(
                (m.state.as_str(), m.version.as_str()),
                ("V-Mismatch", "15.2(4)E10")
            );
            assert_eq!(m.boot_variable, [format!("flash:/{IMG}")]);
        }
    }
    lab.stop().await;
}

#[tokio::test]
async fn c9400_supervisors_both_upgrade_and_standby_not_hot_shows() {
    let data = pseudo_random_bytes(100_000, 23);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(2, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c9400-dual-sup".into()];
    })
    .await;
    assert_eq!(set_fault(&lab, "lab-sw-002", "standby-not-hot").await, 200);
    for k in 0..2 {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let mut vty = enabled(lab.ssh(k), &host).await;
        let red = vty.cmd("show redundancy", &p).await;
        assert_line(&red, r"^     Operating Redundancy Mode = sso\r$");
        assert_line(&red, r"^        Current Software state = STANDBY HOT\r$");
        let out = copy_tftp_to(&mut vty, ip, XE, "bootflash:", &host).await;
        assert!(out.contains("[OK - 100000 bytes]"), "{out:?}");
        let stby = vty.cmd("dir stby-bootflash:", &p).await;
        assert_line(&stby, r"^Directory of stby-bootflash:/\r$");
        assert!(stby.contains(XE), "{stby}");
        drop(vty);
        install_one_shot(&lab, k, "bootflash").await;
        let mut vty = enabled(lab.ssh(k), &host).await;
        let red = vty.cmd("show redundancy", &p).await;
        let modules = vty.cmd("show module", &p).await;
        assert_line(
            &red,
            r"^\s+Image Version = .+Version 17\.9\.4a, RELEASE SOFTWARE",
        );
        assert_eq!(red.matches("Version 17.9.4a,").count(), 2, "{red}");
        let st = members(&lab, &host);
        if k == 0 {
            assert_line(&red, r"^        Current Software state = STANDBY HOT\r$");
            assert_line(
                &modules,
                r"^4   Standby             sso             sso              Standby Hot\r$",
            );
            assert_eq!(
                st,
                owned(&[
                    (3, "Active", "ACTIVE", "17.09.04a"),
                    (4, "Standby", "STANDBY HOT", "17.09.04a"),
                ])
            );
        } else {
            assert_line(&red, r"^        Current Software state = STANDBY COLD\r$");
            assert_line(&red, r"^     Operating Redundancy Mode = rpr\r$");
            assert_line(
                &modules,
                r"^4   Standby             rpr             sso              Standby Cold\r$",
            );
            assert_eq!(st[1].2, "STANDBY COLD");
        }
    }
    lab.stop().await;
}

#[tokio::test]
async fn n9k_supervisors_both_upgrade_and_standby_not_hot_shows() {
    const NX: &str = "nxos.10.2.5.M.bin";
    let data = pseudo_random_bytes(90_000, 24);
    let server = tftp_server(&[(NX, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(2, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["n9k-dual-sup".into()];
    })
    .await;
    assert_eq!(set_fault(&lab, "lab-sw-002", "standby-not-hot").await, 200);
    for k in 0..2 {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let mut vty = Vty::open(lab.ssh(k), "admin", "cisco").await.unwrap();
        vty.expect(&format!(r"(?m)^{host}#$")).await;
        vty.cmd("terminal length 0", &p).await;
        let modules = vty.cmd("show module", &p).await;
        assert_line(
            &modules,
            r"^27   0    Supervisor Module\s+N9K-SUP-A\s+active \*\r$",
        );
        assert_line(
            &modules,
            r"^28   0    Supervisor Module\s+N9K-SUP-A\s+ha-standby\r$",
        );
        let red = vty.cmd("show system redundancy status", &p).await;
        assert_line(&red, r"^         operational:   HA\r$");
        assert_line(&red, r"^    Supervisor state:   HA standby\r$");
        let out = vty
            .cmd(
                &format!("copy tftp://{ip}/{NX} bootflash: vrf management"),
                &p,
            )
            .await;
        assert!(out.ends_with("Copy complete.\r\n"), "{out:?}");
        vty.send(&format!("install all nxos bootflash:{NX}\n"))
            .await;
        vty.expect(r"Do you want to continue with the installation \(y/n\)\?  \[n\] $")
            .await;
        vty.send("y\n").await;
        vty.wait_closed().await;
        assert!(lab.lab.wait_until_up(&host).await);
        let out = openssh(lab.ssh(k), "cisco", "show module").await;
        let modules = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_line(&modules, r"^28   10\.2\(5\)M\s+1\.4    SUP2\r$");
        let st = members(&lab, &host);
        if k == 0 {
            assert_line(
                &modules,
                r"^28   0    Supervisor Module\s+N9K-SUP-A\s+ha-standby\r$",
            );
            assert_eq!(
                st,
                owned(&[
                    (27, "Active", "active", "10.2(5)M"),
                    (28, "Standby", "ha-standby", "10.2(5)M"),
                ])
            );
        } else {
            assert_line(
                &modules,
                r"^28   0    Supervisor Module\s+N9K-SUP-A\s+powered-up\r$",
            );
            let out = openssh(lab.ssh(k), "cisco", "show system redundancy status").await;
            let red = String::from_utf8_lossy(&out.stdout).into_owned();
            assert_line(&red, r"^         operational:   None\r$");
            assert_eq!(st[1].2, "powered-up");
        }
    }
    lab.stop().await;
}

/// `install add file` alone, then `install activate auto-abort-timer 30`, confirmed; returns
/// once the session is closed by the reload.
async fn add_then_activate_with_timer(vty: &mut Vty, host: &str) {
    let p = format!("{host}#");
    let out = vty.cmd(&format!("install add file flash:{XE}"), &p).await;
    assert_line(&out, r"^install_add: START ");
    assert_line(&out, r"^SUCCESS: install_add ");
    let summary = vty.cmd("show install summary", &p).await;
    assert_line(&summary, r"^IMG   I    17\.09\.04a\.0\.1\r$");
    vty.send("install activate auto-abort-timer 30\n").await;
    let out = vty.expect(r"Do you want to proceed\? \[y/n\]$").await;
    assert_line(&out, r"^install_activate: START ");
    vty.send("y\n").await;
    let tail = vty.wait_closed().await;
    assert_line(&tail, r"^SUCCESS: install_activate ");
}

#[tokio::test]
async fn auto_abort_timer_commit_stops_it_and_abort_rolls_back() {
    let data = pseudo_random_bytes(80_000, 25);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    // A timer minute of a minute: nothing here may wait for it.
    let lab = TestLab::start(2, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c9300".into()];
    })
    .await;
    for k in 0..2 {
        let host = format!("lab-sw-{:03}", k + 1);
        let p = format!("{host}#");
        let mut vty = enabled(lab.ssh(k), &host).await;
        copy_tftp_to(&mut vty, ip, XE, "flash:", &host).await;
        add_then_activate_with_timer(&mut vty, &host).await;
        assert!(lab.lab.wait_until_up(&host).await);
        let s = lab.lab.state(&host).unwrap();
        assert_eq!((s.version.as_str(), s.reload_count), ("17.09.04a", 1));
        assert!(s.install_uncommitted && s.abort_timer_running);
        let mut vty = enabled(lab.ssh(k), &host).await;
        let summary = vty.cmd("show install summary", &p).await;
        assert_line(&summary, r"^IMG   U    17\.09\.04a\.0\.1\r$");
        assert_line(&summary, r"^IMG   D    17\.06\.05\.0\.1\r$");
        assert_line(
            &summary,
            r"^Auto abort timer: active on install_activate, time before rollback - 00:(29|30):\d\d\r$",
        );
        if k == 0 {
            let out = vty.cmd("install commit", &p).await;
            assert_line(&out, r"^install_commit: START ");
            assert_line(&out, r"^SUCCESS: install_commit ");
            let summary = vty.cmd("show install summary", &p).await;
            assert_line(&summary, r"^IMG   C    17\.09\.04a\.0\.1\r$");
            assert_line(&summary, r"^Auto abort timer: inactive\r$");
            let s = lab.lab.state(&host).unwrap();
            assert!(!s.install_uncommitted && !s.abort_timer_running);
            assert_eq!((s.version.as_str(), s.reload_count), ("17.09.04a", 1));
            // Nothing left to abort.
            let out = vty.cmd("install abort", &p).await;
            assert_line(&out, r"^FAILED: install_abort ");
            assert_eq!(lab.lab.state(&host).unwrap().reload_count, 1);
        } else {
            vty.send("install abort\n").await;
            vty.expect(
                r"This install abort would require a reload\. Do you want to proceed\? \[y/n\]$",
            )
            .await;
            vty.send("y\n").await;
            let tail = vty.wait_closed().await;
            assert_line(&tail, r"^SUCCESS: install_abort ");
            assert!(lab.lab.wait_until_up(&host).await);
            let s = lab.lab.state(&host).unwrap();
            assert_eq!((s.version.as_str(), s.reload_count), ("17.06.05", 2));
            assert!(!s.install_uncommitted && !s.abort_timer_running);
            let mut vty = enabled(lab.ssh(k), &host).await;
            let summary = vty.cmd("show install summary", &p).await;
            assert_line(&summary, r"^IMG   C    17\.06\.05\.0\.1\r$");
        }
    }
    lab.stop().await;
}

#[tokio::test]
async fn no_return_until_abort_comes_back_on_the_old_version_when_the_timer_expires() {
    let data = pseudo_random_bytes(80_000, 26);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    // 30 timer minutes last 0.6 s here.
    let lab = TestLab::start(1, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c9300".into()];
        c.abort_timer_minute = Duration::from_millis(20);
    })
    .await;
    let host = "lab-sw-001";
    assert_eq!(set_fault(&lab, host, "no-return-until-abort").await, 200);
    let mut vty = enabled(lab.ssh(0), host).await;
    copy_tftp_to(&mut vty, ip, XE, "flash:", host).await;
    add_then_activate_with_timer(&mut vty, host).await;
    assert!(lab.lab.wait_until_up(host).await);
    let s = lab.lab.state(host).unwrap();
    // Activation and the timer's rollback: two reloads, and the old version committed.
    assert_eq!((s.version.as_str(), s.reload_count), ("17.06.05", 2));
    assert!(!s.install_uncommitted && !s.abort_timer_running);
    let mut vty = enabled(lab.ssh(0), host).await;
    let summary = vty.cmd("show install summary", &format!("{host}#")).await;
    assert_line(&summary, r"^IMG   C    17\.06\.05\.0\.1\r$");
    assert_line(&summary, r"^Auto abort timer: inactive\r$");
    lab.stop().await;
}

#[test]
fn interface_down_after_reload_is_the_link_down_fault() {
    let f: fleetup::sim::Fault = "interface-down-after-reload".parse().unwrap();
    assert_eq!(f.to_string(), "link-down-after-reload");
    let f: fleetup::sim::Fault = "stack-member-lost".parse().unwrap();
    assert_eq!(f, fleetup::sim::Fault::StackMemberLost);
}
