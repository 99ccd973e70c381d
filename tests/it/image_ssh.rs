//! The SCP/SFTP image server (`serve --image-scp`) against OpenSSH's own clients: `scp -O`
//! (the rcp protocol IOS speaks) and `sftp`, logging in with a one-time account of the
//! service's grants through `sshpass`.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use fleetup::transfers::{Protocol, TransferState};

use crate::support::{TestApp, write_random_file};

const IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";
const OTHER: &str = "c2960x-universalk9-mz.152-7.E9.bin";
const SIZE: usize = 3 * 1024 * 1024 + 777;
/// Upper bound on any one client run, so a broken server fails the test instead of hanging.
const GUARD: Duration = Duration::from_secs(120);

async fn start() -> TestApp {
    let app = TestApp::start_with(|a| {
        a.image_scp = "127.0.0.1:0".parse().unwrap();
        a.image_scp_options.lockout_after = 3;
    })
    .await;
    let store = app.dir.path().join("images");
    write_random_file(&store.join(IMAGE), SIZE, 5);
    write_random_file(&store.join(OTHER), 1000, 6);
    app
}

fn ssh_options(port: u16) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "PreferredAuthentications=password",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "LogLevel=ERROR",
        "-P",
        &port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Run an OpenSSH client through `sshpass -e` with `password`, `stdin` as its input.
