//! The SSH drivers and the single-device upgrade against the simulated fleet (`fleetup lab`):
//! real SSH, the device really pulls the image over FTP (from vsftpd, a third-party server, with
//! the credentials in the copy URL),
//! and every injected fault must end with the right reason and a valid boot variable.

use crate::support::{eventually, random_base};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use md5::Digest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use fleetup::device::{
    self, CopySource, DeviceError, FailureReason, Step, StepEvent, StepStatus, Target, Timeouts,
    Transfer, UpgradeFailure, UpgradeOptions, UpgradeOutcome, UpgradePlan, UpgradeResult,
    file_name,
};
use fleetup::images::pseudo_random_bytes;
use fleetup::inventory::{Login, Secret};
use fleetup::shutdown::Shutdown;
use fleetup::sim::{Fault, Lab, LabConfig};

const NEW_IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";
const NEW_VERSION: &str = "15.2(7)E8";
const OLD_IMAGE: &str = "c2960x-universalk9-mz.152-4.E10.bin";

/// vsftpd (a third-party FTP server) with anonymous read-only access on a free port of a random
/// loopback address, serving one image. Killed on drop.
struct ImageServer {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image_server(name: &str, data: &[u8]) -> ImageServer {
    let bin = ["/usr/sbin/vsftpd", "/usr/bin/vsftpd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("these tests need vsftpd (Debian package vsftpd) as the image server");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // vsftpd serves anonymous users as user ftp: world-readable, and a root it cannot write.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join(name), data).unwrap();
    std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    let ip = Ipv4Addr::new(
        127,
        rand::random_range(20..250),
        rand::random_range(1..250),
        200,
    );
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = dir.path().join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address={ip}\nlisten_port={port}\nbackground=NO\n\
             anonymous_enable=YES\nlocal_enable=NO\nwrite_enable=NO\nanon_root={}\n\
             no_anon_password=YES\nsecure_chroot_dir={}\npasv_enable=YES\n\
             xferlog_enable=NO\nseccomp_sandbox=NO\n",
            root.display(),
            empty.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let child = std::process::Command::new(bin)
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = ImageServer {
        child,
        addr: SocketAddr::from((ip, port)),
        _dir: dir,
    };
    // Ready once it greets: a device must never find the port closed (refused, under load).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        use std::io::Read;
        if let Ok(mut c) = std::net::TcpStream::connect(server.addr) {
            let mut greeting = [0u8; 3];
            if c.read_exact(&mut greeting).is_ok() && &greeting == b"220" {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vsftpd did not start listening on {}",
            server.addr
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// fleetup's own TFTP server on a random loopback address. Stops with `shutdown`.
async fn fleetup_tftp(
    name: &str,
    data: &[u8],
    shutdown: &Shutdown,
) -> (SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), data).unwrap();
    let ip = Ipv4Addr::new(
        127,
        rand::random_range(20..250),
        rand::random_range(1..250),
        250,
    );
    // Bound before the task starts: requests sent from now on are queued by the kernel.
    let socket = fleetup::tftp::bind(SocketAddr::from((ip, 0)))
        .await
        .unwrap();
    let addr = socket.local_addr().unwrap();
    shutdown.tasks.spawn(fleetup::tftp::run(
        socket,
        dir.path().to_path_buf(),
        fleetup::tftp::TftpConfig::default(),
        fleetup::transfers::Transfers::new(),
        shutdown.clone(),
    ));
    (addr, dir)
}

/// Whatever serves the image, kept alive as long as the rig.
struct FileServer {
    _vsftpd: Option<ImageServer>,
    _tftp_root: Option<tempfile::TempDir>,
}

/// A driver-level rig, not a rollout rig: a lab and a file server, driven straight through
/// `fleetup::device` with no service, inventory or store in between (the rollout rig is
/// `support::Rig`).
struct Rig {
    lab: Lab,
    shutdown: Shutdown,
    _server: FileServer,
    source: CopySource,
    image_name: String,
    image: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// Big enough for many TFTP blocks.
fn test_image() -> Vec<u8> {
    pseudo_random_bytes(300_000, 1)
}

impl Rig {
    /// A lab whose devices pull the image from vsftpd, with the FTP credentials in the URL.
    async fn start(devices: usize, tweak: impl FnOnce(&mut LabConfig)) -> Rig {
        Self::start_persona(devices, NEW_IMAGE, tweak).await
    }

    async fn start_persona(
        devices: usize,
        image_name: &str,
        tweak: impl FnOnce(&mut LabConfig),
    ) -> Rig {
        let image = test_image();
        let server = image_server(image_name, &image);
        let source = CopySource::new(
            Transfer::Ftp {
                username: "anonymous".into(),
                password: Secret("fleetup@".into()),
            },
            server.addr.ip().to_string(),
        );
        let port = server.addr.port();
        Self::with_server(
            devices,
            image_name,
            image,
            FileServer {
                _vsftpd: Some(server),
                _tftp_root: None,
            },
            source,
            Shutdown::new(),
            |c| {
                c.ftp_port = port;
                tweak(c)
            },
        )
        .await
    }

    /// A lab whose devices pull the image from fleetup's own TFTP server.
    async fn start_tftp(devices: usize) -> Rig {
        let image = test_image();
        let shutdown = Shutdown::new();
        let (addr, dir) = fleetup_tftp(NEW_IMAGE, &image, &shutdown).await;
        let source = CopySource::new(Transfer::Tftp, addr.ip().to_string());
        Self::with_server(
            devices,
            NEW_IMAGE,
            image,
            FileServer {
                _vsftpd: None,
                _tftp_root: Some(dir),
            },
            source,
            shutdown,
            |c| c.tftp_port = addr.port(),
        )
        .await
    }

    async fn with_server(
        devices: usize,
        image_name: &str,
        image: Vec<u8>,
        server: FileServer,
        source: CopySource,
        shutdown: Shutdown,
        tweak: impl FnOnce(&mut LabConfig),
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LabConfig {
            devices,
            base_ip: random_base(),
            ssh_port: 0,
            state_dir: dir.path().to_path_buf(),
            ..LabConfig::default()
        };
        tweak(&mut config);
        let lab = Lab::start(config, shutdown.clone()).await.unwrap();
        Rig {
            lab,
            shutdown,
            _server: server,
            source,
            image_name: image_name.to_string(),
            image,
            _dir: dir,
        }
    }

    fn name(&self, k: usize) -> String {
        self.lab.devices()[k].name.clone()
    }

    fn target(&self, k: usize) -> Target {
        let d = &self.lab.devices()[k];
        Target {
            name: d.name.clone(),
            host: d.ssh.ip().to_string(),
            port: d.ssh.port(),
            platform: d.platform,
            login: Login {
                username: "admin".into(),
                password: Some(Secret("cisco".into())),
                enable_secret: Some(Secret("cisco".into())),
            },
            private_key: None,
            known_host_key: None,
            transcript: None,
        }
    }

    fn plan(&self) -> UpgradePlan {
        UpgradePlan {
            image: self.image_name.clone().into(),
            md5: fleetup::images::ImageMd5::parse(&hex::encode(md5::Md5::digest(&self.image)))
                .unwrap(),
            size: self.image.len() as u64,
            kickstart: None,
            source: self.source.clone(),
            fallback: Vec::new(),
            previous_image: None,
            previous_version: None,
            committed: false,
            expected_version: None,
            options: UpgradeOptions::default(),
            timeouts: timeouts(),
        }
    }

    async fn upgrade(
        &self,
        k: usize,
        plan: &UpgradePlan,
    ) -> (Result<UpgradeOutcome, UpgradeFailure>, Vec<StepEvent>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = device::upgrade(&self.target(k), plan, tx, CancellationToken::new()).await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }

    /// The boot variable names only files that are on flash and that the device can boot:
    /// the old image, or the new one when it is intact.
    fn assert_boot_valid(&self, k: usize) -> Vec<String> {
        let state = self.lab.state(&self.name(k)).unwrap();
        let files: Vec<&str> = state.flash.files.iter().map(|f| f.name.as_str()).collect();
        for entry in &state.boot_variable {
            let name = file_name(entry);
            assert!(
                files.contains(&name),
                "boot variable {:?} names {name}, not on flash {files:?}",
                state.boot_variable
            );
            assert!(
                name == OLD_IMAGE || name == NEW_IMAGE,
                "unexpected boot entry {entry}"
            );
            if name == NEW_IMAGE {
                let size = state
                    .flash
                    .files
                    .iter()
                    .find(|f| f.name == NEW_IMAGE)
                    .unwrap()
                    .size;
                assert_eq!(
                    size,
                    self.image.len() as u64,
                    "the new image on flash is incomplete"
                );
            }
        }
        state
            .boot_variable
            .iter()
            .map(|e| file_name(e).to_string())
            .collect()
    }

    async fn stop(self) {
        self.shutdown.shutdown_and_wait().await;
    }
}

/// Generous limits: they only end hung tests, except `reload` where a device that never comes
/// back is the behaviour under test.
fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(10),
        auth: Duration::from_secs(10),
        command: Duration::from_secs(30),
        copy: Duration::from_secs(60),
        verify: Duration::from_secs(60),
        install: Duration::from_secs(60),
        reload: Duration::from_secs(60),
        poll_interval: Duration::from_millis(100),
        keepalive: Duration::from_secs(5),
        commit: Duration::from_secs(30 * 60),
        members: Duration::from_secs(5),
    }
}

fn steps_done(events: &[StepEvent]) -> Vec<Step> {
    events
        .iter()
        .filter(|e| e.status == StepStatus::Done)
        .map(|e| e.step)
        .collect()
}

#[tokio::test]
async fn facts_on_first_contact_return_the_host_key_to_pin() {
    let rig = Rig::start(1, |_| {}).await;
    let target = rig.target(0);
    let (facts, key) = device::facts(&target, &timeouts()).await.unwrap();
    assert_eq!(facts.model.as_deref(), Some("WS-C2960X-48FPD-L"));
    assert_eq!(facts.version.as_deref(), Some("15.2(4)E10"));
    assert_eq!(facts.image.as_deref().map(file_name), Some(OLD_IMAGE));
    let key = key.expect("first use returns the key");
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    // Pinned: the same key is accepted and not returned again.
    let pinned = Target {
        known_host_key: Some(key.clone()),
        ..target
    };
    let (again, none) = device::facts(&pinned, &timeouts()).await.unwrap();
    assert_eq!(again.serial, facts.serial);
    assert_eq!(none, None);
    rig.stop().await;
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let rig = Rig::start(2, |_| {}).await;
    // The key of another device stands for the key of a replaced (or spoofed) box.
    let (_, other_key) = device::facts(&rig.target(1), &timeouts()).await.unwrap();
    let target = Target {
        known_host_key: other_key.clone(),
        ..rig.target(0)
    };
    let err = device::facts(&target, &timeouts()).await.unwrap_err();
    let DeviceError::HostKeyChanged { pinned, seen, .. } = &err else {
        panic!("expected HostKeyChanged, got {err}");
    };
    assert_eq!(Some(pinned.clone()), other_key);
    assert_ne!(pinned, seen);
    assert!(
        err.to_string().contains("fleetup device trust lab-sw-001"),
        "{err}"
    );
    let (result, _) = rig.upgrade_with_target(target, &rig.plan()).await;
    let failure = result.unwrap_err();
    assert_eq!(failure.reason, FailureReason::HostKeyChanged);
    assert_eq!(
        rig.lab.state(&rig.name(0)).unwrap().last_commands.len(),
        0,
        "nothing ran on the device"
    );
    rig.stop().await;
}

impl Rig {
    async fn upgrade_with_target(
        &self,
        target: Target,
        plan: &UpgradePlan,
    ) -> (Result<UpgradeOutcome, UpgradeFailure>, Vec<StepEvent>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = device::upgrade(&target, plan, tx, CancellationToken::new()).await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }
}

#[tokio::test]
async fn happy_path_c2960x_bundle_mode() {
    let rig = Rig::start(1, |_| {}).await;
    let plan = rig.plan();
    let (result, events) = rig.upgrade(0, &plan).await;
    let outcome = result.unwrap_or_else(|f| panic!("{f}\nevents: {events:#?}"));
    assert_eq!(outcome.result, UpgradeResult::Upgraded);
    assert_eq!(outcome.before.version.as_deref(), Some("15.2(4)E10"));
    assert_eq!(outcome.after.version.as_deref(), Some(NEW_VERSION));
    assert!(outcome.host_key.starts_with("ssh-ed25519 "));
    assert_eq!(
        steps_done(&events),
        [
            Step::Connect,
            Step::Facts,
            Step::FilePresent,
            Step::FreeSpace,
            Step::Copy,
            Step::VerifyMd5,
            Step::ConfigBackup,
            Step::SetBoot,
            Step::Save,
            Step::Reload,
            Step::WaitBack,
            Step::PostCheck,
            Step::ConfigBackup
        ]
    );
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.reload_count, 1);
    assert_eq!(state.version, NEW_VERSION);
    assert_eq!(file_name(&state.running_image), NEW_IMAGE);
    // New image first, the old one kept as the fallback.
    assert_eq!(rig.assert_boot_valid(0), [NEW_IMAGE, OLD_IMAGE]);
    assert!(!state.unsaved_changes);

