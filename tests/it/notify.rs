//! Webhook notifications end to end: a lab rollout's notifications received by local HTTP
//! servers (one that checks signatures and fails each delivery's first attempt, one that
//! accepts connections and never answers), the delivery history through the API, and a
//! playbook's bad webhook URL refused with its location.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde_json::Value;

use crate::support::{Rig, TestApp, eventually, playbook};

const SECRET: &str = "webhook-secret-for-the-test";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    delivery: String,
    event: String,
    signature: Option<String>,
    body: Vec<u8>,
    status: u16,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A webhook receiver on a free port: answers 500 to the first attempt of every delivery (by
/// `X-Fleetup-Delivery`), 200 to the next.
async fn flaky_receiver() -> (SocketAddr, Hits) {
    async fn hook(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let delivery = header("x-fleetup-delivery").unwrap_or_default();
        let mut hits = hits.lock().unwrap();
        let seen = hits.iter().any(|h| h.delivery == delivery);
        let status = if seen {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        hits.push(Hit {
            delivery,
            event: header("x-fleetup-event").unwrap_or_default(),
            signature: header("x-fleetup-signature"),
            body: body.to_vec(),
            status: status.as_u16(),
        });
        status
    }
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// A receiver that accepts every connection and never reads nor answers; the count of
/// connections it accepted.
async fn silent_receiver() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, accepted)
}

fn signature_of(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliveries(rig: &Rig, rollout: &str) -> Vec<Value> {
    let r = rig
        .get(&format!(
            "/api/v1/notifications/deliveries?rollout={rollout}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["deliveries"].as_array().cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_webhook_from_the_config_file_is_retried_after_a_500_and_delivered() {
    let (addr, hits) = flaky_receiver().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("fleetup.yml");
    std::fs::write(
        &config,
        format!(
            "notify-attempts: 4\nnotify:\n  - url: http://{addr}/hook\n    events: [rollout_started, finished]\n    secret_env: FLEETUP_TEST_WEBHOOK_SECRET\n"
        ),
    )
    .unwrap();
    let rig = Rig::options(1)
        .serve_process()
        .process_flags(&[
            "--config",
            config.to_str().unwrap(),
            "--notify-retry-ms",
            "20",
        ])
        .process_env("FLEETUP_TEST_WEBHOOK_SECRET", SECRET)
        .start()
        .await;
    let id = rig.submit(&playbook("")).await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    // Both notifications end delivered, each on its second attempt after a 500.
    let list = eventually("both deliveries delivered", || async {
        let list = deliveries(&rig, &id).await;
        (list.len() == 2 && list.iter().all(|d| d["state"] == "delivered")).then_some(list)
    })
    .await;
    let mut kinds: Vec<&str> = list.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["finished", "rollout_started"]);
    for d in &list {
        assert_eq!(d["attempts"], 2, "{d:#}");
        assert_eq!(d["last_status"], 200, "{d:#}");
        assert_eq!(d["format"], "json");
        assert_eq!(d["target"], format!("http://{addr}/hook"));
        assert!(d["last_error"].is_null(), "{d:#}");
    }

    // What the receiver saw: per delivery a 500 then a 200, the same signed body both times.
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 4, "{hits:#?}");
    let mut by_delivery: HashMap<&str, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        by_delivery.entry(&h.delivery).or_default().push(h);
    }
    for d in &list {
        let id = d["id"].to_string();
        let attempts = &by_delivery[id.as_str()];
        let statuses: Vec<u16> = attempts.iter().map(|h| h.status).collect();
        assert_eq!(statuses, [500, 200], "delivery {id}");
        assert_eq!(attempts[0].body, attempts[1].body);
        for h in attempts {
            assert_eq!(h.event, d["kind"]);
            assert_eq!(
                h.signature.as_deref(),
                Some(signature_of(&h.body).as_str()),
                "a valid HMAC-SHA256 signature"
            );
            let payload: Value = serde_json::from_slice(&h.body).unwrap();
            assert_eq!(payload["kind"], d["kind"]);
            assert_eq!(payload["rollout"], id_of(&d["rollout_id"]));
            assert_eq!(payload["id"], d["event_id"]);
        }
    }
    let finished: Value = serde_json::from_slice(
        &hits
            .iter()
            .find(|h| h.event == "finished")
            .map(|h| h.body.clone())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(finished["event"], "completed");

    let metrics = rig.get_text("/metrics").await;
    let out = rig
        .fleetup(&["notify", "deliveries", "--rollout", &id])
        .await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches(" delivered ").count(), 2, "{text}");
    assert!(
        text.contains(&format!("http://{addr}/hook (json)")),
        "{text}"
    );
    for line in [
        "fleetup_webhook_deliveries_total{result=\"delivered\"} 2",
        "fleetup_webhook_deliveries_total{result=\"retried\"} 2",
        "fleetup_webhook_deliveries_total{result=\"failed\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_still_pending_when_fleetup_stops_is_failed_at_the_next_start() {
    // The receiver takes the connection and never answers: the delivery's first attempt is
    // under way (an hour's timeout) when the service stops.
    let (addr, accepted) = silent_receiver().await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("fleetup.yml");
    std::fs::write(
        &config,
        format!("notify:\n  - url: http://{addr}/hook\n    events: [rollout_started]\n"),
    )
    .unwrap();
    let mut rig = Rig::options(1)
        .serve_process()
        .process_flags(&[
            "--config",
            config.to_str().unwrap(),
            "--notify-timeout",
            "3600",
        ])
        .start()
        .await;
    let id = rig.submit(&playbook("")).await;
    let pending = eventually("the delivery to be under way", || async {
        let list = deliveries(&rig, &id).await;
        (list.len() == 1 && list[0]["state"] == "pending" && accepted.load(Ordering::SeqCst) == 1)
            .then(|| list[0].clone())
    })
    .await;
    assert_eq!(pending["attempts"], 0, "{pending:#}");

    rig.terminate_serve();
    rig.start_serve().await;
    let failed = eventually("the delivery to be failed after the restart", || async {
        let list = deliveries(&rig, &id).await;
        (list.len() == 1 && list[0]["state"] == "failed").then(|| list[0].clone())
    })
    .await;
    assert_eq!(failed["id"], pending["id"]);
    assert_eq!(
        failed["last_error"],
        "fleetup stopped before this delivery ended; it is not sent again after the restart"
    );
    assert_eq!(failed["attempts"], 0, "{failed:#}");
    assert!(failed["last_status"].is_null(), "{failed:#}");
    // Counted once, by the run that ended it.
    let m = crate::metrics::scrape(rig.get("/metrics")).await;
    let total = "fleetup_webhook_deliveries_total";
    assert_eq!(m.one(total, &[("result", "failed")]), 1.0);
    assert_eq!(m.one(total, &[("result", "delivered")]), 0.0);

    // The rollout goes on after the restart; no second delivery of the old notification.
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");
    let list = deliveries(&rig, &id).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    rig.stop().await;
}

fn id_of(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_answers_does_not_hold_the_rollout_back() {
    let (addr, accepted) = silent_receiver().await;
    let rig = Rig::options(2)
        .serve(|a| {
            // Each attempt waits an hour for its answer: only the rollout can end first.
            a.notify_timeout = 3600;
        })
        .start()
        .await;
    let id = rig
        .submit(&playbook(&format!(
            "notify:\n  - url: http://{addr}/never\n    format: slack\n"
        )))
        .await;
    let d = rig.wait_end(&id).await;
    assert_eq!(d["state"], "completed", "{d:#}");

    // The rollout's notifications were all queued, and the first was being sent during the
    // whole rollout: its attempt is still open (the receiver holds the connection), none has
    // ended, and yet the rollout completed.
    let list = eventually("the finished notification queued", || async {
        let list = deliveries(&rig, &id).await;
        list.iter().any(|d| d["kind"] == "finished").then_some(list)
    })
    .await;
    let mut kinds: Vec<&str> = list.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    let waves = d["waves"].as_array().unwrap().len();
    let mut expected = vec!["finished", "rollout_started"];
    expected.extend(std::iter::repeat_n("wave_done", waves));
    assert_eq!(kinds, expected, "{list:#?}");
    eventually("the receiver to hold connections", || async {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    let started = list
        .iter()
        .find(|d| d["kind"] == "rollout_started")
        .unwrap();
    for d in &list {
        assert_eq!(d["state"], "pending", "{d:#}");
        assert_eq!(d["attempts"], 0, "no attempt has ended: {d:#}");
    }
    // The events went on while that delivery was in flight: the rollout's end was recorded
    // after the event the stuck delivery tells of.
    let events = rig.events(&id).await;
    let completed = events
        .iter()
        .find(|e| e["kind"] == "completed")
        .expect("a completed event");
    assert!(completed["id"].as_i64().unwrap() > started["event_id"].as_i64().unwrap());
    let started_event = events
        .iter()
        .find(|e| e["id"] == started["event_id"])
        .unwrap();
    let at = |e: &Value| {
        e["at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    assert!(at(completed) >= at(started_event));
}

#[tokio::test]
async fn a_playbook_with_a_bad_webhook_url_is_refused_with_its_location() {
    let app = TestApp::start().await;
    let text = "name: x\ntargets:\n  all: true\nimage:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\nnotify:\n  - url: http://hooks.example.com/a\n  - url: smtp://mail.example.com\n";
    let r = app
        .post("/api/v1/rollouts?dry_run=true")
        .header("content-type", "application/yaml")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_yaml");
    assert_eq!(body["error"]["line"], 8, "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http:// or https://"),
        "{body:#}"
    );

    // A secret variable the service does not have is refused at submission, located too.
    let text = text.replace(
        "  - url: smtp://mail.example.com\n",
        "    secret_env: FLEETUP_TEST_NO_SUCH_VARIABLE_4F2A\n",
    );
    let r = app
        .post("/api/v1/rollouts?dry_run=true")
        .header("content-type", "application/yaml")
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["line"], 8, "{body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("FLEETUP_TEST_NO_SUCH_VARIABLE_4F2A"),
        "{body:#}"
    );

    // An https target is taken as written (verified against the system's roots and
    // --notify-ca when sent), shown redacted.
    let text = "name: x\ntargets:\n  all: true\nimage:\n  ios: c2960x-universalk9-mz.152-7.E8.bin\nnotify:\n  - url: https://hooks.slack.com/services/T/B/SECRET\n    format: slack\n";
    let r = app
        .post("/api/v1/rollouts?dry_run=true")
        .header("content-type", "application/yaml")
        .body(text)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(
        status.is_success() || !body.contains("notify"),
        "{status}: {body}"
    );
    assert!(
        !body.contains("SECRET"),
        "the URL is shown redacted: {body}"
    );
    app.service.stop().await;
}

/// A test CA and a server certificate it signed for 127.0.0.1, made with the openssl command
/// line: `(ca, cert, key)` PEM files in `dir`.
fn ca_and_server_cert(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command line");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=fleetup test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "hook.key",
                "-out",
                "hook.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        p("hook.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "hook.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "hook.ext",
        "-out",
        "hook.pem",
    ]);
    (p("ca.pem"), p("hook.pem"), p("hook.key"))
}

/// An https receiver on a free port with the certificate and key in `cert`/`key`: the
/// `X-Fleetup-Event` of each request it got.
async fn tls_receiver(cert: &std::path::Path, key: &std::path::Path) -> (SocketAddr, Hits) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    async fn hook(State(hits): State<Hits>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let event = headers
            .get("x-fleetup-event")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        hits.lock().unwrap().push(Hit {
            delivery: String::new(),
            event,
            signature: None,
            body: body.to_vec(),
            status: 200,
        });
        StatusCode::OK
    }
    let hits: Hits = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // A client that refused the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An https webhook: refused while its certificate is not trusted (the failure is in the
/// history), delivered once `--notify-ca` names the CA; a bad `--notify-ca` file stops `serve`
/// at start with the file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_webhook_is_verified_against_the_system_roots_and_notify_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server_cert(certs.path());
    let (addr, hits) = tls_receiver(&cert, &key).await;
    let hook = format!(
        "  - url: https://127.0.0.1:{}/hook\n    events: [finished]\n",
        addr.port()
    );

    for trusted in [false, true] {
        let config = certs.path().join(format!("fleetup-{trusted}.yml"));
        std::fs::write(&config, format!("notify-attempts: 2\nnotify:\n{hook}")).unwrap();
        let mut flags = vec![
            "--config",
            config.to_str().unwrap(),
            "--notify-retry-ms",
            "20",
        ];
        if trusted {
            flags.extend(["--notify-ca", ca.to_str().unwrap()]);
        }
        let rig = Rig::options(1)
            .serve_process()
            .process_flags(&flags)
            .start()
            .await;
        let id = rig.submit(&playbook("")).await;
        let d = rig.wait_end(&id).await;
        assert_eq!(d["state"], "completed", "{d:#}");
        let list = eventually("the delivery settled", || async {
            let list = deliveries(&rig, &id).await;
            (list.len() == 1 && list[0]["state"] != "pending").then_some(list)
        })
        .await;
        let d = &list[0];
        assert_eq!(
            d["target"],
            format!("https://127.0.0.1:{}/hook", addr.port())
        );
        if trusted {
            assert_eq!(d["state"], "delivered", "{d:#}");
            assert_eq!(d["last_status"], 200, "{d:#}");
        } else {
            assert_eq!(d["state"], "failed", "{d:#}");
            assert_eq!(d["attempts"], 2, "{d:#}");
            let error = d["last_error"].as_str().unwrap_or_default().to_lowercase();
            assert!(
                error.contains("certificate") || error.contains("tls"),
                "{d:#}"
            );
        }
    }
    let hits = hits.lock().unwrap().clone();
    assert_eq!(
        hits.len(),
        1,
        "only the trusted service got through: {hits:#?}"
    );
    assert_eq!(hits[0].event, "finished");

    // A --notify-ca that is no certificate bundle: serve refuses to start, naming the file.
    let junk = certs.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args(["serve", "--data-dir"])
        .arg(data.path())
        .args(["--http", "127.0.0.1:0", "--tftp", "off", "--ftp", "off"])
        .args(["--image-http", "off", "--image-https", "off"])
        .arg("--notify-ca")
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--notify-ca")
            && stderr.contains("junk.pem")
            && stderr.contains("no certificate"),
        "{stderr}"
    );
}
