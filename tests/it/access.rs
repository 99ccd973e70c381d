//! API tokens with roles, the audit log and approvals, against a real service: a viewer is
//! refused every mutating route of the OpenAPI document, an operator the token routes; a
//! token's secret is shown once and never stored; every mutating call leaves an audit row; a
//! rollout that needs an approval waits until a second person's token approves it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Make a token through the API with the rig's (admin) token; its secret.
async fn token(rig: &Rig, name: &str, role: &str) -> String {
    let r = rig
        .post("/api/v1/tokens")
        .json(&json!({"name": name, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{name}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["name"], name);
    assert_eq!(body["role"], role);
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("fleetup_"), "{secret}");
    secret
}

fn request(rig: &Rig, method: &str, path: &str, secret: &str) -> reqwest::RequestBuilder {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    fleetup::http_client::client()
        .request(method, rig.url(path))
        .bearer_auth(secret)
}

async fn audit(rig: &Rig, by: &str) -> Vec<Value> {
    let r = rig
        .get(&format!("/api/v1/audit?by={by}&limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["entries"].as_array().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_may_only_read_and_an_operator_may_not_manage_tokens() {
    let rig = Rig::start(1, |_| {}).await;
    let viewer = token(&rig, "noc-viewer", "viewer").await;
    let operator = token(&rig, "change-operator", "operator").await;
    let name = rig.names()[0].clone();

    // Every mutating route of the OpenAPI document: 403 for the viewer, before anything runs.
    let spec: Value = rig
        .get("/api/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut refused = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{name}", &name)
                .replace("{id}", "r-20261205-000000-0000")
                .replace("{rollout}", "r-20261205-000000-0000")
                .replace("{device}", &name);
            let r = request(&rig, method, &format!("/api/v1{concrete}"), &viewer)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "forbidden", "{method} {path}");
            refused.push(format!("{} /api/v1{concrete}", method.to_uppercase()));
        }
        // The document says so too, on every route behind a token (the open ones answer 401
        // to nobody).
        for (method, op) in item.as_object().unwrap() {
            if op["responses"].get("401").is_none() {
                continue;
            }
            assert!(
                op["responses"].get("403").is_some(),
                "{method} {path} documents its 403"
            );
        }
    }
    assert!(refused.len() >= 10, "{refused:?}");
    // Each refusal is in the audit log, under the viewer's name.
    let rows = audit(&rig, "noc-viewer").await;
    assert_eq!(rows.len(), refused.len(), "{rows:#?}");
    for row in &rows {
        assert_eq!(row["status"], 403, "{row}");
        assert_eq!(row["role"], "viewer");
        let call = format!(
            "{} {}",
            row["method"].as_str().unwrap(),
            row["path"].as_str().unwrap()
        );
        assert!(refused.contains(&call), "{call} in {refused:?}");
    }

    // Reads are the viewer's, but not the configuration backups (secrets).
    for path in [
        "/api/v1/devices",
        "/api/v1/rollouts",
        "/api/v1/audit",
        "/metrics",
    ] {
        let r = request(&rig, "get", path, &viewer).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let r = request(
        &rig,
        "get",
        &format!("/api/v1/devices/{name}/configs"),
        &viewer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = request(
        &rig,
        "get",
        &format!("/api/v1/devices/{name}/configs"),
        &operator,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The operator changes things but may not manage tokens.
    for (method, path) in [
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("delete", "/api/v1/tokens/noc-viewer"),
    ] {
        let r = request(&rig, method, path, &operator)
            .json(&json!({"name": "x", "role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"]["message"],
            "an operator token may not manage tokens: that needs an admin token"
        );
    }
    let r = request(
        &rig,
        "post",
        &format!("/api/v1/devices/{name}/refresh"),
        &operator,
    )
    .send()
    .await
    .unwrap();
    assert_ne!(r.status(), StatusCode::FORBIDDEN);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_is_shown_once_kept_as_a_hash_revocable_and_named_in_the_audit_log() {
    let rig = Rig::start(1, |_| {}).await;
    // The service's first token is the first admin token.
    let list: Value = rig
        .get("/api/v1/tokens")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &list["tokens"][0];
    assert_eq!(first["name"], "admin");
    assert_eq!(first["role"], "admin");
    assert_eq!(first["bootstrap"], true);

    // Through the CLI, as an admin would.
    let out = rig
        .fleetup(&[
            "token",
            "create",
            "--role",
            "operator",
            "--name",
            "ci@pipeline",
        ])
        .await;
    assert_success(&out);
    let text = stdout(&out);
    let secret = text
        .lines()
        .find(|l| l.starts_with("fleetup_"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert!(text.contains("ci@pipeline (operator) created"), "{text}");
    // Listed, never with a secret; not in the database either.
    let out = rig.fleetup(&["token", "list"]).await;
    assert_success(&out);
    let list = stdout(&out);
    assert!(
        list.contains("ci@pipeline") && list.contains("operator"),
        "{list}"
    );
    assert!(!list.contains(&secret), "{list}");
    let listed = rig.get_text("/api/v1/tokens").await;
    assert!(
        !listed.contains(&secret) && !listed.contains(TOKEN),
        "{listed}"
    );
    // Not in any row of any table, whatever the database; on SQLite, not in any byte of its
    // files either (free pages included).
    let db = crate::support::open_db(&rig.data_dir()).await;
    for table in fleetup::store::copy::TABLES {
        for row in db.dump_table(table).await.unwrap() {
            assert!(
                !row.iter().flatten().any(|v| v.contains(&secret)),
                "the secret is not stored ({table})"
            );
        }
    }
    db.close().await;
    if !crate::support::on_postgres() {
        let db_bytes = std::fs::read(rig.data_dir().join("fleetup.db")).unwrap();
        let wal = std::fs::read(rig.data_dir().join("fleetup.db-wal")).unwrap_or_default();
        for bytes in [&db_bytes, &wal] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is not stored"
            );
        }
    }

    // The new token works, and what it changes is audited under its name.
    let r = request(&rig, "post", "/api/v1/rollouts", &secret)
        .header("content-type", "application/yaml")
        .body(playbook("options:\n  stage_only: true\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(d["submitted_by"], "ci@pipeline", "{d:#}");
    let rows = audit(&rig, "ci@pipeline").await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["method"], "POST");
    assert_eq!(rows[0]["path"], "/api/v1/rollouts");
    assert_eq!(rows[0]["status"], 201);
    assert_eq!(rows[0]["role"], "operator");
    // The admin's own calls are there too (the token creation among them).
    let admin_rows = audit(&rig, "admin").await;
    assert!(
        admin_rows
            .iter()
            .any(|r| r["method"] == "POST" && r["path"] == "/api/v1/tokens" && r["status"] == 201),
        "{admin_rows:#?}"
    );
    let out = rig.fleetup(&["audit", "--by", "ci@pipeline"]).await;
    assert_success(&out);
    assert!(
        stdout(&out).contains("POST   201    /api/v1/rollouts"),
        "{}",
        stdout(&out)
    );

    // Revoked: refused from then on; the name stays taken; a token cannot revoke itself.
    let out = rig.fleetup(&["token", "revoke", "ci@pipeline"]).await;
    assert_success(&out);
    let r = request(&rig, "get", "/api/v1/rollouts", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = rig
        .post("/api/v1/tokens")
        .json(&json!({"name": "ci@pipeline", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = fleetup::http_client::client()
        .delete(rig.url("/api/v1/tokens/admin"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = rig
        .post("/api/v1/tokens")
        .json(&json!({"name": "has space", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_that_needs_an_approval_waits_for_a_second_person() {
    let rig = Rig::start(2, |_| {}).await;
    let alice = token(&rig, "alice", "operator").await;
    let bob = token(&rig, "bob", "operator").await;
    let carol = token(&rig, "carol", "viewer").await;

    let r = request(&rig, "post", "/api/v1/rollouts", &alice)
        .header("content-type", "application/yaml")
        .body(playbook("approval: required\nstrategy:\n  canary: 0\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "awaiting_approval", "{created:#}");
    assert_eq!(created["submitted_by"], "alice");
    assert_eq!(created["approval_required"], true);
    // The plan to approve is the rollout's: its waves and devices.
    assert_eq!(created["progress"]["total"], 2, "{created:#}");
    let events = rig.events(&id).await;
    let waiting = events
        .iter()
        .find(|e| e["kind"] == "awaiting_approval")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("other than alice")
    );
    assert_eq!(waiting["data"]["plan"]["total"], 2, "{waiting:#}");

    // The submitter may not approve, nor may a viewer.
    for (who, secret) in [("alice", &alice), ("carol", &carol)] {
        let r = request(
            &rig,
            "post",
            &format!("/api/v1/rollouts/{id}/approve"),
            secret,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{who}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{who}: {body}");
    }
    let r = request(
        &rig,
        "post",
        &format!("/api/v1/rollouts/{id}/approve"),
        &alice,
    )
    .send()
    .await
    .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice submitted this rollout and may not approve it"),
        "{body}"
    );
    // Nothing ran meanwhile.
    let d = rig.detail(&id).await;
    assert_eq!(d["state"], "awaiting_approval");
    for name in rig.names() {
        let st = rig.lab.state(&name).unwrap();
        assert_eq!(st.reload_count, 0, "{name}");
        assert!(
            !st.last_commands.iter().any(|c| c.starts_with("copy ")),
            "{name}: {:?}",
            st.last_commands
        );
    }

    // Bob approves through the CLI: the rollout starts and completes.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["rollout", "approve", &id])
        .env("FLEETUP_SERVER", rig.base_url())
        .env("FLEETUP_API_TOKEN", &bob)
        .output()
        .await
        .unwrap();
    assert_success(&out);
    assert!(stdout(&out).contains("approved by bob"), "{}", stdout(&out));
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(d["approved_by"], "bob");
    assert!(d["approved_at"].is_string());
    for name in rig.names() {
        assert_eq!(rig.lab.state(&name).unwrap().reload_count, 1, "{name}");
    }
    // Approved once: a second approval is a conflict.
    let r = request(
        &rig,
        "post",
        &format!("/api/v1/rollouts/{id}/approve"),
        &bob,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // The audit log tells the story: alice's refused approval, bob's accepted one.
    let alice_rows = audit(&rig, "alice").await;
    let approve = format!("/api/v1/rollouts/{id}/approve");
    assert!(
        alice_rows
            .iter()
            .any(|r| r["path"] == approve.as_str() && r["status"] == 403),
        "{alice_rows:#?}"
    );
    let bob_rows = audit(&rig, "bob").await;
    assert!(
        bob_rows
            .iter()
            .any(|r| r["path"] == approve.as_str() && r["status"] == 200),
        "{bob_rows:#?}"
    );
    rig.stop().await;
}

/// `--approval required` makes approval the default; a playbook's `approval: none` wins. An
/// approval still waiting is aborted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_default_asks_for_approval_unless_the_playbook_says_none() {
    let rig = Rig::options(1)
        .serve_process()
        .process_flags(&["--approval", "required"])
        .start()
        .await;
    let id = rig.submit(&playbook("strategy:\n  canary: 0\n")).await;
    assert_eq!(rig.detail(&id).await["state"], "awaiting_approval");
    let r = rig
        .post(&format!("/api/v1/rollouts/{id}/abort"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(rig.detail(&id).await["state"], "aborted");

    let id = rig
        .submit(&playbook("approval: none\nstrategy:\n  canary: 0\n"))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    assert_eq!(d["approval_required"], false);
}