    // Running it again changes nothing.
    let (again, events) = rig.upgrade(0, &plan).await;
    assert_eq!(again.unwrap().result, UpgradeResult::AlreadyCurrent);
    assert!(!events.iter().any(|e| e.step == Step::Copy));
    assert_eq!(rig.lab.state(&rig.name(0)).unwrap().reload_count, 1);
    rig.stop().await;
}

#[tokio::test]
async fn cleanup_drops_the_fallback_before_deleting_the_old_image() {
    let rig = Rig::start(1, |_| {}).await;
    let mut plan = rig.plan();
    plan.options.delete_old_image = true;
    let (result, events) = rig.upgrade(0, &plan).await;
    result.unwrap_or_else(|f| panic!("{f}\nevents: {events:#?}"));
    assert!(steps_done(&events).contains(&Step::Cleanup));
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert!(
        !state.flash.files.iter().any(|f| f.name == OLD_IMAGE),
        "old image deleted"
    );
    assert_eq!(rig.assert_boot_valid(0), [NEW_IMAGE]);
    rig.stop().await;
}

#[tokio::test]
async fn stage_only_copies_and_verifies_without_touching_boot() {
    let rig = Rig::start(1, |_| {}).await;
    let before = rig.lab.state(&rig.name(0)).unwrap().boot_variable;
    let mut plan = rig.plan();
    plan.options.stage_only = true;
    let (result, _) = rig.upgrade(0, &plan).await;
    assert_eq!(result.unwrap().result, UpgradeResult::Staged);
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.boot_variable, before);
    assert_eq!(state.reload_count, 0);
    assert!(
        state
            .flash
            .files
            .iter()
            .any(|f| f.name == NEW_IMAGE && f.size == rig.image.len() as u64)
    );
    // A second run finds the verified image and does not copy again.
    plan.options.stage_only = false;
    let (result, events) = rig.upgrade(0, &plan).await;
    result.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.step == Step::Copy && e.status == StepStatus::Skipped)
    );
    rig.stop().await;
}

