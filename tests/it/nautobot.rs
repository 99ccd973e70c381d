//! `fleetup inventory sync --from nautobot` against a real Nautobot (PyPI's, on Debian's
//! PostgreSQL and Redis), which `scripts/nautobot up` starts and scripts/test runs these tests
//! against in its own stage. Devices are made, changed and removed through Nautobot's own API
//! (`nautobot_api.rs`). Each run works in names, a tag and addresses of its own, so runs against
//! the same Nautobot never meet.

use serde_json::{Value, json};

use crate::nautobot_api::{Nautobot, run_tag};
use crate::support::{IMAGE_VERSION, Rig, TOKEN, TestApp, eventually};
use crate::sync::{device, names};

/// A tag of this run's own, on dcim.device; its name.
async fn run_tag_in(nb: &Nautobot, run: &str) -> String {
    let name = format!("run-{run}");
    nb.post(
        "/api/extras/tags/",
        &json!({"name": name, "content_types": ["dcim.device"]}),
    )
    .await;
    name
}

async fn sync(app_url: &str, nb: &Nautobot, args: &[&str]) -> Value {
    let mut all = vec![
        "inventory",
        "sync",
        "--from",
        "nautobot",
        "--url",
        nb.url(),
        "--token-env",
        "NAUTOBOT_TOKEN",
        "--json",
    ];
    all.extend_from_slice(args);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(&all)
        .env("FLEETUP_SERVER", app_url)
        .env("FLEETUP_API_TOKEN", TOKEN)
        .env("NAUTOBOT_TOKEN", nb.token())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{all:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn device_count(app: &TestApp) -> u64 {
    let v: Value = app
        .get("/api/v1/devices?limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Nautobot: scripts/test starts one (scripts/nautobot up)"]
async fn nautobot_devices_are_added_changed_removed_and_readded() {
    let nb = Nautobot::from_env_or_panic();
    nb.seed().await;
    let (run, [a, b]) = run_tag();
    let tag = run_tag_in(&nb, &run).await;
    let name = |n: &str| format!("{n}-{run}");
    let ip = |k: u8| format!("127.{a}.{b}.{k}");
    let acc1 = nb
        .create_device(
            &name("acc1"),
            "site-a",
            "access",
            "Cisco IOS-XE",
            "C9300-48P",
            &[&tag, "fleetup-canary"],
            Some(&format!("{}/24", ip(11))),
        )
        .await;
    let acc2 = nb
        .create_device(
            &name("acc2"),
            "site-a",
            "access",
            "Cisco IOS",
            "C9300-48P",
            &[&tag],
            Some(&ip(12)),
        )
        .await;
    let core1 = nb
        .create_device(
            &name("core1"),
            "site-b",
            "core",
            "Cisco NX-OS",
            "N9K-C93180YC-FX",
            &[&tag],
            Some(&ip(13)),
        )
        .await;
    // No primary IP: fleetup cannot reach it, says so, and never marks it gone.
    nb.create_device(
        &name("acc3"),
        "site-a",
        "access",
        "Cisco IOS-XE",
        "C9300-48P",
        &[&tag],
        None,
    )
    .await;

    let app = TestApp::start().await;
    let url = app.service.base_url();
    let filter = format!("tag={tag}");
    let base = ["--filter", filter.as_str()];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };

    // The dry run: the difference, nothing written.
    let dry = sync(
        &url,
        &nb,
        &with(&[
            "--dry-run",
            "--username",
            "netops",
            "--password-env",
            "DEVICE_PW",
        ]),
    )
    .await;
    assert_eq!(
        names(&dry["added"]),
        [name("acc1"), name("acc2"), name("core1")]
    );
    let skipped = dry["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{dry:#}");
    assert_eq!(skipped[0]["name"], name("acc3").as_str());
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no primary IP")
    );
    assert_eq!(device_count(&app).await, 0, "the dry run wrote");

    // The sync: Nautobot's location, role, network driver, tags and primary IP.
    let done = sync(
        &url,
        &nb,
        &with(&["--username", "netops", "--password-env", "DEVICE_PW"]),
    )
    .await;
    assert_eq!(names(&done["added"]), names(&dry["added"]));
    let d = device(&app, &name("acc1")).await;
    assert_eq!(d["host"], ip(11));
    assert_eq!(d["platform"], "iosxe");
    assert_eq!(d["site"], "site-a");
    assert_eq!(d["groups"], json!(["access"]));
    assert_eq!(d["model"], "C9300-48P");
    let mut tags = vec![tag.clone(), "fleetup-canary".to_string()];
    tags.sort();
    assert_eq!(d["tags"], json!(tags));
    assert_eq!(d["username"], "netops");
    assert_eq!(d["password_env"], "DEVICE_PW");
    assert_eq!(d["source"]["id"], acc1.as_str());
    assert_eq!(device(&app, &name("acc2")).await["platform"], "ios");
    let core = device(&app, &name("core1")).await;
    assert_eq!(
        (core["platform"].as_str(), core["site"].as_str()),
        (Some("nxos"), Some("site-b"))
    );

    // Changes in Nautobot: a new address, another role; a device deleted.
    nb.set_primary_ip(&acc2, &ip(22)).await;
    let core_role = nb.id_by_name("/api/extras/roles/", "core").await;
    nb.update_device(&acc1, &json!({"role": core_role})).await;
    nb.delete_device(&core1).await;
    let dry = sync(&url, &nb, &with(&["--dry-run"])).await;
    assert_eq!(names(&dry["gone"]), [name("core1")]);
    assert_eq!(names(&dry["changed"]), [name("acc1"), name("acc2")]);
    assert_eq!(
        device(&app, &name("acc2")).await["host"],
        ip(12),
        "the dry run wrote"
    );
    let again = sync(&url, &nb, &with(&[])).await;
    assert_eq!(names(&again["gone"]), [name("core1")]);
    for c in again["changed"].as_array().unwrap() {
        let fields: Vec<&str> = c["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        let want = if c["name"] == name("acc1").as_str() {
            vec!["groups"]
        } else {
            vec!["host"]
        };
        assert_eq!(fields, want, "{c}");
    }
    assert_eq!(device(&app, &name("acc2")).await["host"], ip(22));
    assert_eq!(device(&app, &name("acc1")).await["groups"], json!(["core"]));
    // Deleted from Nautobot: kept, absent, with its history.
    let gone = device(&app, &name("core1")).await;
    assert!(gone["source"]["absent_since"].is_string(), "{gone:#}");

    // Absent devices are never targeted: not by name, not by `all`.
    crate::sync::assert_never_targeted(&app, &name("core1")).await;

    // Made again in Nautobot (a new id): it comes back, linked to its new id.
    let core1_again = nb
        .create_device(
            &name("core1"),
            "site-b",
            "core",
            "Cisco NX-OS",
            "N9K-C93180YC-FX",
            &[&tag],
            Some(&ip(13)),
        )
        .await;
    let back = sync(&url, &nb, &with(&[])).await;
    assert_eq!(names(&back["returned"]), [name("core1")]);
    let core = device(&app, &name("core1")).await;
    assert!(core["source"]["absent_since"].is_null());
    assert_eq!(core["source"]["id"], core1_again.as_str());

    // A narrower filter is a scope of its own: site-b of this run's tag takes core1 over and
    // leaves the others alone.
    let site_b = format!("tag={tag},site=site-b");
    let narrow = sync(&url, &nb, &["--filter", &site_b]).await;
    assert!(narrow["added"].as_array().unwrap().is_empty(), "{narrow:#}");
    assert!(narrow["gone"].as_array().unwrap().is_empty(), "{narrow:#}");
    assert_eq!(names(&narrow["changed"]), [name("core1")]);
    // Nautobot's own role filter, checked on each record too.
    let core_only = format!("tag={tag},role=core");
    let roles = sync(&url, &nb, &["--filter", &core_only, "--dry-run"]).await;
    assert_eq!(
        names(&roles["changed"]),
        [name("acc1"), name("core1")],
        "{roles:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Nautobot: scripts/test starts one (scripts/nautobot up)"]
async fn nautobot_gets_the_running_version_back_after_a_lab_upgrade() {
    use fleetup::sync::source::{Source, parse_url};
    use fleetup::sync::{Filter, PlatformMap, SourceKind};

    let nb = Nautobot::from_env_or_panic();
    nb.seed().await;
    let (run, _) = run_tag();
    let tag = run_tag_in(&nb, &run).await;
    // Nautobot holds the lab's device under the lab's name and address.
    let base = crate::support::random_base();
    let prefix = format!("wb{run}-");
    let lab_name = format!("{prefix}001");
    let id = nb
        .create_device(
            &lab_name,
            "site-a",
            "access",
            "Cisco IOS",
            "C9300-48P",
            &[&tag],
            Some(&base.to_string()),
        )
        .await;
    assert_eq!(nb.custom_field(&id, "fleetup_version").await, None);
    let source = Source {
        kind: SourceKind::Nautobot,
        url: parse_url(nb.url()).unwrap(),
        token: nb.token().to_string(),
        filter: Filter::parse(&format!("tag={tag}")).unwrap(),
        platforms: PlatformMap::default(),
    };
    let scheduled = crate::sync::writing_back(source);
    let rig = Rig::options(1)
        .lab(move |c| {
            c.base_ip = base;
            c.name_prefix = prefix;
        })
        .serve(move |a| a.sync = vec![scheduled])
        .start()
        .await;
    assert_eq!(crate::sync::linked_source_id(&rig, &lab_name).await, id);
    // The sync made Nautobot's role the device's group: target it by name.
    let pb = crate::support::playbook("").replace(
        "targets:\n  groups: [lab]\n",
        &format!("targets:\n  names: [{lab_name}]\n"),
    );
    let rollout = rig.submit(&pb).await;
    let end = rig.wait_end(&rollout).await;
    assert_eq!(end["state"], "completed", "{end:#}");
    let written = eventually("the version written back to Nautobot", || async {
        nb.custom_field(&id, "fleetup_version").await
    })
    .await;
    assert_eq!(written, IMAGE_VERSION);
}