async fn run(program: &str, password: &str, args: &[String], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("sshpass")
        .arg("-e")
        .arg(program)
        .args(args)
        .env("SSHPASS", password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sshpass {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not end"))
        .unwrap()
}

async fn scp_get(app: &TestApp, user: &str, pw: &str, remote: &str, local: &Path) -> Output {
    let port = app.service.scp_addr.unwrap().port();
    let mut args = vec!["-O".to_string()];
    args.extend(ssh_options(port));
    args.push(format!("{user}@127.0.0.1:{remote}"));
    args.push(local.display().to_string());
    run("scp", pw, &args, "").await
}

async fn sftp_get(app: &TestApp, user: &str, pw: &str, remote: &str, local: &Path) -> Output {
    let port = app.service.scp_addr.unwrap().port();
    let mut args = ssh_options(port);
    args.push(format!("{user}@127.0.0.1:{remote}"));
    args.push(local.display().to_string());
    run("sftp", pw, &args, "").await
}

/// An interactive `sftp` session fed `commands` on its input.
async fn sftp_session(app: &TestApp, user: &str, pw: &str, commands: &str) -> Output {
    let port = app.service.scp_addr.unwrap().port();
    let mut args = ssh_options(port);
    args.push(format!("{user}@127.0.0.1"));
    run("sftp", pw, &args, commands).await
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_and_sftp_download_byte_exact_and_show_as_transfers() {
    let app = start().await;
    let account = app.service.grants.issue_account(vec![IMAGE.into()]);
    let (user, pw) = (account.name(), account.secret().unwrap());
    let want = std::fs::read(app.dir.path().join("images").join(IMAGE)).unwrap();
    let work = tempfile::tempdir().unwrap();

    let by_scp = work.path().join("by-scp.bin");
    let out = scp_get(&app, user, pw, IMAGE, &by_scp).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read(&by_scp).unwrap() == want, "scp copy differs");

    // The path as IOS sends it, with a leading slash.
    let by_sftp = work.path().join("by-sftp.bin");
    let out = sftp_get(&app, user, pw, &format!("/{IMAGE}"), &by_sftp).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read(&by_sftp).unwrap() == want,
        "sftp copy differs"
    );

    let transfers = app.service.state.transfers.snapshot();
    for protocol in [Protocol::Scp, Protocol::Sftp] {
        let t = transfers
            .iter()
            .find(|t| t.protocol == protocol)
            .unwrap_or_else(|| panic!("no {protocol:?} transfer in {transfers:?}"));
        assert_eq!(t.state, TransferState::Completed, "{t:?}");
        assert_eq!(t.file, IMAGE);
        assert_eq!(t.bytes, SIZE as u64);
        assert_eq!(t.total, Some(SIZE as u64));
        assert_eq!(t.direction, "download");
    }
    // The API shows them as it shows TFTP and FTP.
    let api: serde_json::Value = app
        .get("/api/v1/transfers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let shown = api.to_string();
    assert!(
        shown.contains("\"scp\"") && shown.contains("\"sftp\""),
        "{shown}"
    );
    let health: serde_json::Value = app
        .get("/api/v1/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["service"]["scp"],
        app.service.scp_addr.unwrap().to_string(),
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_ended_grant_and_lockout_are_refused() {
    let app = start().await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("x.bin");
    let account = app.service.grants.issue_account(vec![IMAGE.into()]);
    let (user, pw) = (
        account.name().to_string(),
        account.secret().unwrap().to_string(),
    );

    let out = scp_get(&app, &user, "wrong-password", IMAGE, &dest).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!dest.exists());

    // A grant that ended (its job ended) is no login any more.
    drop(account);
    let out = scp_get(&app, &user, &pw, IMAGE, &dest).await;
    assert!(!out.status.success(), "{}", text(&out));
    let out = sftp_get(&app, &user, &pw, IMAGE, &dest).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!dest.exists());

    // That was the third failure from this address: now even a live account is refused.
    let fresh = app.service.grants.issue_account(vec![IMAGE.into()]);
    let out = scp_get(&app, fresh.name(), fresh.secret().unwrap(), IMAGE, &dest).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_files_traversal_and_listings_are_refused() {
    let app = start().await;
    let account = app.service.grants.issue_account(vec![IMAGE.into()]);
    let (user, pw) = (account.name(), account.secret().unwrap());
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("x.bin");

    for remote in [
        OTHER,
        "../fleetup.db",
        "/../api-token",
        ".incoming/x",
        "images",
    ] {
        let out = scp_get(&app, user, pw, remote, &dest).await;
        assert!(!out.status.success(), "{remote}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No such file"),
            "{remote}: {}",
            text(&out)
        );
        assert!(!dest.exists(), "{remote} was copied");
        let out = sftp_get(&app, user, pw, remote, &dest).await;
        assert!(!out.status.success(), "{remote}: {}", text(&out));
        assert!(!dest.exists(), "{remote} was copied over sftp");
    }

    let out = sftp_session(&app, user, pw, "ls\nls /\nls -la ..\n").await;
    let all = text(&out);
    assert!(!all.contains(IMAGE) && !all.contains(OTHER), "{all}");
    assert!(all.contains("ermission denied"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused() {
    let app = start().await;
    let account = app.service.grants.issue_account(vec![IMAGE.into()]);
    let (user, pw) = (account.name(), account.secret().unwrap());
    let port = app.service.scp_addr.unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("upload.bin");
    write_random_file(&local, 5000, 9);
    let store = app.dir.path().join("images");

    let mut args = vec!["-O".to_string()];
    args.extend(ssh_options(port));
    args.push(local.display().to_string());
    args.push(format!("{user}@127.0.0.1:upload.bin"));
    let out = run("scp", pw, &args, "").await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        text(&out)
    );
    assert!(!store.join("upload.bin").exists());

    let commands = format!(
        "put {} upload.bin\nrm {IMAGE}\nrename {IMAGE} x.bin\nmkdir d\n",
        local.display()
    );
    let out = sftp_session(&app, user, pw, &commands).await;
    let all = text(&out);
    assert!(all.contains("ermission denied"), "{all}");
    assert!(!store.join("upload.bin").exists(), "{all}");
    assert!(!store.join("x.bin").exists(), "{all}");
    assert!(!store.join("d").exists(), "{all}");
    assert!(store.join(IMAGE).exists(), "{all}");
}

/// Read from a raw TCP connection until the server closes it; what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open; got {got:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_address_are_capped_and_a_silent_client_is_closed() {
    use tokio::io::AsyncReadExt as _;
    let app = TestApp::start_with(|a| {
        a.image_scp = "127.0.0.1:0".parse().unwrap();
        a.image_scp_options.max_per_client = 1;
        a.image_scp_options.auth_timeout = 1;
    })
    .await;
    let addr = app.service.scp_addr.unwrap();
    // The first connection gets the server's banner and holds the address's one slot.
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut banner = vec![0u8; 8];
    tokio::time::timeout(GUARD, first.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    // A second one from the same address is closed without a word.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_until_closed(&mut second).await.is_empty());
    // The first never logs in: the server closes it after the login timeout.
    read_until_closed(&mut first).await;
    // Its slot is free again.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut banner = vec![0u8; 8];
    tokio::time::timeout(GUARD, third.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
}