/// Run an upgrade against a device with `fault`; return the failure after checking the boot
/// variable is still valid.
async fn faulty(
    fault: Fault,
    tweak: impl FnOnce(&mut LabConfig),
    tweak_plan: impl FnOnce(&mut UpgradePlan),
) -> (Rig, UpgradeFailure, Vec<StepEvent>) {
    let rig = Rig::start(1, tweak).await;
    assert!(rig.lab.set_fault(&rig.name(0), fault));
    let mut plan = rig.plan();
    tweak_plan(&mut plan);
    let (result, events) = rig.upgrade(0, &plan).await;
    let failure = match result {
        Ok(o) => panic!("{fault} did not fail the upgrade: {:?}", o.result),
        Err(f) => f,
    };
    rig.assert_boot_valid(0);
    (rig, failure, events)
}

#[tokio::test]
async fn tftp_timeout_fails_the_copy_and_leaves_boot_alone() {
    let (rig, failure, _) = faulty(Fault::TftpTimeout, |_| {}, |_| {}).await;
    assert_eq!(failure.reason, FailureReason::Timeout, "{failure}");
    assert_eq!(failure.step, Step::Copy);
    assert_eq!(failure.boot_restored, None);
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.reload_count, 0);
    assert!(
        !state.last_commands.iter().any(|c| c.starts_with("boot")),
        "{:?}",
        state.last_commands
    );
    rig.stop().await;
}

