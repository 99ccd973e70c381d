//! The service foundation over real HTTP: inventory, import/export, images, auth, errors,
//! observability, restarts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ServeProcess, TOKEN, TestApp, md5sum, multipart_file, write_random_file};

const PASSWORD: &str = "S3cr3t-Pa55word!";
const ENABLE: &str = "En4ble-S3cret!";

fn device(name: &str, host: &str) -> Value {
    json!({
        "name": name, "host": host, "platform": "ios", "site": "berlin",
        "groups": ["access"], "tags": ["poe"], "username": "admin",
        "password": PASSWORD, "enable_secret": ENABLE,
    })
}

async fn body(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test]
async fn device_crud_and_filters() {
    let app = TestApp::start().await;
    let r = app
        .post("/api/v1/devices")
        .json(&device("sw-1", "10.0.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created = body(r).await;
    assert_eq!(created["name"], "sw-1");
    assert_eq!(created["port"], 22);
    assert_eq!(created["has_password"], true);

    let mut core = device("core-1", "10.0.0.2");
    core["platform"] = json!("iosxe");
    core["site"] = json!("frankfurt");
    core["groups"] = json!(["core"]);
    core["tags"] = json!([]);
    assert_eq!(
        app.post("/api/v1/devices")
            .json(&core)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );

    // Same name again: conflict.
    let r = app
        .post("/api/v1/devices")
        .json(&device("sw-1", "10.0.0.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(body(r).await["error"]["code"], "conflict");

    // Filters.
    for (query, expect) in [
        ("group=access", vec!["sw-1"]),
        ("group=core", vec!["core-1"]),
        ("tag=poe", vec!["sw-1"]),
        ("site=frankfurt", vec!["core-1"]),
        ("platform=iosxe", vec!["core-1"]),
        ("q=10.0.0.1", vec!["sw-1"]),
        ("", vec!["core-1", "sw-1"]),
    ] {
        let list = body(
            app.get(&format!("/api/v1/devices?{query}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let names: Vec<&str> = list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expect, "filter {query}");
        assert_eq!(list["total"], expect.len());
    }
    // Pagination.
    let page = body(
        app.get("/api/v1/devices?limit=1&offset=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["devices"].as_array().unwrap().len(), 1);
    assert_eq!(page["devices"][0]["name"], "sw-1");
    assert_eq!(page["total"], 2);
    let bad = app
        .get("/api/v1/devices?platform=junos")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Update without secrets keeps them; a rename works.
    let mut upd = device("sw-1", "10.0.0.11");
    upd.as_object_mut().unwrap().remove("password");
    upd.as_object_mut().unwrap().remove("enable_secret");
    let r = app
        .put("/api/v1/devices/sw-1")
        .json(&upd)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = body(app.get("/api/v1/devices/sw-1").send().await.unwrap()).await;
    assert_eq!(got["host"], "10.0.0.11");
    assert_eq!(got["has_password"], true);
    assert_eq!(got["has_enable_secret"], true);
    let stored = app.service.state.db.device_by_name("sw-1").await.unwrap();
    assert_eq!(stored.spec.credentials.password.as_deref(), Some(PASSWORD));
    // A rename moves the device to its new name: the old one is gone (404), then back.
    for (from, to) in [("sw-1", "sw-1-renamed"), ("sw-1-renamed", "sw-1")] {
        let mut renamed = upd.clone();
        renamed["name"] = json!(to);
        let r = app
            .put(&format!("/api/v1/devices/{from}"))
            .json(&renamed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let old = app
            .get(&format!("/api/v1/devices/{from}"))
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), StatusCode::NOT_FOUND);
        let new = body(
            app.get(&format!("/api/v1/devices/{to}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(new["host"], "10.0.0.11");
        assert_eq!(new["has_password"], true, "a rename keeps the secrets");
    }

    // Invalid input: 422 naming the field; malformed JSON: 400.
    let mut bad = device("sw-2", "10.0.0.3");
    bad["platform"] = json!("junos");
    let r = app.post("/api/v1/devices").json(&bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("platform")
    );
    let r = app
        .post("/api/v1/devices")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = app
        .post("/api/v1/devices")
        .json(&json!({"name": "x", "host": "10.0.0.4", "platform": "ios", "colour": "red"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Delete, then 404s in JSON.
    assert_eq!(
        app.delete("/api/v1/devices/sw-1")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let r = app.get("/api/v1/devices/sw-1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(r).await["error"]["code"], "not_found");
    assert_eq!(
        app.delete("/api/v1/devices/sw-1")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app.get("/api/v1/no/such/route").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(body(r).await["error"]["code"], "not_found");
}

const INVENTORY: &str = "\
defaults:
  platform: ios
  username: admin
  password: S3cr3t-Pa55word!
groups:
  access:
    site: berlin
devices:
  - name: sw-1
    host: 10.0.0.1
    groups: [access]
  - name: sw-2
    host: 10.0.0.2
    groups: [access]
  - name: core-1
    host: 10.0.0.254
    platform: iosxe
";

async fn export(app: &TestApp) -> String {
    app.get("/api/v1/inventory/export")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn yaml_import_is_idempotent_and_round_trips() {
    let app = TestApp::start().await;
    let r = body(
        app.post("/api/v1/inventory/import")
            .body(INVENTORY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["created"], 3);
    let first = export(&app).await;
    let r = body(
        app.post("/api/v1/inventory/import")
            .body(INVENTORY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (
            r["created"].clone(),
            r["updated"].clone(),
            r["unchanged"].clone()
        ),
        (json!(0), json!(0), json!(3))
    );
    assert_eq!(export(&app).await, first, "re-import changes nothing");
    let list = body(app.get("/api/v1/devices").send().await.unwrap()).await;
    assert_eq!(list["total"], 3, "no duplicates");
    assert!(
        !first.contains(PASSWORD),
        "export leaves inline secrets out by default"
    );
    let with = app
        .get("/api/v1/inventory/export?with_secrets=true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(with.contains(PASSWORD));

    // A changed entry is updated in place.
    let changed = INVENTORY.replace("host: 10.0.0.2\n", "host: 10.0.0.22\n");
    let r = body(
        app.post("/api/v1/inventory/import")
            .body(changed)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["updated"], 1);
    assert_eq!(
        body(app.get("/api/v1/devices/sw-2").send().await.unwrap()).await["host"],
        "10.0.0.22"
    );

    // The export, imported into a fresh service, gives the same inventory.
    let other = TestApp::start().await;
    let with = app
        .get("/api/v1/inventory/export?with_secrets=true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = body(
        other
            .post("/api/v1/inventory/import")
            .body(with)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["created"], 3);
    assert_eq!(export(&other).await, export(&app).await);
}

#[tokio::test]
async fn broken_yaml_is_refused_with_location_and_nothing_written() {
    let app = TestApp::start().await;
    let cases: &[(&str, &str, u64)] = &[
        (
            "bad indentation",
            "devices:\n  - name: a\n    host: 10.0.0.1\n   platform: ios\n",
            4,
        ),
        (
            "unknown field",
            "devices:\n  - name: a\n    host: 10.0.0.1\n    platform: ios\n    colour: red\n",
            5,
        ),
        (
            "duplicate name",
            "devices:\n  - name: a\n    host: 10.0.0.1\n    platform: ios\n  - name: b\n    host: 10.0.0.2\n    platform: ios\n  - name: a\n    host: 10.0.0.3\n    platform: ios\n",
            8,
        ),
        (
            "bad value after good entries",
            "devices:\n  - name: a\n    host: 10.0.0.1\n    platform: ios\n  - name: b\n    host: 10.0.0.2\n    platform: junos\n",
            5,
        ),
    ];
    for (what, text, line) in cases {
        let r = app
            .post("/api/v1/inventory/import")
            .body(*text)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        let e = body(r).await;
        assert_eq!(e["error"]["line"], *line, "{what}: {e}");
        assert!(e["error"]["column"].as_u64().unwrap() >= 1, "{what}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("line {line}")),
            "{what}: {e}"
        );
        let list = body(app.get("/api/v1/devices").send().await.unwrap()).await;
        assert_eq!(list["total"], 0, "{what}: nothing written");
    }
}

#[tokio::test]
async fn auth_is_required_and_secrets_never_leave() {
    let app = TestApp::start().await;
    app.post("/api/v1/inventory/import")
        .body(INVENTORY)
        .send()
        .await
        .unwrap();
    let mut with_env = device("sw-env", "10.0.0.50");
    with_env["enable_secret"] = json!(ENABLE);
    app.post("/api/v1/devices")
        .json(&with_env)
        .send()
        .await
        .unwrap();
    let img = app.dir.path().join("c2960x-universalk9-mz.152-7.E8.bin");
    write_random_file(&img, 10_000, 1);
    let part = reqwest::multipart::Part::bytes(std::fs::read(&img).unwrap())
        .file_name("c2960x-universalk9-mz.152-7.E8.bin");
    app.post("/api/v1/images")
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();

    let anon = fleetup::http_client::client();
    let reads = [
        "/api/v1/devices",
        "/api/v1/devices/sw-1",
        "/api/v1/devices/sw-env",
        "/api/v1/inventory/export",
        "/api/v1/images",
        "/api/v1/images/c2960x-universalk9-mz.152-7.E8.bin",
        "/api/v1/transfers",
        "/metrics",
    ];
    for path in reads {
        let r = anon.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} without token");
        assert_eq!(body(r).await["error"]["code"], "unauthorized");
        let r = anon
            .get(app.url(path))
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
        let r = anon
            .get(app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} with the token");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PASSWORD) && !text.contains(ENABLE),
            "{path} leaks a secret: {text}"
        );
    }
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/devices"),
        (reqwest::Method::PUT, "/api/v1/devices/sw-1"),
        (reqwest::Method::DELETE, "/api/v1/devices/sw-1"),
        (reqwest::Method::POST, "/api/v1/inventory/import"),
        (reqwest::Method::POST, "/api/v1/images"),
        (
            reqwest::Method::DELETE,
            "/api/v1/images/c2960x-universalk9-mz.152-7.E8.bin",
        ),
    ] {
        let r = anon
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Health and the OpenAPI document are open; so are the dashboard assets.
    for path in ["/api/v1/health", "/api/v1/openapi.json", "/"] {
        let r = anon.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains(PASSWORD) && !text.contains(ENABLE), "{path}");
    }
    // Every route of the OpenAPI document, read with the token, is free of secrets.
    let spec = body(
        anon.get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if item.get("get").is_none() {
            continue;
        }
        let concrete = path.replace(
            "{name}",
            if path.starts_with("/images") {
                "c2960x-universalk9-mz.152-7.E8.bin"
            } else {
                "sw-1"
            },
        );
        let r = app.get(&format!("/api/v1{concrete}")).send().await.unwrap();
        // A route whose path is complete is really read, not answered with an error.
        let status = r.status();
        if !concrete.contains('{') {
            assert_eq!(status, StatusCode::OK, "{concrete}");
        }
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(PASSWORD) && !text.contains(ENABLE),
            "{concrete} leaks a secret"
        );
    }
}

#[tokio::test]
async fn read_open_allows_reads_but_not_writes() {
    let app = TestApp::start_with(|a| a.read_open = true).await;
    let anon = fleetup::http_client::client();
    assert_eq!(
        anon.get(app.url("/api/v1/devices"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let r = anon
        .post(app.url("/api/v1/devices"))
        .json(&device("a", "10.0.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn observability_endpoints() {
    let app = TestApp::start().await;
    app.post("/api/v1/inventory/import")
        .body(INVENTORY)
        .send()
        .await
        .unwrap();
    let h = body(
        fleetup::http_client::client()
            .get(app.url("/api/v1/health"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"], "ok");
    let m = app.get("/metrics").send().await.unwrap();
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = m.text().await.unwrap();
    assert!(m.contains("fleetup_devices 3"), "{m}");
    assert!(
        m.contains("fleetup_transfers_active{protocol=\"tftp\"} 0"),
        "{m}"
    );
    let spec = body(
        fleetup::http_client::client()
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        spec["openapi"]
    );
    for p in [
        "/devices",
        "/devices/{name}",
        "/images",
        "/inventory/import",
        "/inventory/export",
        "/transfers",
    ] {
        assert!(spec["paths"].get(p).is_some(), "OpenAPI lacks {p}");
    }
}

#[tokio::test]
async fn image_upload_errors() {
    let app = TestApp::start_with(|a| a.max_image_size = 64 * 1024).await;
    let f = app.dir.path().join("img.bin");
    write_random_file(&f, 1000, 7);
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&f, "c2960x-universalk9-mz.152-7.E8.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rec = body(r).await;
    assert_eq!(rec["version"], "15.2(7)E8");
    assert_eq!(rec["platform"], "ios");
    // Same content under another name, and another content under the same name: 409.
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&f, "copy.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        body(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("c2960x-universalk9-mz.152-7.E8.bin")
    );
    let g = app.dir.path().join("other.bin");
    write_random_file(&g, 1000, 8);
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&g, "c2960x-universalk9-mz.152-7.E8.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // Traversal in the file name.
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&g, "../../etc/evil.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "directory parts of an uploaded name are dropped"
    );
    assert_eq!(body(r).await["file_name"], "evil.bin");
    assert!(!app.dir.path().join("etc").exists());
    let form = multipart_file(&f, "x.bin").text("file_name", "../x.bin");
    let r = app
        .post("/api/v1/images")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Over the size limit: 413 and nothing left behind.
    let big = app.dir.path().join("big.bin");
    write_random_file(&big, 200 * 1024, 9);
    let r = app
        .post("/api/v1/images")
        .multipart(multipart_file(&big, "big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let names: Vec<String> = std::fs::read_dir(app.dir.path().join("images/.incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
    // Unknown form field, no file.
    let r = app
        .post("/api/v1/images")
        .multipart(reqwest::multipart::Form::new().text("colour", "red"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Delete, then 404.
    assert_eq!(
        app.delete("/api/v1/images/evil.bin")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(!app.dir.path().join("images/evil.bin").exists());
    assert_eq!(
        app.delete("/api/v1/images/evil.bin")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn image_in_use_by_a_running_rollout_cannot_be_deleted() {
    let app = TestApp::start().await;
    let f = app.dir.path().join("img.bin");
    write_random_file(&f, 1000, 3);
    app.post("/api/v1/images")
        .multipart(multipart_file(&f, "cat9k_iosxe.17.09.04a.SPA.bin"))
        .send()
        .await
        .unwrap();
    sqlx::query("INSERT INTO rollouts (id, name, state, images, created_at, updated_at) VALUES ('r1', 'n', 'running', '[\"cat9k_iosxe.17.09.04a.SPA.bin\"]', '', '')")
        .execute(app.service.state.db.pool())
        .await
        .unwrap();
    let r = app
        .delete("/api/v1/images/cat9k_iosxe.17.09.04a.SPA.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(
        body(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("r1")
    );
    sqlx::query("UPDATE rollouts SET state = 'completed'")
        .execute(app.service.state.db.pool())
        .await
        .unwrap();
    assert_eq!(
        app.delete("/api/v1/images/cat9k_iosxe.17.09.04a.SPA.bin")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
}

/// The CLI client uploads a 50 MB image to a real `serve` process: the stored MD5 equals
/// md5sum's, and the server's peak memory stays far below the file size (streamed).
#[tokio::test]
async fn large_upload_is_streamed_and_checksummed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = ServeProcess::start(&data);
    let img = dir.path().join("c2960x-universalk9-mz.152-7.E9.bin");
    write_random_file(&img, 50 * 1024 * 1024, 42);
    let before = serve.peak_rss();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["image", "add", "--server", &serve.base_url])
        .arg(&img)
        .env("FLEETUP_API_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = serve.peak_rss();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = md5sum(&img);
    assert!(stdout.contains(&expected), "{stdout}");
    let client = fleetup::http_client::client();
    let rec: Value = client
        .get(format!(
            "{}/api/v1/images/c2960x-universalk9-mz.152-7.E9.bin",
            serve.base_url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rec["md5"], expected);
    assert_eq!(rec["size"], 50 * 1024 * 1024);
    assert_eq!(
        md5sum(&data.join("images/c2960x-universalk9-mz.152-7.E9.bin")),
        expected
    );
    let grown = after.saturating_sub(before);
    assert!(
        grown < 16 * 1024 * 1024,
        "peak RSS grew by {grown} bytes during a 50 MB upload (from {before})"
    );
}

/// Data survives a restart; SIGTERM in the middle of an upload registers nothing and leaves
/// no partial file.
#[tokio::test]
async fn restart_keeps_data_and_interrupted_upload_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = ServeProcess::start(&data);
    let client = fleetup::http_client::client();
    let r = client
        .post(format!("{}/api/v1/inventory/import", serve.base_url))
        .bearer_auth(TOKEN)
        .body(INVENTORY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // An upload whose body never finishes: the server has written part of it when we stop it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream)).file_name("half.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let url = format!("{}/api/v1/images", serve.base_url);
    let upload = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
    });
    for _ in 0..8 {
        tx.send(Ok(vec![7u8; 256 * 1024])).await.unwrap();
    }
    let incoming = data.join("images/.incoming");
    crate::support::eventually("the partial upload on disk", || {
        let incoming = incoming.clone();
        async move {
            let size: u64 = std::fs::read_dir(&incoming)
                .ok()?
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum();
            (size > 0).then_some(())
        }
    })
    .await;
    let status = tokio::task::spawn_blocking(move || serve.terminate())
        .await
        .unwrap();
    assert!(
        status.success(),
        "serve exits cleanly on SIGTERM: {status:?}"
    );
    drop(tx);
    let _ = upload.await;

    let serve = ServeProcess::start(&data);
    let client = fleetup::http_client::client();
    let devices: Value = client
        .get(format!("{}/api/v1/devices", serve.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(devices["total"], 3, "inventory survived the restart");
    let images: Value = client
        .get(format!("{}/api/v1/images", serve.base_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        images["images"].as_array().unwrap().len(),
        0,
        "no half image registered"
    );
    let left: Vec<_> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".incoming")
        .collect();
    assert!(left.is_empty(), "files left in the store: {left:?}");
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

#[tokio::test]
async fn port_that_cannot_be_bound_names_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args([
            "serve",
            "--tftp",
            "off",
            "--ftp",
            "off",
            "--http",
            &addr.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http") && err.contains(&addr.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn config_file_and_environment_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fleetup.yml");
    std::fs::write(
        &cfg,
        "http: 127.0.0.1:0\ntftp: off\nftp: off\nbogus-setting: 1\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("bogus-setting"),
        "{err}"
    );
}

/// The dashboard takes its event kinds and ended states from `GET /vocabulary`; where its
/// code still compares a state or a kind by name, that name must be one the service has.
#[tokio::test]
async fn the_dashboard_names_only_states_and_kinds_the_service_has() {
    let app = TestApp::start().await;
    let v: Value = app
        .get("/api/v1/vocabulary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut known: Vec<String> = Vec::new();
    for (list, key) in [
        ("event_kinds", "kind"),
        ("rollout_states", "state"),
        ("job_states", "state"),
    ] {
        for item in v[list].as_array().unwrap() {
            known.push(item[key].as_str().unwrap().to_string());
        }
    }
    // Every kind the engine has, in the vocabulary, with the events the dashboard once missed.
    for k in fleetup::rollout::model::EventKind::ALL {
        assert!(known.iter().any(|n| n == k.as_str()), "{k} missing");
    }
    for k in ["held", "device_requeued", "reload_not_sent"] {
        assert!(known.iter().any(|n| n == k), "{k} missing");
    }
    // Transfer states and transcript line kinds are vocabularies of their own.
    known.extend(["active", "completed", "failed"].map(String::from));
    use fleetup::device::EntryKind;
    known.extend(
        [EntryKind::Command, EntryKind::Answer, EntryKind::Note].map(|k| k.as_str().to_string()),
    );
    // So are the kinds in `GET /nodes` (a serve node or a site agent).
    use fleetup::store::leases::NodeKind;
    known.extend([NodeKind::Node, NodeKind::Agent].map(|k| k.as_str().to_string()));
    let compared = regex::Regex::new(
        r#"(?:\.state|\.kind|\.result)\s*[!=]==?\s*'([a-z_]+)'|badge\('([a-z_]+)'"#,
    )
    .unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/web/js");
    let mut checked = 0;
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for c in compared.captures_iter(&text) {
                let name = c.get(1).or(c.get(2)).unwrap().as_str();
                // Step results (`done`, `running`, `unfinished`) are the timeline's own words.
                if ["done", "skipped", "unfinished", "running"].contains(&name) {
                    checked += 1;
                    continue;
                }
                assert!(
                    known.iter().any(|n| n == name),
                    "{} compares with {name:?}, which the service does not have",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 5, "the scan found too little: {checked}");
}

/// Every error, the extractors' rejections included, comes in the documented JSON shape.
#[tokio::test]
async fn every_error_is_the_documented_json_shape() {
    let app = TestApp::start().await;
    let big = vec![b'#'; 70 * 1024 * 1024];
    let cases = [
        (app.get("/api/v1/devices?limit=abc"), 400),
        (app.get("/api/v1/inventory/export?with_secrets=yes"), 400),
        (
            app.post("/api/v1/rollouts?dry_run=1")
                .header("content-type", "application/yaml")
                .body("name: x\n"),
            400,
        ),
        (app.post("/api/v1/inventory/import"), 400),
        (app.post("/api/v1/inventory/import").body(big.clone()), 413),
        (
            app.post("/api/v1/rollouts")
                .header("content-type", "application/yaml")
                .body(big),
            413,
        ),
        (app.get("/api/v1/no-such-route"), 404),
        (app.delete("/api/v1/vocabulary"), 405),
    ];
    for (req, want) in cases {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{body}");
        assert!(ctype.starts_with("application/json"), "{ctype} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn oversized_upload_form_fields_are_refused_and_nothing_is_stored() {
    let app = TestApp::start().await;
    let f = app.dir.path().join("img.bin");
    write_random_file(&f, 1000, 11);
    let huge = "1".repeat(4 * 1024 * 1024);
    for field in ["version", "platform", "file_name"] {
        // Before and after the file part.
        for text_first in [true, false] {
            let form = if text_first {
                reqwest::multipart::Form::new()
                    .text(field, huge.clone())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(std::fs::read(&f).unwrap())
                            .file_name("c2960x-universalk9-mz.152-7.E8.bin"),
                    )
            } else {
                multipart_file(&f, "c2960x-universalk9-mz.152-7.E8.bin").text(field, huge.clone())
            };
            let r = app
                .post("/api/v1/images")
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{field}");
            let b = body(r).await;
            assert_eq!(b["error"]["code"], "too_large", "{b}");
            let msg = b["error"]["message"].as_str().unwrap();
            assert!(msg.contains(field) && msg.contains("256"), "{msg}");
        }
    }
    let list = body(app.get("/api/v1/images").send().await.unwrap()).await;
    assert_eq!(list["images"].as_array().unwrap().len(), 0, "{list}");
    // A field within the limit is taken.
    let form =
        multipart_file(&f, "c2960x-universalk9-mz.152-7.E8.bin").text("version", "15.2(7)E8");
    let r = app
        .post("/api/v1/images")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// What schemathesis found once, each kept fixed: the contract's details that a client sees.
#[tokio::test]
async fn contract_details_schemathesis_found() {
    let app = TestApp::start().await;
    // The document publishes the validators' own patterns.
    let spec = body(
        fleetup::http_client::client()
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let input = &spec["components"]["schemas"]["DeviceInput"]["properties"];
    assert_eq!(input["host"]["pattern"], fleetup::inventory::HOST_PATTERN);
    assert_eq!(input["name"]["pattern"], fleetup::inventory::NAME_PATTERN);
    assert_eq!(
        input["platform"]["enum"],
        serde_json::json!(["ios", "iosxe", "nxos"])
    );
    // Every route behind the token documents its 401.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let open = path == "/health" || path == "/openapi.json";
            assert_eq!(
                op["responses"].get("401").is_some(),
                !open,
                "{method} {path}"
            );
        }
    }
    // Exact values: no trimming, no aliases; a port may be written as JSON Schema's integer.
    for bad in [
        device(" sw1", "10.0.0.1"),
        device("sw1", "10.0.0.1 "),
        serde_json::json!({"name": "sw1", "host": "10.0.0.1", "platform": "IOS"}),
    ] {
        let r = app.post("/api/v1/devices").json(&bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let mut d = device("sw-port", "10.0.0.9");
    d["port"] = serde_json::json!(2222.0);
    d["username"] = Value::Null;
    let r = app.post("/api/v1/devices").json(&d).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The new device's URL, which a client can follow.
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, "/api/v1/devices/sw-port");
    let got = body(app.get(&location).send().await.unwrap()).await;
    assert_eq!(got["port"], 2222);
    // A stored entry that cannot log in is a conflict of the device's state, not a bad request.
    let r = app
        .post("/api/v1/devices/sw-port/facts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(body(r).await["error"]["code"], "conflict");
    // 401 names its scheme; a 405 keeps its Allow header under the JSON error.
    let r = fleetup::http_client::client()
        .get(app.url("/api/v1/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app.delete("/api/v1/vocabulary").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers().contains_key("allow"));
    // The report's format is one of two; an empty platform field is refused, not ignored.
    let r = app
        .get("/api/v1/rollouts/r-none/report?format=xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let f = app.dir.path().join("img.bin");
    write_random_file(&f, 1000, 5);
    let form = multipart_file(&f, "c2960x-universalk9-mz.152-7.E8.bin").text("platform", "");
    let r = app
        .post("/api/v1/images")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
