//! `fleetup inventory sync --from netbox`, on NetBox's own answers: the device lists recorded in
//! tests/fixtures/netbox (their origin is in its README), served page by page by a local HTTP
//! server that checks the token as NetBox does. The real-server test is `nautobot.rs`.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::support::{TOKEN, TestApp};

const NETBOX_TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
const PAGE: usize = 3;

/// The query pairs of one request.
type QueryPairs = Vec<(String, String)>;

#[derive(Clone, Default)]
struct NetBox {
    devices: Arc<Mutex<Vec<Value>>>,
    /// The query strings of the device-list requests, in order.
    queries: Arc<Mutex<Vec<QueryPairs>>>,
    /// The PATCH requests: device id and body.
    patches: Arc<Mutex<Vec<(String, Value)>>>,
}

impl NetBox {
    fn recorded() -> NetBox {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netbox");
        let mut devices = Vec::new();
        for page in ["devices-page1.json", "devices-page2.json"] {
            let text = std::fs::read_to_string(dir.join(page)).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            devices.extend(v["results"].as_array().unwrap().iter().cloned());
        }
        NetBox {
            devices: Arc::new(Mutex::new(devices)),
            ..Default::default()
        }
    }

    fn edit(&self, f: impl FnOnce(&mut Vec<Value>)) {
        f(&mut self.devices.lock().unwrap());
    }

    async fn serve(self) -> String {
        async fn list(
            State(nb): State<NetBox>,
            headers: HeaderMap,
            Query(q): Query<Vec<(String, String)>>,
        ) -> impl IntoResponse {
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some(&format!("Token {NETBOX_TOKEN}"))
            {
                return (
                    StatusCode::FORBIDDEN,
                    axum::Json(json!({"detail": "Invalid v1 token"})),
                );
            }
            nb.queries.lock().unwrap().push(q.clone());
            let offset: usize = q
                .iter()
                .find(|(k, _)| k == "offset")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let all = nb.devices.lock().unwrap().clone();
            // NetBox's own filtering, as far as the test uses it: site by slug.
            let site = q.iter().find(|(k, _)| k == "site").map(|(_, v)| v.clone());
            let all: Vec<Value> = all
                .into_iter()
                .filter(|d| {
                    site.as_ref()
                        .is_none_or(|s| d["site"]["slug"] == *s.as_str())
                })
                .collect();
            // A server that caps the page below the `limit` asked for, as NetBox's
            // MAX_PAGE_SIZE does.
            let page: Vec<Value> = all.iter().skip(offset).take(PAGE).cloned().collect();
            let next = (offset + PAGE < all.len()).then(|| {
                format!(
                    "http://netbox.example.com/api/dcim/devices/?limit={PAGE}&offset={}",
                    offset + PAGE
                )
            });
            (
                StatusCode::OK,
                axum::Json(
                    json!({"count": all.len(), "next": next, "previous": null, "results": page}),
                ),
            )
        }
        async fn patch(
            State(nb): State<NetBox>,
            headers: HeaderMap,
            axum::extract::Path(id): axum::extract::Path<String>,
            axum::Json(body): axum::Json<Value>,
        ) -> StatusCode {
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some(&format!("Token {NETBOX_TOKEN}"))
            {
                return StatusCode::FORBIDDEN;
            }
            nb.patches.lock().unwrap().push((id, body));
            StatusCode::OK
        }
        let app = axum::Router::new()
            .route("/netbox/api/dcim/devices/", axum::routing::get(list))
            .route(
                "/netbox/api/dcim/devices/{id}/",
                axum::routing::patch(patch),
            )
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/netbox")
    }
}

async fn fleetup(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(args)
        .env("FLEETUP_SERVER", app.service.base_url())
        .env("FLEETUP_API_TOKEN", TOKEN)
        .env("NETBOX_TOKEN", NETBOX_TOKEN)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn report(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub(crate) fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            x.as_str()
                .map_or_else(|| x["name"].as_str().unwrap().to_string(), str::to_string)
        })
        .collect();
    n.sort();
    n
}