#[tokio::test]
async fn corrupt_download_is_caught_by_md5_and_deleted() {
    let (rig, failure, _) = faulty(Fault::CorruptDownload, |_| {}, |_| {}).await;
    assert_eq!(failure.reason, FailureReason::CorruptImage, "{failure}");
    assert_eq!(failure.step, Step::VerifyMd5);
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert!(
        !state.flash.files.iter().any(|f| f.name == NEW_IMAGE),
        "the corrupt copy is deleted"
    );
    assert_eq!(state.reload_count, 0);
    rig.stop().await;
}

#[tokio::test]
async fn flash_too_small_is_refused_before_copying() {
    let (rig, failure, _) = faulty(Fault::FlashTooSmall, |_| {}, |_| {}).await;
    assert_eq!(failure.reason, FailureReason::FlashFull, "{failure}");
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert!(
        !state.last_commands.iter().any(|c| c.starts_with("copy")),
        "{:?}",
        state.last_commands
    );
    rig.stop().await;
}

#[tokio::test]
async fn wrong_password_is_an_auth_failure() {
    let (rig, failure, _) = faulty(Fault::WrongCredentials, |_| {}, |_| {}).await;
    assert_eq!(failure.reason, FailureReason::AuthFailed, "{failure}");
    assert_eq!(failure.step, Step::Connect);
    assert!(failure.message.contains("admin"), "{failure}");
    rig.stop().await;
}

