//! The rollout core's safety rules, each shown against real parts: one service per data
//! directory, no change before the maintenance window, facts read again after a failure, and
//! transfers tied to the job that started them.

use std::process::Command;

use fleetup::serve::{DataDirError, ServeArgs, ServeError, Service};

use crate::support::{ServeProcess, TOKEN, TestApp};

#[tokio::test]
async fn a_second_service_on_a_locked_data_directory_is_refused() {
    let app = TestApp::start().await;
    let args = ServeArgs {
        data_dir: app.dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let Err(err) = Service::start(&args, Some(TOKEN.into())).await else {
        panic!("a second service started on a data directory in use");
    };
    let pid = std::process::id();
    match &err {
        ServeError::Locked(DataDirError::InUse { holder, .. }) => {
            assert_eq!(holder, &format!("PID {pid}"));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("--data-dir"), "{err}");
    // Once the first one stops, the directory is free again.
    let dir = app.dir;
    app.service.stop().await;
    let again = Service::start(&args, Some(TOKEN.into())).await.unwrap();
    assert_eq!(again.http_addr.ip().to_string(), "127.0.0.1");
    again.stop().await;
    drop(dir);
}

#[test]
fn a_second_serve_process_exits_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = ServeProcess::start(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--tftp",
            "off",
            "--ftp",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("FLEETUP_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second serve started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("PID {}", first.pid())),
        "the message does not name the holder: {stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    // The first one is still serving.
    let health = Command::new("curl")
        .args(["-sf", &format!("{}/health", first.base_url)])
        .output()
        .unwrap();
    assert!(health.status.success());
}
