//! Golden images and compliance over a real lab: precedence as docs/golden.md states it
//! (model over platform, platform over site, site over global), each status, the CLI and its
//! CSV, the `fleetup_compliance_devices` gauge, `image: golden` upgrading lab devices, and
//! `serve --facts-refresh` reading facts in the background, never on a device in a rollout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    IMAGE, IMAGE_VERSION, Rig, TOKEN, assert_success, eventually, multipart_file, stdout,
    write_random_file,
};

/// The version lab c2960x devices boot with, and images named for versions around it.
const LAB_VERSION: &str = "15.2(4)E10";
const IMAGE_E10: &str = "c2960x-universalk9-mz.152-4.E10.bin";
const IMAGE_E5: &str = "c2960x-universalk9-mz.152-2.E5.bin";
const IMAGE_E9: &str = "c2960x-universalk9-mz.152-7.E9.bin";
const LAB_MODEL: &str = "WS-C2960X-48FPD-L";

struct Api<'a> {
    rig: &'a Rig,
    http: reqwest::Client,
}

impl<'a> Api<'a> {
    fn new(rig: &'a Rig) -> Self {
        Api {
            rig,
            http: fleetup::http_client::client(),
        }
    }

    async fn add_image(&self, name: &str, seed: u64) {
        let path = self.rig.dir.path().join(name);
        write_random_file(&path, 4096, seed);
        let r = self
            .rig
            .post("/api/v1/images")
            .multipart(multipart_file(&path, name))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
    }