#[tokio::test]
async fn ssh_drop_mid_copy_is_reported_as_such() {
    let (rig, failure, _) = faulty(Fault::DropMidCopy, |_| {}, |_| {}).await;
    assert_eq!(
        failure.reason,
        FailureReason::ConnectionLostMidCopy,
        "{failure}"
    );
    assert_eq!(failure.step, Step::Copy);
    assert_eq!(rig.lab.state(&rig.name(0)).unwrap().reload_count, 0);
    rig.stop().await;
}

#[tokio::test]
async fn a_device_that_never_comes_back_keeps_a_valid_boot_variable() {
    let (rig, failure, _) = faulty(
        Fault::ReloadNeverReturns,
        |_| {},
        |p| p.timeouts.reload = Duration::from_secs(2),
    )
    .await;
    assert_eq!(failure.reason, FailureReason::NeverCameBack, "{failure}");
    assert_eq!(failure.step, Step::WaitBack);
    assert!(failure.reload_sent);
    // The verified new image first, the old one as fallback: whatever the box boots is good.
    assert_eq!(rig.assert_boot_valid(0), [NEW_IMAGE, OLD_IMAGE]);
    rig.stop().await;
}

#[tokio::test]
async fn coming_back_on_the_old_image_restores_the_boot_variable() {
    let before_boot = {
        let rig = Rig::start(1, |_| {}).await;
        let b = rig.lab.state(&rig.name(0)).unwrap().boot_variable;
        rig.stop().await;
        b
    };
    let (rig, failure, events) = faulty(Fault::ReloadOldImage, |_| {}, |_| {}).await;
    assert_eq!(
        failure.reason,
        FailureReason::CameBackOnOldImage,
        "{failure}\n{events:#?}"
    );
    assert_eq!(failure.step, Step::PostCheck);
    assert_eq!(failure.boot_restored, Some(true));
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.reload_count, 1);
    let restored: Vec<&str> = state.boot_variable.iter().map(|e| file_name(e)).collect();
    let original: Vec<&str> = before_boot.iter().map(|e| file_name(e)).collect();
    assert_eq!(restored, original);
    rig.stop().await;
}

#[tokio::test]
async fn unusual_hostnames_work_end_to_end() {
    // `core-sw.1-a001`: dots and dashes; the long one is 40 characters, so config mode
    // truncates it in the prompt while `boot system` is being set.
    for prefix in ["core-sw.1-a", "dc1-row42-rack17-core-switch-primary-"] {
        let rig = Rig::start(1, |c| c.name_prefix = prefix.into()).await;
        let name = rig.name(0);
        assert!(name.starts_with(prefix));
        let (result, events) = rig.upgrade(0, &rig.plan()).await;
        let outcome = result.unwrap_or_else(|f| panic!("{name}: {f}\nevents: {events:#?}"));
        assert_eq!(
            outcome.after.version.as_deref(),
            Some(NEW_VERSION),
            "{name}"
        );
        assert_eq!(rig.assert_boot_valid(0), [NEW_IMAGE, OLD_IMAGE], "{name}");
        rig.stop().await;
    }
}

