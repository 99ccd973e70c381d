//! `checks.compare` end to end on the lab: the state taken before the changes (up interfaces,
//! CDP neighbours, route count, each parsed by fleetup) must hold after the reload.

use fleetup::sim::Fault;
use serde_json::Value;

use crate::support::*;

const COMPARE: &str = "strategy:\n  canary: 0\n  max_failures: 1\nchecks:\n  compare:\n    - up_interfaces\n    - neighbors: {protocol: cdp}\n    - routes: {tolerance: 5%}\n";

/// The messages of one device's step events.
fn messages(events: &[Value], device: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["device"] == device)
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_device_holds_its_state_across_the_reload() {
    let rig = Rig::start(1, |_| {}).await;
    let name = rig.names()[0].clone();
    let id = rig.submit(&playbook(COMPARE)).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    let events = rig.events(&id).await;
    let m = messages(&events, &name);
    // The state before: counts read from the lab's outputs, not zero.
    let before = m
        .iter()
        .find(|l| l.starts_with("state before the upgrade: "))
        .unwrap_or_else(|| panic!("{m:#?}"));
    assert!(before.contains("up interfaces "), "{before}");
    assert!(before.contains("CDP neighbours 2"), "{before}");
    assert!(!before.contains("routes 0"), "{before}");
    // After: each comparison held, with its before → after.
    let compared: Vec<&String> = m.iter().filter(|l| l.starts_with("compared: ")).collect();
    assert_eq!(compared.len(), 3, "{m:#?}");
    assert!(
        compared[0].starts_with("compared: up interfaces ") && !compared[0].contains('('),
        "{compared:?}"
    );
    assert_eq!(compared[1], "compared: CDP neighbours 2 → 2");
    assert!(compared[2].contains("(+0%, tolerance 5%)"), "{compared:?}");

    // The report carries the same lines.
    let report: Value = rig
        .get(&format!("/api/v1/rollouts/{id}/report"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines = report["devices"][0]["compared"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{report:#}");
    assert_eq!(lines[1], "CDP neighbours 2 → 2");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_that_stays_down_fails_its_device_at_post_check_naming_it() {
    let rig = Rig::start(3, |_| {}).await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[1], Fault::LinkDownAfterReload));
    let id = rig.submit(&playbook(COMPARE)).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed_with_failures", "{d:#}");
    for n in [&names[0], &names[2]] {
        assert_eq!(job_of(&d, n)["state"], "succeeded", "{d:#}");
    }

    // The uplink the fault left down (the c2960x's GigabitEthernet1/0/1 to dist-sw1).
    let down = rig.lab.state(&names[1]).unwrap().links_down;
    assert_eq!(down, ["GigabitEthernet1/0/1"]);
    let failed = job_of(&d, &names[1]);
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.starts_with("post_check failed (check_failed): "),
        "{error}"
    );
    assert!(
        error.contains("GigabitEthernet1/0/1 was up before the upgrade and is down now"),
        "{error}"
    );
    assert!(
        error.contains("CDP neighbour dist-sw1 on Gig1/0/1 is missing"),
        "{error}"
    );
    // The OSPF routes learned over the uplink are gone too.
    assert!(error.contains("routes: "), "{error}");
    // The device runs the new image: only the comparison failed it.
    let st = rig.lab.state(&names[1]).unwrap();
    assert_eq!(st.reload_count, 1);

    // `fleetup rollout report`: a before → after line per comparison under each device.
    let out = rig.fleetup(&["rollout", "report", &id]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("up interfaces ") && text.contains("(GigabitEthernet1/0/1 down)"),
        "{text}"
    );
    assert!(
        text.contains("CDP neighbours 2 → 1 (dist-sw1 on Gig1/0/1 missing)"),
        "{text}"
    );
    assert_eq!(
        text.matches("CDP neighbours 2 → 2").count(),
        2,
        "the healthy devices: {text}"
    );
    // The CSV for the change ticket: the lines in the `compared` column.
    let out = rig.fleetup(&["rollout", "report", &id, "--csv"]).await;
    assert_success(&out);
    let csv = stdout(&out);
    assert!(
        csv.lines().next().unwrap().ends_with(",error,compared"),
        "{csv}"
    );
    let row = csv
        .lines()
        .find(|l| l.starts_with(names[1].as_str()))
        .unwrap();
    assert!(
        row.contains("; CDP neighbours 2 → 1 (dist-sw1 on Gig1/0/1 missing); routes "),
        "{row}"
    );
    rig.stop().await;
}

/// IOS-XE and NX-OS: the platform's own commands (NX-OS `show interface brief`, its CDP table
/// and `Total number of routes:`), parsed the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn iosxe_and_nxos_compare_with_their_own_commands() {
    let rig = Rig::start(2, |c| c.personas = vec!["c9300".into(), "n9k".into()]).await;
    let names = rig.names();
    let (iosxe, nxos) = ("cat9k_iosxe.17.09.04a.SPA.bin", "nxos.10.2.5.bin");
    for (i, file) in [iosxe, nxos].into_iter().enumerate() {
        let path = rig.dir.path().join(file);
        write_random_file(&path, 300_000, 7 + i as u64);
        let r = rig
            .post("/api/v1/images")
            .multipart(multipart_file(&path, file))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    assert!(rig.lab.set_fault(&names[1], Fault::LinkDownAfterReload));
    let pb = playbook(COMPARE).replace(
        &format!("  ios: {IMAGE}\n"),
        &format!("  iosxe: {iosxe}\n  nxos: {nxos}\n"),
    );
    let id = rig.submit(&pb).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed_with_failures", "{d:#}");
    assert_eq!(job_of(&d, &names[0])["state"], "succeeded", "{d:#}");

    let events = rig.events(&id).await;
    let m = messages(&events, &names[0]);
    assert!(
        m.iter().any(|l| l.contains("CDP neighbours 2 → 2")),
        "{m:#?}"
    );
    let m = messages(&events, &names[1]);
    assert!(
        m.iter().any(|l| l.starts_with("take the state to compare after the reload: show interface brief, show cdp neighbors, show ip route summary")),
        "{m:#?}"
    );
    let down = rig.lab.state(&names[1]).unwrap().links_down;
    assert_eq!(down, ["Ethernet1/49"], "{:#}", job_of(&d, &names[1]));
    let error = job_of(&d, &names[1])["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("post_check failed (check_failed): "),
        "{error}"
    );
    assert!(
        error.contains("Eth1/49 was up before the upgrade and is down now"),
        "{error}"
    );
    assert!(error.contains("CDP neighbour spine1"), "{error}");
    rig.stop().await;
}

/// The state before is kept with the job: `fleetup serve` killed while the devices reload,
/// then started again, still compares against it. The healthy device passes every comparison,
/// the one whose uplink stays down fails naming it, and each was reloaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_state_before_survives_a_restart_of_fleetup_during_the_reload() {
    let mut rig = Rig::options(2)
        .lab(|c| c.boot_time = std::time::Duration::from_secs(5))
        .serve_process()
        .start()
        .await;
    let names = rig.names();
    assert!(rig.lab.set_fault(&names[1], Fault::LinkDownAfterReload));
    let id =
        rig.submit(&playbook(
            &COMPARE.replace("max_failures: 1", "max_failures: 1\n  concurrency: 2"),
        ))
        .await;
    // Both reloads sent (the lab counted them): the states before were taken and kept, the
    // comparisons after are still to come.
    eventually("both devices reloading", || async {
        names
            .iter()
            .all(|n| rig.lab.state(n).is_some_and(|st| st.reload_count >= 1))
            .then_some(())
    })
    .await;
    rig.kill_serve();
    rig.start_serve().await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed_with_failures", "{d:#}");

    let events = rig.events(&id).await;
    for n in &names {
        assert_eq!(rig.lab.state(n).unwrap().reload_count, 1, "{n}");
        let m = messages(&events, n);
        assert!(
            !m.iter().any(|l| l.contains("checks.compare skipped")),
            "{n}: {m:#?}"
        );
    }
    let healthy = messages(&events, &names[0]);
    let compared: Vec<&String> = healthy
        .iter()
        .filter(|l| l.starts_with("compared: "))
        .collect();
    assert_eq!(compared.len(), 3, "{healthy:#?}");
    assert_eq!(compared[1], "compared: CDP neighbours 2 → 2");
    assert_eq!(job_of(&d, &names[0])["state"], "succeeded", "{d:#}");

    let failed = job_of(&d, &names[1]);
    assert_eq!(failed["state"], "failed", "{failed:#}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("post_check failed (check_failed): ")
            && error.contains("GigabitEthernet1/0/1 was up before the upgrade and is down now"),
        "{error}"
    );
    rig.stop().await;
}