pub(crate) async fn device(app: &TestApp, name: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/devices/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}");
    r.json().await.unwrap()
}

async fn inventory_names(app: &TestApp) -> Vec<String> {
    let v: Value = app
        .get("/api/v1/devices?limit=500")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    names(&Value::Array(
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].clone())
            .collect(),
    ))
}

/// `fleetup inventory sync` of the test NetBox at `url`.
fn netbox_args(url: &str) -> Vec<&str> {
    vec![
        "inventory",
        "sync",
        "--from",
        "netbox",
        "--url",
        url,
        "--token-env",
        "NETBOX_TOKEN",
    ]
}

/// `serve`'s sync of `source`, hourly, writing the running version back to `fleetup_version`.
pub(crate) fn writing_back(
    source: fleetup::sync::source::Source,
) -> fleetup::sync::schedule::Scheduled {
    fleetup::sync::schedule::Scheduled {
        scope: source.scope(),
        source,
        defaults: fleetup::sync::SyncDefaults::default(),
        every: std::time::Duration::from_secs(3600),
        write_back: Some("fleetup_version".into()),
        dry_run: false,
    }
}

/// The device's id in its source of truth, once a sync of `serve` has linked it.
pub(crate) async fn linked_source_id(rig: &crate::support::Rig, name: &str) -> String {
    crate::support::eventually(&format!("{name} linked to its source of truth"), || async {
        let d: Value = rig
            .get(&format!("/api/v1/devices/{name}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        d["source"]["id"].as_str().map(str::to_string)
    })
    .await
}

/// An absent device is never targeted: a playbook naming it is refused with the reason, and a
/// playbook for every device plans it as skipped. Adds an NX-OS image to the store.
pub(crate) async fn assert_never_targeted(app: &TestApp, name: &str) {
    let form = reqwest::multipart::Form::new()
        .text("platform", "nxos")
        .text("version", "10.3(5)")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; 4096]).file_name("nxos64-cs.10.3.5.M.bin"),
        );
    let r = app
        .post("/api/v1/images")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let submit = |playbook: String, query: &'static str| async move {
        let r = app
            .post(&format!("/api/v1/rollouts{query}"))
            .header("content-type", "application/yaml")
            .body(playbook)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let image = "image: {nxos: nxos64-cs.10.3.5.M.bin}";
    let (status, body) = submit(
        format!("name: n\n{image}\ntargets: {{names: [{name}]}}\n"),
        "",
    )
    .await;
    assert_eq!(status, 422, "{body:#}");
    let says = body["error"]["message"].as_str().unwrap_or_default();
    assert!(says.contains("absent from its source of truth"), "{body:#}");
    let (status, plan) = submit(
        format!("name: n\n{image}\ntargets: {{all: true}}\n"),
        "?dry_run=true",
    )
    .await;
    let skipped = plan.to_string();
    assert!(
        skipped.contains(name) && skipped.contains("absent from its source of truth"),
        "{status}: {plan:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netbox_devices_are_added_changed_and_marked_absent_with_netbox_names() {
    let app = TestApp::start().await;
    let nb = NetBox::recorded();
    let url = nb.clone().serve().await;
    let sync = netbox_args(&url);
    let with = |extra: &[&'static str]| {
        let mut a: Vec<&str> = sync.to_vec();
        a.extend_from_slice(extra);
        a.push("--json");
        a
    };

    // A dry run reports the difference and writes nothing.
    let dry = report(
        &fleetup(
            &app,
            &with(&[
                "--dry-run",
                "--username",
                "netops",
                "--password-env",
                "DEVICE_PW",
            ]),
        )
        .await,
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        names(&dry["added"]),
        ["ber-acc-01", "ber-acc-02", "ber-acc-03", "par-core-01"]
    );
    assert!(inventory_names(&app).await.is_empty(), "a dry run wrote");
    // What fleetup cannot drive is reported with the reason, not silently dropped.
    let skipped: Vec<(String, String)> = dry["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .any(|(n, r)| n == "par-fw-01" && r.contains("juniper-junos")),
        "{skipped:?}"
    );
    assert!(
        skipped
            .iter()
            .any(|(n, r)| n == "par-acc-09" && r.contains("no primary IP")),
        "{skipped:?}"
    );
    // Every page was read (the server gives 3 per page), with the token, without the config
    // context.
    let queries = nb.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(
        queries
            .iter()
            .all(|q| q.contains(&("exclude".into(), "config_context".into())))
    );

    // The sync itself: NetBox's site slug, role slug (and `device_role` of NetBox < 3.6), tag
    // slug, platform slug and primary IP without its prefix length.
    let done = report(
        &fleetup(
            &app,
            &with(&["--username", "netops", "--password-env", "DEVICE_PW"]),
        )
        .await,
    );
    assert_eq!(done["dry_run"], false);
    assert_eq!(names(&done["added"]), names(&dry["added"]));
    let d = device(&app, "ber-acc-01").await;
    assert_eq!(d["host"], "192.0.2.11");
    assert_eq!(d["port"], 22);
    assert_eq!(d["platform"], "iosxe");
    assert_eq!(d["site"], "ber-dc1");
    assert_eq!(d["model"], "C9300-48P");
    assert_eq!(d["groups"], json!(["access-switch"]));
    assert_eq!(d["tags"], json!(["upgrade-canary"]));
    assert_eq!(d["username"], "netops");
    assert_eq!(d["password_env"], "DEVICE_PW");
    assert_eq!(d["source"]["id"], "11");
    assert!(d["source"]["absent_since"].is_null());
    assert_eq!(
        device(&app, "ber-acc-03").await["groups"],
        json!(["access-switch"])
    );
    assert_eq!(device(&app, "ber-acc-02").await["platform"], "ios");
    assert_eq!(device(&app, "par-core-01").await["platform"], "nxos");

    // An operator's port stays; the source's address wins; a device leaves NetBox; another is
    // renamed there (same id).
    let r = app
        .put("/api/v1/devices/ber-acc-02")
        .json(&json!({"name": "ber-acc-02", "host": "192.0.2.12", "port": 2222, "platform": "ios",
                      "site": "ber-dc1", "model": "WS-C2960X-48FPD-L", "groups": ["access-switch"], "username": "netops", "password_env": "DEVICE_PW"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    nb.edit(|devices| {
        devices.retain(|d| d["name"] != "par-core-01");
        for d in devices.iter_mut() {
            if d["name"] == "ber-acc-02" {
                d["primary_ip4"]["address"] = json!("192.0.2.112/24");
            }
            if d["name"] == "ber-acc-03" {
                d["name"] = json!("ber-acc-33");
            }
        }
    });
    let again = report(&fleetup(&app, &with(&[])).await);
    assert_eq!(names(&again["gone"]), ["par-core-01"]);
    let changed: Vec<(String, Vec<String>)> = again["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["field"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert!(
        changed.contains(&("ber-acc-02".into(), vec!["host".into()])),
        "{changed:?}"
    );
    assert!(
        changed.contains(&("ber-acc-33".into(), vec!["name".into()])),
        "{changed:?}"
    );
    assert_eq!(again["unchanged"], 1, "{again:#}");
    let moved = device(&app, "ber-acc-02").await;
    assert_eq!(moved["host"], "192.0.2.112");
    assert_eq!(
        moved["port"], 2222,
        "the sync overwrote the operator's port"
    );
    // Gone from NetBox: kept with its history, marked absent.
    let gone = device(&app, "par-core-01").await;
    assert!(gone["source"]["absent_since"].is_string(), "{gone:#}");

    // An absent device is never targeted.
    assert_never_targeted(&app, "par-core-01").await;

    // Back in NetBox: the device returns.
    nb.edit(|devices| {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/netbox/devices-page1.json"),
        )
        .unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        devices.push(page["results"][2].clone());
    });
    let back = report(&fleetup(&app, &with(&[])).await);
    assert_eq!(names(&back["returned"]), ["par-core-01"]);
    assert!(device(&app, "par-core-01").await["source"]["absent_since"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_sync_keeps_its_own_scope_and_a_refused_token_changes_nothing() {
    let app = TestApp::start().await;
    let nb = NetBox::recorded();
    let url = nb.clone().serve().await;
    let mut base = netbox_args(&url);
    base.push("--json");
    let with = |extra: &[&'static str]| {
        let mut a: Vec<&str> = base.clone();
        a.extend_from_slice(extra);
        a
    };
    let berlin = report(&fleetup(&app, &with(&["--filter", "site=ber-dc1"])).await);
    assert_eq!(
        names(&berlin["added"]),
        ["ber-acc-01", "ber-acc-02", "ber-acc-03"]
    );
    assert!(
        berlin["scope"].as_str().unwrap().ends_with("site=ber-dc1"),
        "{berlin:#}"
    );
    // The filter went to NetBox as its own parameter.
    assert!(
        nb.queries
            .lock()
            .unwrap()
            .iter()
            .all(|q| q.contains(&("site".into(), "ber-dc1".into())))
    );
    // Paris, another scope: Berlin's devices are not "gone" from it.
    let paris = report(&fleetup(&app, &with(&["--filter", "site=par"])).await);
    assert_eq!(names(&paris["added"]), ["par-core-01"]);
    assert!(paris["gone"].as_array().unwrap().is_empty(), "{paris:#}");
    // A role filter the records are checked against too.
    let core = report(
        &fleetup(
            &app,
            &with(&["--filter", "site=par,role=core", "--dry-run"]),
        )
        .await,
    );
    assert_eq!(core["unchanged"], 0);
    assert_eq!(names(&core["added"]), Vec::<String>::new());
    assert_eq!(names(&core["changed"]), ["par-core-01"], "{core:#}");

    // A wrong token: a clear error, nothing changed.
    let before = inventory_names(&app).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(with(&[]))
        .env("FLEETUP_SERVER", app.service.base_url())
        .env("FLEETUP_API_TOKEN", TOKEN)
        .env("NETBOX_TOKEN", "wrong")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token was refused") && err.contains("403"),
        "{err}"
    );
    assert_eq!(inventory_names(&app).await, before);

    // A token variable that is not set, a bad filter, a bad URL: refused before any request.
    for (args, says) in [
        (vec!["--filter", "rack=r1"], "unknown filter key \"rack\""),
        (
            vec!["--platform-map", "junos=junos"],
            "none of ios, iosxe, nxos",
        ),
    ] {
        let mut a = with(&[]);
        a.extend(args.iter().copied());
        let out = fleetup(&app, &a).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let unset = [
        "inventory",
        "sync",
        "--from",
        "netbox",
        "--url",
        &url,
        "--token-env",
        "NO_SUCH_VAR_FOR_FLEETUP",
    ];
    let out = fleetup(&app, &unset).await;
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("NO_SUCH_VAR_FOR_FLEETUP: that environment variable is not set"),
        "{out:?}"
    );
    let out = fleetup(
        &app,
        &[
            "inventory",
            "sync",
            "--from",
            "netbox",
            "--url",
            "netbox.example.com",
            "--token-env",
            "NETBOX_TOKEN",
        ],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a URL"));
}

#[tokio::test]
async fn the_sync_route_refuses_bad_records_whole_and_skips_repeated_ones() {
    let app = TestApp::start().await;
    let record =
        |name: &str, host: &str| json!({"id": name, "name": name, "host": host, "platform": "ios"});
    for (body, says) in [
        (
            json!({"scope": "netbox x", "devices": [record("a", "10.0.0.1"), record("b", "not a host!")]}),
            "devices[1]",
        ),
        (json!({"scope": "", "devices": []}), "scope"),
        (
            json!({"scope": "netbox x", "devices": [], "defaults": {"port": 0}}),
            "defaults.port",
        ),
        (
            json!({"scope": "netbox x", "devices": [], "defaults": []}),
            "defaults: an object",
        ),
        (json!({"scope": "  ", "devices": []}), "scope"),
        (json!({"scope": "netbox\u{7}x", "devices": []}), "scope"),
        (
            json!({"scope": "netbox x", "devices": [], "extra": 1}),
            "extra",
        ),
    ] {
        let r = app
            .post("/api/v1/inventory/sync")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{says}: {text}");
    }
    assert!(inventory_names(&app).await.is_empty());

    // A name or an id that comes twice: the first is taken, the other reported as skipped.
    let mut again = record("c", "10.0.0.3");
    again["id"] = json!("a");
    let body = json!({"scope": "netbox x", "devices": [
        record("a", "10.0.0.1"), record("a", "10.0.0.2"), again, record("b", "10.0.0.4")]});
    let r = app
        .post("/api/v1/inventory/sync")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(names(&report["added"]), ["a", "b"]);
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 2, "{report:#}");
    assert!(
        skipped.iter().all(|r| r.contains("comes twice")),
        "{report:#}"
    );
    assert_eq!(device(&app, "a").await["host"], "10.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_syncs_on_its_own_and_writes_the_running_version_back() {
    use fleetup::sync::source::{Source, parse_url};
    use fleetup::sync::{Filter, PlatformMap, SourceKind};

    // NetBox holds the two lab devices (their names and addresses are the lab's own).
    let base = crate::support::random_base();
    let nb = NetBox::default();
    let recorded = NetBox::recorded();
    let template = recorded.devices.lock().unwrap()[1].clone();
    nb.edit(|devices| {
        for k in 0..2u32 {
            let mut d = template.clone();
            d["id"] = json!(500 + k);
            d["name"] = json!(format!("lab-sw-{:03}", k + 1));
            d["primary_ip4"]["address"] = json!(format!(
                "{}/24",
                std::net::Ipv4Addr::from(u32::from(base) + k)
            ));
            d["site"]["slug"] = json!("lab");
            d["role"]["slug"] = json!("lab");
            d["tags"] = json!([]);
            devices.push(d);
        }
    });
    let url = nb.clone().serve().await;
    let source = Source {
        kind: SourceKind::Netbox,
        url: parse_url(&url).unwrap(),
        token: NETBOX_TOKEN.into(),
        filter: Filter::default(),
        platforms: PlatformMap::default(),
    };
    let scheduled = writing_back(source);
    let rig = crate::support::Rig::options(2)
        .lab(move |c| c.base_ip = base)
        .serve(move |a| a.sync = vec![scheduled])
        .start()
        .await;
    // The sync at start links both devices to NetBox.
    for name in ["lab-sw-001", "lab-sw-002"] {
        linked_source_id(&rig, name).await;
    }
    let id = rig.submit(&crate::support::playbook("")).await;
    let end = rig.wait_end(&id).await;
    assert_eq!(end["state"], "completed", "{end:#}");
    // Each upgraded device's running version went back to its custom field.
    let patches = crate::support::eventually("both versions written back", || async {
        let p = nb.patches.lock().unwrap().clone();
        (p.len() >= 2).then_some(p)
    })
    .await;
    let mut ids: Vec<&str> = patches.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["500", "501"]);
    for (_, body) in &patches {
        assert_eq!(
            body,
            &json!({"custom_fields": {"fleetup_version": crate::support::IMAGE_VERSION}})
        );
    }
}