#[tokio::test]
async fn a_copy_slower_than_its_timeout_fails_with_timeout() {
    let (rig, failure, _) = faulty(
        Fault::SlowTransfer,
        |c| c.slow_rate = 10_000,
        |p| p.timeouts.copy = Duration::from_secs(1),
    )
    .await;
    assert_eq!(failure.reason, FailureReason::Timeout, "{failure}");
    assert_eq!(failure.step, Step::Copy);
    assert!(
        failure.message.contains("did not finish in time"),
        "{failure}"
    );
    // The command and its echo carried the FTP password; the failure must not.
    assert!(!failure.message.contains("fleetup@"), "{failure}");
    assert!(failure.message.contains("anonymous:***@"), "{failure}");
    assert_eq!(rig.lab.state(&rig.name(0)).unwrap().reload_count, 0);
    rig.stop().await;
}

#[tokio::test]
async fn cancelled_before_any_change_touches_nothing() {
    let rig = Rig::start(1, |_| {}).await;
    let before = rig.lab.state(&rig.name(0)).unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (tx, _rx) = mpsc::unbounded_channel();
    let failure = device::upgrade(&rig.target(0), &rig.plan(), tx, cancel)
        .await
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::Cancelled);
    let after = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(after.boot_variable, before.boot_variable);
    assert!(!after.flash.files.iter().any(|f| f.name == NEW_IMAGE));
    rig.stop().await;
}

/// A service stopped while the device reloads resumes: it only waits and checks, and never
/// reloads twice.
#[tokio::test]
async fn an_upgrade_resumes_after_the_reload_without_reloading_again() {
    let rig = Rig::start(1, |_| {}).await;
    let plan = rig.plan();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<StepEvent>();
    let stopper = cancel.clone();
    let watcher = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if e.step == Step::Reload && e.status == StepStatus::Done {
                stopper.cancel();
                return true;
            }
        }
        false
    });
    let failure = device::upgrade(&rig.target(0), &plan, tx, cancel)
        .await
        .unwrap_err();
    assert_eq!(failure.reason, FailureReason::Cancelled, "{failure}");
    assert!(failure.reload_sent);
    assert!(watcher.await.unwrap());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let outcome = device::resume_after_reload(
        &rig.target(0),
        &plan,
        tx,
        None,
        Some(std::time::SystemTime::now()),
        CancellationToken::new(),
    )
    .await;
    let device::Resumed::Done(Ok(outcome)) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(outcome.result, UpgradeResult::Upgraded);
    assert_eq!(outcome.after.version.as_deref(), Some(NEW_VERSION));
    let mut steps = Vec::new();
    while let Ok(e) = rx.try_recv() {
        steps.push(e.step);
    }
    assert!(
        !steps.contains(&Step::Reload) && !steps.contains(&Step::Copy),
        "{steps:?}"
    );
    assert_eq!(rig.lab.state(&rig.name(0)).unwrap().reload_count, 1);
    rig.stop().await;
}

#[tokio::test]
async fn happy_path_over_fleetups_own_tftp_server() {
    let rig = Rig::start_tftp(1).await;
    let (result, events) = rig.upgrade(0, &rig.plan()).await;
    let outcome = result.unwrap_or_else(|f| panic!("{f}\nevents: {events:#?}"));
    assert_eq!(outcome.after.version.as_deref(), Some(NEW_VERSION));
    assert!(
        events
            .iter()
            .any(|e| e.step == Step::Copy && e.message.starts_with("copy tftp://"))
    );
    assert_eq!(rig.assert_boot_valid(0), [NEW_IMAGE, OLD_IMAGE]);
    rig.stop().await;
}