    async fn set(&self, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .put(self.rig.url("/api/v1/golden"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn unset(&self, query: &str) -> StatusCode {
        self.http
            .delete(self.rig.url(&format!("/api/v1/golden{query}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn compliance(&self) -> Value {
        let r = self.rig.get("/api/v1/compliance").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn read_facts(&self, name: &str) {
        let r = self
            .rig
            .post(&format!("/api/v1/devices/{name}/facts"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }

    async fn import(&self, yaml: &str) {
        let r = self
            .rig
            .post("/api/v1/inventory/import")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

fn device<'v>(report: &'v Value, name: &str) -> &'v Value {
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn counts<'v>(report: &'v Value, group: &str, name: &str) -> &'v Value {
    report[group]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {group} {name} in {report:#}"))
}

/// Devices that are never logged in to: their scope decides their golden image.
const PAPER_DEVICES: &str = "devices:
  - {name: fra-ios, host: 192.0.2.1, platform: ios, model: C2960-OTHER, site: fra}
  - {name: fra-nx, host: 192.0.2.2, platform: nxos, site: fra}
  - {name: nx-core, host: 192.0.2.3, platform: nxos, groups: [core]}
  - {name: nx-plain, host: 192.0.2.4, platform: nxos}
";

#[tokio::test]
async fn golden_precedence_and_every_status() {
    let rig = Rig::start(2, |_| {}).await;
    let api = Api::new(&rig);
    api.add_image(IMAGE_E10, 1).await;
    api.add_image(IMAGE_E5, 2).await;
    api.import(PAPER_DEVICES).await;
    let lab = rig.names();

    // Refused: an image not in the store, a bad label, no token.
    let (status, body) = api.set(json!({"image": "nope.bin"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the image store")
    );
    let (status, _) = api.set(json!({"image": IMAGE, "site": "a b"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = fleetup::http_client::client()
        .put(rig.url("/api/v1/golden"))
        .json(&json!({"image": IMAGE}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    for body in [
        json!({"image": IMAGE}),
        json!({"image": IMAGE_E5, "platform": "ios"}),
        json!({"image": IMAGE_E10, "model": LAB_MODEL}),
        json!({"image": IMAGE_E10, "site": "fra"}),
        json!({"image": IMAGE_E5, "role": "core"}),
    ] {
        let (status, v) = api.set(body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {v}");
    }
    let list: Value = rig
        .get("/api/v1/golden")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["golden"].as_array().unwrap().len(), 5, "{list:#}");
    let model_entry = list["golden"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["scope"] == format!("model={LAB_MODEL}"))
        .unwrap();
    assert_eq!(model_entry["version"], LAB_VERSION);

    let report = api.compliance().await;
    let scope_of = |name: &str| device(&report, name)["golden_scope"].clone();
    // Model over platform (the lab devices are ios too).
    assert_eq!(scope_of(&lab[0]), format!("model={LAB_MODEL}"));
    assert_eq!(device(&report, &lab[0])["golden_image"], IMAGE_E10);
    // Platform over site.
    assert_eq!(scope_of("fra-ios"), "platform=ios");
    // Site over global, site over role, role over global.
    assert_eq!(scope_of("fra-nx"), "site=fra");
    assert_eq!(scope_of("nx-core"), "role=core");
    assert_eq!(scope_of("nx-plain"), "global");

    // unknown: no facts yet.
    assert_eq!(device(&report, &lab[0])["status"], "unknown", "{report:#}");
    for n in &lab {
        api.read_facts(n).await;
    }
    // compliant: the lab runs the model's golden version.
    let report = api.compliance().await;
    for n in &lab {
        assert_eq!(device(&report, n)["status"], "compliant", "{report:#}");
        assert_eq!(device(&report, n)["version"], LAB_VERSION);
    }
    let lab_site = counts(&report, "sites", "lab");
    assert_eq!(lab_site["compliant"], 2, "{report:#}");
    assert_eq!(counts(&report, "sites", "fra")["unknown"], 2);
    assert_eq!(counts(&report, "models", LAB_MODEL)["compliant"], 2);

    // outdated: the golden image is later than what runs.
    api.set(json!({"image": IMAGE, "model": LAB_MODEL})).await;
    let report = api.compliance().await;
    assert_eq!(device(&report, &lab[0])["status"], "outdated", "{report:#}");
    assert_eq!(device(&report, &lab[0])["golden_version"], IMAGE_VERSION);

    // ahead: the golden image is earlier.
    api.set(json!({"image": IMAGE_E5, "model": LAB_MODEL}))
        .await;
    let report = api.compliance().await;
    assert_eq!(device(&report, &lab[1])["status"], "ahead", "{report:#}");

    // The gauge per site and status.
    let metrics = rig.get_text("/metrics").await;
    assert!(
        metrics.contains("fleetup_compliance_devices{site=\"lab\",status=\"ahead\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fleetup_compliance_devices{site=\"fra\",status=\"unknown\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE fleetup_compliance_devices gauge"));

    // Unset: the model's entry gone, the platform's applies; the global gone, nothing does.
    assert_eq!(
        api.unset(&format!("?model={LAB_MODEL}")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.unset(&format!("?model={LAB_MODEL}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.unset("").await, StatusCode::NO_CONTENT);
    let report = api.compliance().await;
    assert_eq!(device(&report, &lab[0])["golden_scope"], "platform=ios");
    let plain = device(&report, "nx-plain");
    assert_eq!(plain["status"], "unknown");
    assert!(plain["golden_image"].is_null(), "{plain}");
    assert_eq!(plain["reason"], "no golden image applies");

    // A site's report holds only that site.
    let r: Value = rig
        .get("/api/v1/compliance?site=fra")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["devices"].as_array().unwrap().len(), 2, "{r:#}");
}

#[tokio::test]
async fn golden_and_compliance_from_the_cli_with_csv() {
    let rig = Rig::options(2).cli_setup("").start().await;
    let out = rig
        .fleetup(&["golden", "set", IMAGE, "--platform", "ios", "--site", "lab"])
        .await;
    assert_success(&out);
    assert!(
        stdout(&out).contains("platform=ios,site=lab"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains(IMAGE_VERSION), "{}", stdout(&out));
    let out = rig.fleetup(&["golden", "set", "missing.bin"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not in the image store"),
        "{out:?}"
    );

    let out = rig.fleetup(&["golden", "list"]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("platform=ios,site=lab") && text.contains(IMAGE),
        "{text}"
    );
    assert!(text.contains("1 golden image(s)"), "{text}");

    for n in rig.names() {
        assert_success(&rig.fleetup(&["device", "facts", &n]).await);
    }
    let out = rig.fleetup(&["compliance", "--csv"]).await;
    assert_success(&out);
    let csv = stdout(&out);
    // Read by Python's csv module, as a spreadsheet or script would.
    let rows = read_csv(&csv);
    let header = &rows[0];
    assert_eq!(header[0], "device");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 3, "{csv}");
    for row in &rows[1..] {
        assert_eq!(row.len(), header.len(), "{csv}");
        assert_eq!(row[col("status")], "outdated", "{csv}");
        assert_eq!(row[col("version")], LAB_VERSION, "{csv}");
        assert_eq!(row[col("golden_scope")], "platform=ios,site=lab", "{csv}");
        assert_eq!(
            row[col("reason")],
            format!("runs {LAB_VERSION}, golden {IMAGE_VERSION}")
        );
    }

    let out = rig.fleetup(&["compliance", "--site", "lab"]).await;
    assert_success(&out);
    let text = stdout(&out);
    assert!(
        text.contains("outdated") && text.contains("COMPLIANT"),
        "{text}"
    );
    let out = rig
        .fleetup(&["compliance", "--site", "elsewhere", "--csv"])
        .await;
    assert_success(&out);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));

    let out = rig
        .fleetup(&["golden", "unset", "--platform", "ios", "--site", "lab"])
        .await;
    assert_success(&out);
    let out = rig.fleetup(&["golden", "unset", "--platform", "ios"]).await;
    assert!(!out.status.success(), "{out:?}");
    let out = rig.fleetup(&["golden", "list"]).await;
    assert!(
        stdout(&out).contains("0 golden image(s)"),
        "{}",
        stdout(&out)
    );
}

/// The rows of a CSV text as Python's `csv` module reads them.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn golden_playbook() -> String {
    "name: to-golden\ntargets:\n  groups: [lab]\nimage: golden\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\nstrategy:\n  timeouts: {poll: 1}\n"
        .to_string()
}

#[tokio::test]
async fn image_golden_upgrades_lab_devices_to_their_golden_images() {
    let rig = Rig::start(2, |_| {}).await;
    let api = Api::new(&rig);
    api.add_image(IMAGE_E9, 3).await;
    let lab = rig.names();

    // No golden image applies yet: refused at `image:`, naming the devices.
    let r = rig
        .post("/api/v1/rollouts")
        .header("content-type", "application/yaml")
        .body(golden_playbook())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no golden image applies") && message.contains(&lab[0]),
        "{body}"
    );
    assert_eq!(body["error"]["line"], 4, "{body}");

    // One device of its own: a role (tag) entry for lab[1] only, the model's for the rest.
    api.set(json!({"image": IMAGE, "model": LAB_MODEL})).await;
    let (status, _) = api
        .set(json!({"image": IMAGE_E9, "model": LAB_MODEL, "role": "pinned"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut yaml = rig.lab.inventory_yaml();
    let marker = format!("  - name: {}\n", lab[1]);
    assert!(yaml.contains(&marker), "{yaml}");
    yaml = yaml.replace(&marker, &format!("{marker}    tags: [pinned]\n"));
    api.import(&yaml).await;

    let id = rig.submit(&golden_playbook()).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(crate::support::job_of(&d, &lab[0])["image"], IMAGE, "{d:#}");
    assert_eq!(
        crate::support::job_of(&d, &lab[1])["image"],
        IMAGE_E9,
        "{d:#}"
    );
    assert_eq!(rig.lab.state(&lab[0]).unwrap().version, IMAGE_VERSION);
    assert_eq!(rig.lab.state(&lab[1]).unwrap().version, "15.2(7)E9");

    let report = api.compliance().await;
    for n in &lab {
        assert_eq!(device(&report, n)["status"], "compliant", "{report:#}");
    }
    assert_eq!(
        device(&report, &lab[1])["golden_scope"],
        format!("model={LAB_MODEL},role=pinned")
    );
}

#[tokio::test]
async fn facts_refresh_reads_every_device_in_the_background() {
    let rig = Rig::options(3)
        .serve(|a| {
            a.facts_refresh = fleetup::golden::refresh::Interval(Some(Duration::from_secs(1)));
        })
        .start()
        .await;
    let api = Api::new(&rig);
    api.set(json!({"image": IMAGE})).await;
    // Nobody asks for facts: the refresh reads them, and compliance follows.
    let report = eventually("every device's facts read in the background", || async {
        let report = api.compliance().await;
        report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "outdated")
            .then_some(report)
    })
    .await;
    for d in report["devices"].as_array().unwrap() {
        assert_eq!(d["version"], LAB_VERSION, "{report:#}");
        assert!(d["last_seen"].is_string());
    }
    // And again: a later read moves `last_seen`.
    let first = device(&report, &rig.names()[0])["last_seen"].clone();
    eventually("a second read", || async {
        let report = api.compliance().await;
        (device(&report, &rig.names()[0])["last_seen"] != first).then_some(())
    })
    .await;
}

#[tokio::test]
async fn facts_refresh_leaves_a_device_in_a_rollout_alone() {
    let rig = Rig::options(2)
        .serve(|a| {
            a.facts_refresh = fleetup::golden::refresh::Interval(Some(Duration::from_secs(1)));
        })
        .start()
        .await;
    let lab = rig.names();
    // lab[0] is in a rollout that starts in 2099: its job is pending, the rollout not ended.
    let id = rig
        .submit(&format!(
            "name: later\ntargets:\n  names: [{}]\nimage:\n  ios: {IMAGE}\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\nschedule:\n  start_at: 2099-01-01T00:00:00Z\n",
            lab[0]
        ))
        .await;
    // Rounds are sequential and each reads the free lab[1] once, so its `last_seen` counts
    // them. A round already under way at the submission may still read lab[0]; two changes
    // later it has ended. From then on, three more rounds read lab[1] and never lab[0].
    let seen = |name: String| {
        let rig = &rig;
        async move {
            let d: Value = rig
                .get(&format!("/api/v1/devices/{name}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            d["facts"]["last_seen"].as_str().map(str::to_string)
        }
    };
    let next_round = |after: Option<String>| {
        let seen = &seen;
        let free = lab[1].clone();
        async move {
            eventually("a background read of the free device", || async {
                seen(free.clone())
                    .await
                    .filter(|s| Some(s) != after.as_ref())
            })
            .await
        }
    };
    let reads_of = |name: &str| {
        rig.lab
            .state(name)
            .unwrap()
            .last_commands
            .iter()
            .filter(|c| *c == "show version")
            .count()
    };
    let mut last = seen(lab[1].clone()).await;
    for _ in 0..2 {
        last = Some(next_round(last).await);
    }
    let before = reads_of(&lab[0]);
    for _ in 0..3 {
        last = Some(next_round(last).await);
    }
    assert_eq!(
        reads_of(&lab[0]),
        before,
        "lab[0] was read while in a rollout"
    );
    let d = rig.detail(&id).await;
    assert_eq!(d["state"], "scheduled", "{d:#}");
}