#[tokio::test]
async fn a_wrong_enable_secret_is_an_auth_failure_naming_the_secret() {
    let rig = Rig::start(1, |c| c.enable_secret = "other-secret".into()).await;
    let err = device::facts(&rig.target(0), &timeouts())
        .await
        .unwrap_err();
    assert!(matches!(err, DeviceError::EnableFailed { .. }), "{err}");
    assert!(err.to_string().contains("enable secret"), "{err}");
    assert!(
        !err.to_string().contains("cisco"),
        "the secret tried is never shown: {err}"
    );
    let (result, _) = rig.upgrade(0, &rig.plan()).await;
    assert_eq!(result.unwrap_err().reason, FailureReason::AuthFailed);
    rig.stop().await;
}

#[tokio::test]
async fn happy_path_c9300_install_mode() {
    let image = "cat9k_iosxe.17.09.04a.SPA.bin";
    let rig = Rig::start_persona(1, image, |c| c.personas = vec!["c9300".into()]).await;
    let mut plan = rig.plan();
    plan.options.delete_old_image = true;
    let (result, events) = rig.upgrade(0, &plan).await;
    let outcome = result.unwrap_or_else(|f| panic!("{f}\nevents: {events:#?}"));
    assert_eq!(outcome.after.version.as_deref(), Some("17.09.04a"));
    let done = steps_done(&events);
    assert!(
        done.contains(&Step::Install) && !done.contains(&Step::SetBoot),
        "{done:?}"
    );
    assert!(
        done.contains(&Step::Cleanup),
        "install remove inactive ran: {done:?}"
    );
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.reload_count, 1);
    assert_eq!(state.version, "17.09.04a");
    assert_eq!(
        state
            .boot_variable
            .iter()
            .map(|e| file_name(e))
            .collect::<Vec<_>>(),
        ["packages.conf"]
    );
    rig.stop().await;
}

#[tokio::test]
async fn happy_path_n9k_install_all() {
    let image = "nxos.10.2.5.bin";
    let rig = Rig::start_persona(1, image, |c| c.personas = vec!["n9k".into()]).await;
    let (result, events) = rig.upgrade(0, &rig.plan()).await;
    let outcome = result.unwrap_or_else(|f| panic!("{f}\nevents: {events:#?}"));
    assert_eq!(outcome.before.version.as_deref(), Some("9.3(8)"));
    assert_eq!(outcome.after.version.as_deref(), Some("10.2(5)"));
    assert!(steps_done(&events).contains(&Step::Install));
    let state = rig.lab.state(&rig.name(0)).unwrap();
    assert_eq!(state.reload_count, 1);
    assert_eq!(
        state
            .boot_variable
            .iter()
            .map(|e| file_name(e))
            .collect::<Vec<_>>(),
        [image]
    );
    rig.stop().await;
}

/// Install-mode platforms: a corrupt download stops before the installer runs, and (NX-OS) a box
/// that comes back on its old image is reported as such (the installer owns the boot variable).
#[tokio::test]
async fn install_mode_faults_on_c9300_and_n9k() {
    for (persona, image) in [
        ("c9300", "cat9k_iosxe.17.09.04a.SPA.bin"),
        ("n9k", "nxos.10.2.5.bin"),
    ] {
        let rig = Rig::start_persona(1, image, |c| c.personas = vec![persona.into()]).await;
        let name = rig.name(0);
        rig.lab.set_fault(&name, Fault::CorruptDownload);
        let (result, _) = rig.upgrade(0, &rig.plan()).await;
        let failure = result.unwrap_err();
        assert_eq!(
            failure.reason,
            FailureReason::CorruptImage,
            "{persona}: {failure}"
        );
        let state = rig.lab.state(&name).unwrap();
        assert_eq!(state.reload_count, 0, "{persona}");
        assert!(
            !state.flash.files.iter().any(|f| f.name == image),
            "{persona}: corrupt copy deleted"
        );

        rig.lab.clear_faults(&name);
        if persona == "c9300" {
            // The lab's reload-old-image fault acts on `boot system` lists, not packages.conf.
            rig.stop().await;
            continue;
        }
        rig.lab.set_fault(&name, Fault::ReloadOldImage);
        let (result, events) = rig.upgrade(0, &rig.plan()).await;
        let failure = result.unwrap_err();
        assert_eq!(
            failure.reason,
            FailureReason::CameBackOnOldImage,
            "{persona}: {failure}\n{events:#?}"
        );
        assert!(failure.reload_sent);
        assert_eq!(rig.lab.state(&name).unwrap().reload_count, 1, "{persona}");
        rig.stop().await;
    }
}

/// Generate an Ed25519 key pair with OpenSSH's ssh-keygen; returns (private key path, public line).
fn ssh_keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (path, public.trim().to_string())
}

#[tokio::test]
async fn public_key_login_with_an_openssh_key() {
    let keys = tempfile::tempdir().unwrap();
    let (good, good_pub) = ssh_keygen(keys.path(), "good");
    let (bad, _) = ssh_keygen(keys.path(), "bad");
    let rig = Rig::start(1, |c| c.authorized_keys = vec![good_pub.clone()]).await;
    // The key alone logs in: no password in the inventory.
    let mut target = rig.target(0);
    target.login.password = None;
    target.private_key = Some(good);
    let (facts, _) = device::facts(&target, &timeouts()).await.unwrap();
    assert_eq!(facts.version.as_deref(), Some("15.2(4)E10"));
    // A key the device does not know, and no password to fall back on: a clear refusal.
    target.private_key = Some(bad.clone());
    let err = device::facts(&target, &timeouts()).await.unwrap_err();
    assert!(matches!(err, DeviceError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("key was refused"), "{err}");
    // An unknown key with a password: falls back to the password.
    let mut with_password = rig.target(0);
    with_password.private_key = Some(bad);
    device::facts(&with_password, &timeouts()).await.unwrap();
    // A key file that is not a key: named in the error.
    let junk = keys.path().join("junk");
    std::fs::write(&junk, "not a key").unwrap();
    target.private_key = Some(junk);
    let err = device::facts(&target, &timeouts()).await.unwrap_err();
    assert!(err.to_string().contains("junk"), "{err}");
    rig.stop().await;
}

#[tokio::test]
async fn keyboard_interactive_login_answers_the_password_prompt() {
    let rig = Rig::start(1, |c| c.keyboard_interactive = true).await;
    let (facts, _) = device::facts(&rig.target(0), &timeouts()).await.unwrap();
    assert_eq!(facts.version.as_deref(), Some("15.2(4)E10"));
    let mut wrong = rig.target(0);
    wrong.login.password = Some(Secret("wrong".into()));
    let err = device::facts(&wrong, &timeouts()).await.unwrap_err();
    assert!(matches!(err, DeviceError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("keyboard-interactive"), "{err}");
    rig.stop().await;
}

/// A device that was up for less than a minute and reloads faster than the first probe after
/// the reload: the uptime ("0 minutes" before and after) cannot tell, and the device was never
/// seen down. Its `System restarted at` time tells. Without a reload, the same wait must not
/// mistake the box for a restarted one.
#[tokio::test]
async fn wait_back_tells_a_fast_restart_by_the_restart_time() {
    let rig = Rig::start(1, |c| c.boot_time = Duration::ZERO).await;
    let target = rig.target(0);
    let t = Timeouts {
        reload: Duration::from_secs(2),
        ..timeouts()
    };
    let mut session = device::Session::open(&target, &t).await.unwrap();
    let before = session.facts().await.unwrap().version;
    session.close().await;
    assert_eq!(before.uptime.as_deref(), Some("0 minutes"));
    assert!(before.restarted_at.is_some(), "{before:?}");
    let evidence = device::RestartEvidence::since(&before);

    // No reload: after the reload timeout it has still not "come back".
    let err = device::wait_back(&target, &t, &evidence, &CancellationToken::new())
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("never seen down"), "{err}");

    // The lab's restart time counts whole seconds: reload in a later second than the boot.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let session = device::Session::open(&target, &t).await.unwrap();
    session.reload().await.unwrap();
    eventually("the device to restart", || async {
        let st = rig.lab.state(&rig.name(0))?;
        (st.reload_count == 1).then_some(())
    })
    .await;
    assert!(rig.lab.wait_until_up(&rig.name(0)).await);
    let (session, after) = device::wait_back(&target, &t, &evidence, &CancellationToken::new())
        .await
        .unwrap();
    session.close().await;
    assert_eq!(after.version.uptime.as_deref(), Some("0 minutes"));
    assert_ne!(after.version.restarted_at, before.restarted_at);
    rig.stop().await;
}
