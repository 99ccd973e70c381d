//! The simulated fleet (`fleetup lab`) seen from the outside: OpenSSH and a russh client log in
//! over real sockets and drive the IOS command line.

use crate::support::random_base;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fleetup::images::pseudo_random_bytes;
use fleetup::shutdown::Shutdown;
use fleetup::sim::{Lab, LabConfig};
use regex::Regex;
use russh::ChannelMsg;
use russh::client;

/// Every wait in these tests is for a condition; this only stops a hung test.
const HANG: Duration = Duration::from_secs(60);

struct TestLab {
    lab: Lab,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl TestLab {
    async fn start(devices: usize, tweak: impl FnOnce(&mut LabConfig)) -> TestLab {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LabConfig {
            devices,
            base_ip: random_base(),
            ssh_port: 0,
            state_dir: dir.path().to_path_buf(),
            admin: Some("127.0.0.1:0".parse().unwrap()),
            ..LabConfig::default()
        };
        tweak(&mut config);
        let shutdown = Shutdown::new();
        let lab = Lab::start(config, shutdown.clone()).await.unwrap();
        TestLab {
            lab,
            shutdown,
            _dir: dir,
        }
    }

    fn ssh(&self, k: usize) -> SocketAddr {
        self.lab.devices()[k].ssh
    }

    async fn stop(self) {
        self.shutdown.shutdown_and_wait().await;
    }
}

struct AcceptAny;

impl client::Handler for AcceptAny {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An interactive vty over SSH, with expect-style reads.
pub(crate) struct Vty {
    channel: russh::Channel<client::Msg>,
    _session: client::Handle<AcceptAny>,
    buf: String,
    closed: bool,
}

impl Vty {
    pub(crate) async fn open(addr: SocketAddr, user: &str, password: &str) -> Result<Vty, String> {
        let config = Arc::new(client::Config::default());
        let mut session = client::connect(config, addr, AcceptAny)
            .await
            .map_err(|e| e.to_string())?;
        let auth = session
            .authenticate_password(user, password)
            .await
            .map_err(|e| e.to_string())?;
        if !auth.success() {
            return Err("authentication refused".into());
        }
        let channel = session
            .channel_open_session()
            .await
            .map_err(|e| e.to_string())?;
        channel
            .request_pty(true, "vt100", 200, 24, 0, 0, &[])
            .await
            .map_err(|e| e.to_string())?;
        channel
            .request_shell(true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Vty {
            channel,
            _session: session,
            buf: String::new(),
            closed: false,
        })
    }

    pub(crate) async fn send(&mut self, text: &str) {
        self.channel
            .data_bytes(text.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Read until `re` matches; return everything up to the end of the match and keep the rest.
    pub(crate) async fn expect(&mut self, re: &str) -> String {
        let re = Regex::new(re).unwrap();
        let deadline = tokio::time::Instant::now() + HANG;
        loop {
            if let Some(m) = re.find(&self.buf) {
                let out = self.buf[..m.end()].to_string();
                self.buf.drain(..m.end());
                return out;
            }
            if self.closed {
                panic!(
                    "session closed while waiting for {re:?}; got {:?}",
                    self.buf
                );
            }
            match tokio::time::timeout_at(deadline, self.channel.wait()).await {
                Ok(Some(ChannelMsg::Data { data })) => {
                    self.buf.push_str(&String::from_utf8_lossy(&data))
                }
                Ok(Some(_)) => {}
                Ok(None) => self.closed = true,
                Err(_) => panic!("timed out waiting for {re:?}; got {:?}", self.buf),
            }
        }
    }

    /// Send a command line and return its output (echo and final prompt excluded).
    pub(crate) async fn cmd(&mut self, line: &str, prompt: &str) -> String {
        self.send(&format!("{line}\n")).await;
        let out = self
            .expect(&format!(r"(?m)^{}$", regex::escape(prompt)))
            .await;
        let out = out.strip_suffix(prompt).unwrap_or(&out);
        let echo = format!("{line}\r\n");
        out.strip_prefix(&echo)
            .unwrap_or_else(|| panic!("no echo of {line:?} in {out:?}"))
            .to_string()
    }

    /// Wait until the device drops the session.
    async fn wait_closed(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + HANG;
        while !self.closed {
            match tokio::time::timeout_at(deadline, self.channel.wait()).await {
                Ok(Some(ChannelMsg::Data { data })) => {
                    self.buf.push_str(&String::from_utf8_lossy(&data))
                }
                Ok(Some(_)) => {}
                Ok(None) => self.closed = true,
                Err(_) => panic!("session still open; got {:?}", self.buf),
            }
        }
        std::mem::take(&mut self.buf)
    }
}

async fn openssh(addr: SocketAddr, password: &str, command: &str) -> std::process::Output {
    tokio::process::Command::new("sshpass")
        .args(["-p", password, "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PubkeyAuthentication=no",
            "-p",
        ])
        .arg(addr.port().to_string())
        .arg(format!("admin@{}", addr.ip()))
        .arg(command)
        .output()
        .await
        .unwrap()
}

fn assert_line(text: &str, re: &str) {
    let r = Regex::new(&format!("(?m){re}")).unwrap();
    assert!(r.is_match(text), "no line matching {re:?} in:\n{text}");
}

#[tokio::test]
async fn openssh_logs_in_and_reads_show_version() {
    let lab = TestLab::start(2, |_| {}).await;
    let addr = lab.ssh(1);
    let out = openssh(addr, "cisco", "show version").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_line(
        &text,
        r"^Cisco IOS Software, C2960X Software \(C2960X-UNIVERSALK9-M\), Version 15\.2\(4\)E10, RELEASE SOFTWARE \(fc3\)\r$",
    );
    assert_line(&text, r"^lab-sw-002 uptime is \d+ minutes?\r$");
    assert_line(
        &text,
        r#"^System image file is "flash:/c2960x-universalk9-mz\.152-4\.E10\.bin"\r$"#,
    );
    assert_line(
        &text,
        r"^cisco WS-C2960X-48FPD-L \(APM86XXX\) processor .+ bytes of memory\.\r$",
    );
    assert_line(&text, r"^Processor board ID FOC\w{8}\r$");
    assert_line(
        &text,
        r"^\*    1 52    WS-C2960X-48FPD-L\s+15\.2\(4\)E10\s+C2960X-UNIVERSALK9-M\r$",
    );
    assert_line(&text, r"^Configuration register is 0xF\r$");

    let refused = openssh(addr, "wrong", "show version").await;
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    lab.stop().await;
}

#[tokio::test]
async fn prompts_enable_abbreviations_and_errors() {
    let lab = TestLab::start(1, |_| {}).await;
    let mut vty = Vty::open(lab.ssh(0), "admin", "cisco").await.unwrap();
    vty.expect(r"(?m)^lab-sw-001>$").await;
    // The prompts match the regexes scrapli and Ansible use.
    let exec = Regex::new(r"^[\w.\-@/:]{1,63}>\s?$").unwrap();
    let privileged = Regex::new(r"^[\w.\-@/:]{1,63}#\s?$").unwrap();
    let config = Regex::new(r"^[\w.\-@/:]{1,63}\([\w.\-@/:+]{0,32}\)#\s?$").unwrap();
    assert!(exec.is_match("lab-sw-001>"));

    let out = vty.cmd("conf t", "lab-sw-001>").await;
    assert_eq!(
        out,
        format!(
            "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
            " ".repeat(11)
        ),
        "configure needs enable"
    );
    assert_eq!(
        vty.cmd("show privilege", "lab-sw-001>").await,
        "Current privilege level is 1\r\n"
    );

    vty.send("enable\n").await;
    vty.expect("enable\r\nPassword: ").await;
    vty.send("nope\n").await;
    vty.expect("\r\nPassword: ").await;
    vty.send("cisco\n").await;
    let out = vty.expect(r"(?m)^lab-sw-001#$").await;
    assert!(!out.contains("cisco"), "the secret is not echoed: {out:?}");
    assert!(privileged.is_match("lab-sw-001#"));
    assert_eq!(
        vty.cmd("show privilege", "lab-sw-001#").await,
        "Current privilege level is 15\r\n"
    );
    // Until `terminal length 0`, long output stops at --More--: Space pages, Return adds one
    // line, anything else ends it.
    vty.send("show version\n").await;
    let first = vty.expect(r" --More-- $").await;
    assert_eq!(
        first.matches("\r\n").count(),
        24,
        "echo line + 23 lines: {first:?}"
    );
    vty.send(" ").await;
    vty.expect(r" --More-- $").await;
    vty.send("\r").await;
    let one = vty.expect(r" --More-- $").await;
    assert_eq!(one.matches("\r\n").count(), 1, "{one:?}");
    vty.send("q").await;
    // The pager erases itself; the prompt follows on the same line.
    let end = vty.expect(r"lab-sw-001#$").await;
    assert_eq!(
        end,
        format!("{0}{1}{0}lab-sw-001#", "\x08".repeat(10), " ".repeat(10))
    );
    assert_eq!(vty.cmd("terminal length 0", "lab-sw-001#").await, "");
    assert_eq!(vty.cmd("terminal width 511", "lab-sw-001#").await, "");

    let ver = vty.cmd("sh ver | i ^System image", "lab-sw-001#").await;
    assert_eq!(
        ver,
        "System image file is \"flash:/c2960x-universalk9-mz.152-4.E10.bin\"\r\n"
    );
    let out = vty.cmd("sh verr", "lab-sw-001#").await;
    assert_eq!(
        out,
        format!(
            "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
            " ".repeat(17)
        )
    );
    assert_eq!(
        vty.cmd("show", "lab-sw-001#").await,
        "% Incomplete command.\r\n\r\n"
    );
    assert_eq!(
        vty.cmd("e", "lab-sw-001#").await,
        "% Ambiguous command:  \"e\"\r\n",
        "enable and exit"
    );

    let dir = vty.cmd("dir flash:", "lab-sw-001#").await;
    assert!(dir.starts_with("Directory of flash:/\r\n\r\n"), "{dir}");
    assert_line(
        &dir,
        r"^\s+\d+  -rwx    26791424  \w{3} \d+ \d{4} \d\d:\d\d:\d\d \+00:00  c2960x-universalk9-mz\.152-4\.E10\.bin\r$",
    );
    let total = Regex::new(r"(?m)^(\d+) bytes total \((\d+) bytes free\)\r$").unwrap();
    let c = total.captures(&dir).expect("free space line");
    assert_eq!(&c[1], "122185728");
    assert_eq!(
        c[2].parse::<u64>().unwrap(),
        122185728 - 26791424 - 736 - 1915
    );
    let free_only = vty.cmd("dir flash: | i bytes free", "lab-sw-001#").await;
    assert!(total.is_match(&free_only), "{free_only}");

    let fs = vty.cmd("show file systems", "lab-sw-001#").await;
    assert_line(&fs, r"^\*\s+122185728\s+\d+\s+flash\s+rw\s+flash:\r$");
    assert_line(&fs, r"^\s+-\s+-\s+network\s+rw\s+tftp:\r$");

    let boot = vty.cmd("show boot", "lab-sw-001#").await;
    assert_line(
        &boot,
        r"^BOOT path-list      : flash:/c2960x-universalk9-mz\.152-4\.E10\.bin\r$",
    );

    vty.send("configure terminal\n").await;
    let banner = vty.expect(r"(?m)^lab-sw-001\(config\)#$").await;
    assert!(banner.contains("Enter configuration commands, one per line.  End with CNTL/Z.\r\n"));
    assert!(config.is_match("lab-sw-001(config)#"));
    assert_eq!(vty.cmd("hostname core-1", "core-1(config)#").await, "");
    assert_eq!(vty.cmd("end", "core-1#").await, "");
    let out = vty.cmd("write memory", "core-1#").await;
    assert_eq!(out, "Building configuration...\r\n[OK]\r\n");
    let run = vty
        .cmd("show running-config | include ^hostname", "core-1#")
        .await;
    assert_eq!(run, "hostname core-1\r\n");
    lab.stop().await;
}

/// One of fleetup's file servers on a random loopback address, serving `files`. Stops on drop.
struct FileServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    transfers: fleetup::transfers::Transfers,
    shutdown: Shutdown,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shutdown.token.cancel();
    }
}

/// A directory holding `files`, and a random 127.x.y.`last` address to serve it on.
fn served_dir(files: &[(&str, &[u8])], last: u8) -> (tempfile::TempDir, Ipv4Addr) {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let ip = Ipv4Addr::new(
        127,
        rand::random_range(20..250),
        rand::random_range(1..250),
        last,
    );
    (dir, ip)
}

async fn tftp_server(files: &[(&str, &[u8])]) -> FileServer {
    let (dir, ip) = served_dir(files, 250);
    // Bound before the task starts: requests sent from now on are queued by the kernel.
    let socket = fleetup::tftp::bind(SocketAddr::from((ip, 0)))
        .await
        .unwrap();
    let addr = socket.local_addr().unwrap();
    let transfers = fleetup::transfers::Transfers::new();
    let shutdown = Shutdown::new();
    tokio::spawn(fleetup::tftp::run(
        socket,
        dir.path().to_path_buf(),
        fleetup::tftp::TftpConfig::default(),
        transfers.clone(),
        shutdown.clone(),
    ));
    FileServer {
        addr,
        dir,
        transfers,
        shutdown,
    }
}

async fn md5sum(path: &std::path::Path) -> String {
    let out = tokio::process::Command::new("md5sum")
        .arg(path)
        .output()
        .await
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_string()
}

async fn admin_state(lab: &TestLab, device: &str) -> serde_json::Value {
    let url = format!(
        "http://{}/api/devices/{device}",
        lab.lab.admin_addr().unwrap()
    );
    fleetup::http_client::client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn enabled(addr: SocketAddr, host: &str) -> Vty {
    let mut vty = Vty::open(addr, "admin", "cisco").await.unwrap();
    vty.expect(&format!(r"(?m)^{host}>$")).await;
    vty.send("enable\n").await;
    vty.expect("Password: ").await;
    vty.send("cisco\n").await;
    vty.expect(&format!(r"(?m)^{host}#$")).await;
    vty.cmd("terminal length 0", &format!("{host}#")).await;
    vty
}

/// `copy tftp://… flash:` answering the destination prompt with Return; the whole output.
async fn copy_tftp(vty: &mut Vty, server: Ipv4Addr, file: &str, host: &str) -> String {
    vty.send(&format!("copy tftp://{server}/{file} flash:\n"))
        .await;
    vty.expect(&format!(
        r"Destination filename \[{}\]\? $",
        regex::escape(file)
    ))
    .await;
    vty.send("\n").await;
    vty.expect(&format!(r"(?m)^{host}#$")).await
}

const NEW_IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";

#[tokio::test]
async fn full_manual_upgrade_over_ssh() {
    let data = pseudo_random_bytes(300_000, 7);
    let server = tftp_server(&[(NEW_IMAGE, &data)]).await;
    let server_ip = match server.addr.ip() {
        std::net::IpAddr::V4(ip) => ip,
        _ => unreachable!(),
    };
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.tftp_port = server.addr.port();
        c.state_dir = state_dir.path().to_path_buf();
    })
    .await;
    let host = "lab-sw-001";
    let mut vty = enabled(lab.ssh(0), host).await;

    let out = copy_tftp(&mut vty, server_ip, NEW_IMAGE, host).await;
    let expected = format!(
        r"(?s)^\r\nAccessing tftp://{ip}/{f}\.\.\.\r\nLoading {f} from {ip} \(via Vlan1\): !+\r\n\[OK - 300000 bytes\]\r\n\r\n300000 bytes copied in \d+\.\d{{3}} secs \(\d+ bytes/sec\)\r\n{host}#$",
        ip = regex::escape(&server_ip.to_string()),
        f = regex::escape(NEW_IMAGE),
    );
    assert!(Regex::new(&expected).unwrap().is_match(&out), "{out:?}");
    let on_flash = state_dir.path().join(host).join("flash").join(NEW_IMAGE);
    assert_eq!(std::fs::read(&on_flash).unwrap(), data, "byte-exact copy");
    let served = server.transfers.snapshot();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].file, NEW_IMAGE);
    assert_eq!(served[0].bytes, 300_000);
    assert_eq!(
        served[0].client.ip(),
        lab.ssh(0).ip(),
        "pulled from the device's own address"
    );

    let want = md5sum(&server.dir.path().join(NEW_IMAGE)).await;
    let out = vty
        .cmd(
            &format!("verify /md5 flash:{NEW_IMAGE}"),
            &format!("{host}#"),
        )
        .await;
    let re =
        Regex::new(r"(?m)^\.+Done!\r\nverify /md5 \(flash:(\S+)\) = ([0-9a-f]{32})\r$").unwrap();
    let c = re.captures(&out).unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(&c[1], NEW_IMAGE);
    assert_eq!(&c[2], want);
    let out = vty
        .cmd(
            &format!("verify /md5 flash:{NEW_IMAGE} {want}"),
            &format!("{host}#"),
        )
        .await;
    assert!(
        out.contains(&format!("Verified (flash:{NEW_IMAGE}) = {want}\r\n")),
        "{out:?}"
    );

    vty.cmd("configure terminal", &format!("{host}(config)#"))
        .await;
    vty.cmd("no boot system", &format!("{host}(config)#")).await;
    vty.cmd(
        &format!("boot system flash:{NEW_IMAGE}"),
        &format!("{host}(config)#"),
    )
    .await;
    vty.cmd("end", &format!("{host}#")).await;
    let out = vty.cmd("write memory", &format!("{host}#")).await;
    assert_eq!(out, "Building configuration...\r\n[OK]\r\n");
    let boot = vty.cmd("show boot", &format!("{host}#")).await;
    assert_line(
        &boot,
        &format!(
            r"^BOOT path-list      : flash:{}\r$",
            regex::escape(NEW_IMAGE)
        ),
    );

    vty.send("reload\n").await;
    vty.expect(r"reload\r\nProceed with reload\? \[confirm\]$")
        .await;
    vty.send("\n").await;
    let tail = vty.wait_closed().await;
    assert!(
        tail.contains("%SYS-5-RELOAD: Reload requested by admin on vty0"),
        "{tail:?}"
    );
    assert!(lab.lab.wait_until_up(host).await);

    let out = openssh(lab.ssh(0), "cisco", "show version").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_line(&text, r"Version 15\.2\(7\)E8, RELEASE SOFTWARE");
    assert_line(
        &text,
        &format!(
            r#"^System image file is "flash:{}"\r$"#,
            regex::escape(NEW_IMAGE)
        ),
    );
    assert_line(&text, r"^lab-sw-001 uptime is 0 minutes\r$");
    assert_line(&text, r"^Last reload reason: Reload command\r$");
    assert_line(
        &text,
        r"^\*    1 52    WS-C2960X-48FPD-L\s+15\.2\(7\)E8\s+C2960X-UNIVERSALK9-M\r$",
    );

    let state = admin_state(&lab, host).await;
    assert_eq!(state["reload_count"], 1, "{state}");
    assert_eq!(state["version"], "15.2(7)E8");
    assert_eq!(state["boot_variable"][0], format!("flash:{NEW_IMAGE}"));
    assert_eq!(state["power"], "up");
    let files = state["flash"]["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["name"] == NEW_IMAGE && f["size"] == 300_000)
    );
    lab.stop().await;

    // The state survives a lab restart.
    let lab = TestLab::start(1, |c| c.state_dir = state_dir.path().to_path_buf()).await;
    let s = lab.lab.state(host).unwrap();
    assert_eq!((s.version.as_str(), s.reload_count), ("15.2(7)E8", 1));
    lab.stop().await;
}

fn v4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other => panic!("not IPv4: {other}"),
    }
}

async fn set_fault(lab: &TestLab, device: &str, fault: &str) -> reqwest::StatusCode {
    let url = format!(
        "http://{}/api/devices/{device}/faults",
        lab.lab.admin_addr().unwrap()
    );
    fleetup::http_client::client()
        .post(url)
        .json(&serde_json::json!({ "fault": fault }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn transfer_faults_give_ios_errors() {
    use fleetup::sim::{Fault, FaultSpec};
    let data = pseudo_random_bytes(200_000, 11);
    let server = tftp_server(&[(NEW_IMAGE, &data)]).await;
    let ip = v4(server.addr);
    let spec = |d: &str, f: Fault| FaultSpec {
        device: d.into(),
        faults: vec![f],
    };
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(5, |c| {
        c.tftp_port = server.addr.port();
        c.state_dir = state_dir.path().to_path_buf();
        c.faults = vec![
            spec("1", Fault::TftpTimeout),
            spec("lab-sw-002", Fault::FlashTooSmall),
            spec("lab-sw-003", Fault::CorruptDownload),
            spec("lab-sw-004", Fault::DropMidCopy),
        ];
    })
    .await;
    let esc = |s: &str| regex::escape(s);

    // 1: TFTP timeout.
    let mut vty = enabled(lab.ssh(0), "lab-sw-001").await;
    let out = copy_tftp(&mut vty, ip, NEW_IMAGE, "lab-sw-001").await;
    assert_line(
        &out,
        &format!(
            r"^%Error opening tftp://{}/{} \(Timed out\)\r$",
            esc(&ip.to_string()),
            esc(NEW_IMAGE)
        ),
    );
    // A file the server does not have.
    lab.lab.clear_faults("lab-sw-001");
    let out = copy_tftp(&mut vty, ip, "missing.bin", "lab-sw-001").await;
    assert_line(
        &out,
        &format!(
            r"^%Error opening tftp://{}/missing\.bin \(No such file or directory\)\r$",
            esc(&ip.to_string())
        ),
    );

    // 2: flash too small: dir shows it, copy refuses, nothing is left behind.
    let mut vty = enabled(lab.ssh(1), "lab-sw-002").await;
    let dir = vty
        .cmd("dir flash: | include bytes free", "lab-sw-002#")
        .await;
    let free: u64 = Regex::new(r"\((\d+) bytes free\)")
        .unwrap()
        .captures(&dir)
        .unwrap()[1]
        .parse()
        .unwrap();
    assert!(free < data.len() as u64, "{dir}");
    let out = copy_tftp(&mut vty, ip, NEW_IMAGE, "lab-sw-002").await;
    assert_line(
        &out,
        &format!(
            r"%Error copying tftp://{}/{} \(Not enough space on device\)\r$",
            esc(&ip.to_string()),
            esc(NEW_IMAGE)
        ),
    );
    let out = vty
        .cmd(&format!("dir flash:{NEW_IMAGE}"), "lab-sw-002#")
        .await;
    assert_eq!(
        out,
        format!("%Error opening flash:/{NEW_IMAGE} (No such file or directory)\r\n")
    );

    // 3: corrupt download: the copy looks fine, verify disagrees, the boot loader refuses it.
    let want = md5sum(&server.dir.path().join(NEW_IMAGE)).await;
    let mut vty = enabled(lab.ssh(2), "lab-sw-003").await;
    let out = copy_tftp(&mut vty, ip, NEW_IMAGE, "lab-sw-003").await;
    assert!(out.contains("[OK - 200000 bytes]"), "{out:?}");
    let out = vty
        .cmd(
            &format!("verify /md5 flash:{NEW_IMAGE} {want}"),
            "lab-sw-003#",
        )
        .await;
    assert_line(
        &out,
        &format!(r"^%Error verifying flash:{}\r$", esc(NEW_IMAGE)),
    );
    assert_line(&out, &format!(r"^Submitted signature = {want}\r$"));
    let computed = Regex::new(r"Computed signature = ([0-9a-f]{32})")
        .unwrap()
        .captures(&out)
        .unwrap()[1]
        .to_string();
    assert_ne!(computed, want);
    vty.cmd("conf t", "lab-sw-003(config)#").await;
    vty.cmd(
        &format!("boot system flash:{NEW_IMAGE}"),
        "lab-sw-003(config)#",
    )
    .await;
    vty.cmd("end", "lab-sw-003#").await;
    vty.send("reload\n").await;
    vty.expect(r"Save\? \[yes/no\]: $").await;
    vty.send("yes\n").await;
    vty.expect(r"Building configuration\.\.\.\r\n\[OK\]Proceed with reload\? \[confirm\]$")
        .await;
    vty.send("y").await;
    vty.wait_closed().await;
    assert!(lab.lab.wait_until_up("lab-sw-003").await);
    let s = lab.lab.state("lab-sw-003").unwrap();
    assert_eq!(
        s.version, "15.2(4)E10",
        "fell back to the first valid image"
    );
    assert_eq!(s.reload_count, 1);

    // 4: the session drops mid-copy; no partial file remains.
    let mut vty = enabled(lab.ssh(3), "lab-sw-004").await;
    vty.send(&format!("copy tftp://{ip}/{NEW_IMAGE} flash:\n"))
        .await;
    vty.expect(r"Destination filename \[.*\]\? $").await;
    vty.send("\n").await;
    let tail = vty.wait_closed().await;
    assert!(tail.contains("Accessing tftp://"), "{tail:?}");
    let s = lab.lab.state("lab-sw-004").unwrap();
    assert!(
        s.flash.files.iter().all(|f| f.name != NEW_IMAGE),
        "{:?}",
        s.flash.files
    );

    // 5: wrong credentials, set and cleared through the admin API.
    assert_eq!(
        set_fault(&lab, "lab-sw-005", "wrong-credentials").await,
        200
    );
    assert_eq!(
        Vty::open(lab.ssh(4), "admin", "cisco")
            .await
            .err()
            .as_deref(),
        Some("authentication refused")
    );
    assert_eq!(set_fault(&lab, "lab-sw-005", "no-such-fault").await, 400);
    assert_eq!(set_fault(&lab, "lab-sw-999", "slow-transfer").await, 404);
    let url = format!(
        "http://{}/api/devices/lab-sw-005/faults",
        lab.lab.admin_addr().unwrap()
    );
    let resp = fleetup::http_client::client()
        .delete(url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(Vty::open(lab.ssh(4), "admin", "cisco").await.is_ok());
    lab.stop().await;
}

#[tokio::test]
async fn reload_faults() {
    use fleetup::sim::{Fault, FaultSpec};
    let data = pseudo_random_bytes(50_000, 3);
    let server = tftp_server(&[(NEW_IMAGE, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(3, |c| {
        c.tftp_port = server.addr.port();
        c.faults = vec![
            FaultSpec {
                device: "1".into(),
                faults: vec![Fault::ReloadNeverReturns],
            },
            FaultSpec {
                device: "2".into(),
                faults: vec![Fault::ReloadOldImage],
            },
        ];
    })
    .await;
    async fn upgrade_and_reload(vty: &mut Vty, ip: Ipv4Addr, host: &str) {
        let out = copy_tftp(vty, ip, NEW_IMAGE, host).await;
        assert!(out.contains("[OK - 50000 bytes]"), "{out:?}");
        vty.cmd("conf t", &format!("{host}(config)#")).await;
        vty.cmd(
            &format!("boot system flash:{NEW_IMAGE}"),
            &format!("{host}(config)#"),
        )
        .await;
        vty.cmd("end", &format!("{host}#")).await;
        vty.cmd("wr", &format!("{host}#")).await;
        vty.send("reload\n").await;
        vty.expect(r"Proceed with reload\? \[confirm\]$").await;
        vty.send("\n").await;
        vty.wait_closed().await;
    }
    let mut never = enabled(lab.ssh(0), "lab-sw-001").await;
    upgrade_and_reload(&mut never, ip, "lab-sw-001").await;
    let mut old = enabled(lab.ssh(1), "lab-sw-002").await;
    upgrade_and_reload(&mut old, ip, "lab-sw-002").await;
    let mut good = enabled(lab.ssh(2), "lab-sw-003").await;
    upgrade_and_reload(&mut good, ip, "lab-sw-003").await;

    // Devices 2 and 3 reloaded after device 1 and are back: device 1 still is not.
    assert!(lab.lab.wait_until_up("lab-sw-002").await);
    assert!(lab.lab.wait_until_up("lab-sw-003").await);
    assert_eq!(lab.lab.state("lab-sw-003").unwrap().version, "15.2(7)E8");
    let s = lab.lab.state("lab-sw-002").unwrap();
    assert_eq!(s.version, "15.2(4)E10", "came back on the old image");
    assert_eq!(s.boot_variable, vec![format!("flash:{NEW_IMAGE}")]);
    let s = lab.lab.state("lab-sw-001").unwrap();
    assert_eq!(s.power, fleetup::sim::Power::Reloading);
    assert_silent(lab.ssh(0)).await;

    // Clearing the fault lets it finish booting.
    lab.lab.clear_faults("lab-sw-001");
    assert!(lab.lab.wait_until_up("lab-sw-001").await);
    assert_eq!(lab.lab.state("lab-sw-001").unwrap().version, "15.2(7)E8");
    lab.stop().await;
}

#[tokio::test]
async fn slow_and_rate_limited_copies_are_complete() {
    use fleetup::sim::{Fault, FaultSpec};
    let data = pseudo_random_bytes(40_000, 5);
    let server = tftp_server(&[(NEW_IMAGE, &data)]).await;
    let ip = v4(server.addr);
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(2, |c| {
        c.tftp_port = server.addr.port();
        c.state_dir = state_dir.path().to_path_buf();
        c.rate = Some(400_000);
        c.slow_rate = 200_000;
        c.faults = vec![FaultSpec {
            device: "2".into(),
            faults: vec![Fault::SlowTransfer],
        }];
    })
    .await;
    for (k, host) in ["lab-sw-001", "lab-sw-002"].into_iter().enumerate() {
        let mut vty = enabled(lab.ssh(k), host).await;
        let out = copy_tftp(&mut vty, ip, NEW_IMAGE, host).await;
        assert!(out.contains("[OK - 40000 bytes]"), "{out:?}");
        let path = state_dir.path().join(host).join("flash").join(NEW_IMAGE);
        assert_eq!(std::fs::read(path).unwrap(), data);
    }
    lab.stop().await;
}

#[tokio::test]
async fn fleetup_lab_command_writes_inventory_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("lab.yml");
    let base = random_base();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .args([
            "lab",
            "--devices",
            "2",
            "--ssh-port",
            "0",
            "--boot-time",
            "0.1",
        ])
        .arg("--base-ip")
        .arg(base.to_string())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--write-inventory")
        .arg(&inventory)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = tokio::time::timeout(HANG, lines.next_line())
        .await
        .unwrap()
        .unwrap()
    {
        let done = line.starts_with("lab-sw-002");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(seen[0].starts_with("inventory written to"), "{seen:?}");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(doc["defaults"]["username"], "admin");
    assert_eq!(doc["defaults"]["enable_secret"], "cisco");
    assert_eq!(doc["groups"]["lab"]["site"], "lab");
    let devices = doc["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[1]["name"], "lab-sw-002");
    let second = Ipv4Addr::from(u32::from(base) + 1).to_string();
    assert_eq!(devices[1]["host"], second.as_str());
    assert_eq!(devices[1]["platform"], "ios");
    assert_eq!(devices[1]["model"], "WS-C2960X-48FPD-L");
    assert_eq!(devices[1]["groups"][0], "lab");
    // The inventory's address and port reach the device.
    let port = devices[1]["port"].as_u64().unwrap() as u16;
    let addr = SocketAddr::new(second.parse().unwrap(), port);
    let out = openssh(addr, "cisco", "show version | include uptime").await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "lab-sw-002 uptime is 0 minutes"
    );

    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_lab_settings_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let base = LabConfig {
        state_dir: dir.path().to_path_buf(),
        base_ip: random_base(),
        ..LabConfig::default()
    };
    let err = |c: LabConfig| async move {
        match Lab::start(c, Shutdown::new()).await {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(LabConfig {
        personas: vec!["c7200".into()],
        ..base.clone()
    })
    .await;
    assert!(
        e.contains("unknown persona \"c7200\"") && e.contains("c2960x"),
        "{e}"
    );
    let e = err(LabConfig {
        devices: 0,
        ..base.clone()
    })
    .await;
    assert!(e.contains("--devices 0"), "{e}");
    let e = err(LabConfig {
        base_ip: Ipv4Addr::new(127, 255, 255, 250),
        devices: 10,
        ..base.clone()
    })
    .await;
    assert!(e.contains("leaves no room"), "{e}");
    let e = err(LabConfig {
        faults: vec!["lab-sw-009=tftp-timeout".parse().unwrap()],
        ..base.clone()
    })
    .await;
    assert!(e.contains("no such device"), "{e}");
    // A port already taken: the error names the device, the address and what to do.
    let taken = std::net::TcpListener::bind((base.base_ip, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = err(LabConfig {
        ssh_port: port,
        ..base.clone()
    })
    .await;
    assert!(
        e.contains("lab-sw-001")
            && e.contains(&format!("{}:{port}", base.base_ip))
            && e.contains("--ssh-port"),
        "{e}"
    );
    // A damaged state file is reported, not silently replaced.
    let shutdown = Shutdown::new();
    let lab = Lab::start(base.clone(), shutdown.clone()).await.unwrap();
    drop(lab);
    shutdown.shutdown_and_wait().await;
    std::fs::write(
        dir.path().join("lab-sw-001").join("state.json"),
        "{not json",
    )
    .unwrap();
    let e = err(LabConfig {
        base_ip: random_base(),
        ..base.clone()
    })
    .await;
    assert!(e.contains("state file") && e.contains("damaged"), "{e}");
    // A persona file with a typo is located.
    let persona = dir.path().join("mine.yaml");
    std::fs::write(&persona, "name: mine\nplatform: ios\nmodle: X\n").unwrap();
    let e = err(LabConfig {
        personas: vec![persona.display().to_string()],
        ..base
    })
    .await;
    assert!(e.contains("line 3"), "{e}");
}

#[tokio::test]
async fn ios_xe_install_mode_upgrade() {
    const XE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";
    let data = pseudo_random_bytes(120_000, 9);
    let server = tftp_server(&[(XE, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(1, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["c9300".into()];
    })
    .await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let mut vty = enabled(lab.ssh(0), host).await;
    let ver = vty.cmd("show version", &p).await;
    assert_line(&ver, r"^Cisco IOS XE Software, Version 17\.06\.05\r$");
    assert_line(
        &ver,
        r"^Cisco IOS Software \[Bengaluru\], Catalyst L3 Switch Software \(CAT9K_IOSXE\), Version 17\.6\.5, RELEASE SOFTWARE",
    );
    assert_line(&ver, r#"^System image file is "flash:packages\.conf"\r$"#);
    assert_line(
        &ver,
        r"^\*    1 41    C9300-24P\s+17\.06\.05\s+CAT9K_IOSXE\s+INSTALL\r$",
    );
    let boot = vty.cmd("show boot", &p).await;
    assert_line(&boot, r"^BOOT variable = flash:packages\.conf;\r$");

    let out = copy_tftp(&mut vty, ip, XE, host).await;
    assert!(out.contains("[OK - 120000 bytes]"), "{out:?}");
    vty.send(&format!("install add file flash:{XE} activate commit\n"))
        .await;
    let out = vty
        .expect(r"This operation may require a reload of the system\. Do you want to proceed\? \[y/n\]$")
        .await;
    assert_line(
        &out,
        r"^install_add_activate_commit: START \w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}\r$",
    );
    assert_line(&out, r"^Image added\. Version: 17\.09\.04a\.0\.1\r$");
    assert_line(&out, r"^/flash/cat9k-rpbase\.17\.09\.04a\.SPA\.pkg\r$");
    vty.send("y\n").await;
    let tail = vty.wait_closed().await;
    assert_line(&tail, r"^SUCCESS: install_add_activate_commit ");
    assert!(
        tail.contains("Chassis 1 reloading, reason - Reload command"),
        "{tail:?}"
    );
    assert!(lab.lab.wait_until_up(host).await);

    let mut vty = enabled(lab.ssh(0), host).await;
    let ver = vty.cmd("show version", &p).await;
    assert_line(&ver, r"^Cisco IOS XE Software, Version 17\.09\.04a\r$");
    assert_line(&ver, r"\[Cupertino\].+Version 17\.9\.4a, RELEASE SOFTWARE");
    let summary = vty.cmd("show install summary", &p).await;
    assert_line(&summary, r"^IMG   C    17\.09\.04a\.0\.1\r$");
    assert_line(&summary, r"^IMG   I    17\.06\.05\.0\.1\r$");

    vty.send("install remove inactive\n").await;
    let out = vty
        .expect(r"Do you want to remove the above files\? \[y/n\]$")
        .await;
    assert_line(
        &out,
        &format!(r"^    \[R0\]: /flash/{}\r$", regex::escape(XE)),
    );
    assert_line(
        &out,
        r"^    \[R0\]: /flash/cat9k-rpbase\.17\.06\.05\.SPA\.pkg\r$",
    );
    vty.send("y\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert_line(&out, r"^SUCCESS: install_remove ");
    let s = lab.lab.state(host).unwrap();
    assert!(
        s.flash
            .files
            .iter()
            .all(|f| !f.name.contains("17.06.05") && f.name != XE),
        "{:?}",
        s.flash.files
    );
    assert_eq!((s.version.as_str(), s.reload_count), ("17.09.04a", 1));
    let summary = vty.cmd("sh install sum", &p).await;
    assert!(!summary.contains("17.06.05"), "{summary}");
    lab.stop().await;
}

#[tokio::test]
async fn nx_os_install_all_upgrade() {
    const NX: &str = "nxos.10.2.5.M.bin";
    let data = pseudo_random_bytes(90_000, 13);
    let server = tftp_server(&[(NX, &data)]).await;
    let ip = v4(server.addr);
    let lab = TestLab::start(1, |c| {
        c.tftp_port = server.addr.port();
        c.personas = vec!["n9k".into()];
        // Only the copy from a silent port waits for it.
        c.tftp_timeout = Duration::from_millis(100);
    })
    .await;
    let p = "lab-sw-001#";
    let mut vty = Vty::open(lab.ssh(0), "admin", "cisco").await.unwrap();
    vty.expect(r"(?m)^lab-sw-001#$").await;
    vty.cmd("terminal length 0", p).await;
    let ver = vty.cmd("show version", p).await;
    assert_line(&ver, r"^ NXOS: version 9\.3\(8\)\r$");
    assert_line(
        &ver,
        r"^  NXOS image file is: bootflash:///nxos\.9\.3\.8\.bin\r$",
    );
    assert_line(
        &ver,
        r"^Kernel uptime is 0 day\(s\), 0 hour\(s\), \d+ minute\(s\), \d+ second\(s\)\r$",
    );
    let out = vty.cmd("show verr", p).await;
    assert_eq!(
        out,
        format!(
            "{}^\r\n% Invalid command at '^' marker.\r\n",
            " ".repeat(p.len() + 8)
        )
    );
    let dir = vty.cmd("dir bootflash:", p).await;
    assert_line(
        &dir,
        r"^ 1978203648    \w{3} \d\d \d\d:\d\d:\d\d \d{4}  nxos\.9\.3\.8\.bin\r$",
    );
    assert_line(&dir, r"^\s*\d+ bytes free\r$");

    let out = vty
        .cmd(
            &format!("copy tftp://{ip}/{NX} bootflash: vrf management"),
            p,
        )
        .await;
    assert!(out.ends_with("Copy complete.\r\n"), "{out:?}");
    let want = md5sum(&server.dir.path().join(NX)).await;
    let out = vty
        .cmd(&format!("show file bootflash:{NX} md5sum"), p)
        .await;
    assert_eq!(out, format!("{want}\r\n"));
    let out = vty
        .cmd("copy tftp://127.0.0.1:9/none.bin bootflash:", p)
        .await;
    assert!(out.contains("TFTP get operation failed:"), "{out:?}");

    vty.send(&format!("install all nxos bootflash:{NX}\n"))
        .await;
    let out = vty
        .expect(r"Do you want to continue with the installation \(y/n\)\?  \[n\] $")
        .await;
    assert_line(
        &out,
        r"^     1        nxos\s+9\.3\(8\)\s+10\.2\(5\)M\s+yes\r$",
    );
    vty.send("y\n").await;
    let tail = vty.wait_closed().await;
    assert!(
        tail.contains("Finishing the upgrade, switch will reboot in 10 seconds."),
        "{tail:?}"
    );
    assert!(lab.lab.wait_until_up("lab-sw-001").await);

    let out = openssh(lab.ssh(0), "cisco", "show version").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_line(&text, r"^ NXOS: version 10\.2\(5\)M\r$");
    let out = openssh(lab.ssh(0), "cisco", "show boot").await;
    assert_line(
        &String::from_utf8_lossy(&out.stdout),
        &format!(r"^NXOS variable = bootflash:/{}\r$", regex::escape(NX)),
    );
    assert_eq!(admin_state(&lab, "lab-sw-001").await["reload_count"], 1);
    lab.stop().await;
}

#[tokio::test]
async fn bad_cli_input_gets_the_ios_answer_and_changes_nothing() {
    let lab = TestLab::start(1, |_| {}).await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let c = format!("{host}(config)#");
    let mut vty = enabled(lab.ssh(0), host).await;
    let invalid = |col: usize| {
        format!(
            "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
            " ".repeat(col)
        )
    };

    let out = vty.cmd("copy tftp://server.example/x.bin flash:", &p).await;
    assert_eq!(
        out,
        "%Error opening tftp://server.example/x.bin (Invalid IP address or hostname)\r\n"
    );
    let out = vty.cmd("copy tftp://10.0.0.1/x.bin disk0:", &p).await;
    assert_eq!(out, invalid(p.len() + 27));
    let out = vty.cmd("delete /force flash:nothing.bin", &p).await;
    assert_eq!(
        out,
        "%Error deleting flash:/nothing.bin (No such file or directory)\r\n"
    );
    let out = vty.cmd("verify /md5 flash:nothing.bin", &p).await;
    assert_eq!(
        out,
        "%Error opening flash:nothing.bin (No such file or directory)\r\n"
    );
    let out = vty.cmd("dir flash:nothing.bin", &p).await;
    assert_eq!(
        out,
        "%Error opening flash:/nothing.bin (No such file or directory)\r\n"
    );
    let out = vty.cmd("terminal length 1000", &p).await;
    assert_eq!(out, invalid(p.len() + 16));
    let out = vty.cmd("show running-config | bogus x", &p).await;
    assert_eq!(out, invalid(p.len() + 23));

    vty.cmd("conf t", &c).await;
    assert_eq!(
        vty.cmd("config-register 0xZZ", &c).await,
        invalid(c.len() + 16)
    );
    assert_eq!(
        vty.cmd("ip tftp blocksize 100", &c).await,
        invalid(c.len() + 18)
    );
    assert_eq!(vty.cmd("hostname bad/name", &c).await, invalid(c.len() + 9));
    assert_eq!(
        vty.cmd("boot system nonsense", &c).await,
        invalid(c.len() + 12)
    );
    // A port the persona does not have.
    assert_eq!(
        vty.cmd("interface Serial0/0/0", &c).await,
        invalid(c.len() + 10)
    );
    vty.cmd("end", &p).await;
    let s = lab.lab.state(host).unwrap();
    assert!(!s.unsaved_changes, "nothing was changed");
    assert_eq!(s.config_register, "0xF");
    assert_eq!(
        s.boot_variable,
        vec!["flash:/c2960x-universalk9-mz.152-4.E10.bin"]
    );

    // A wrong enable secret three times.
    vty.send("disable\n").await;
    vty.expect(&format!(r"(?m)^{host}>$")).await;
    vty.send("enable\n").await;
    for _ in 0..3 {
        vty.expect("Password: ").await;
        vty.send("wrong\n").await;
    }
    let out = vty.expect(&format!(r"(?m)^{host}>$")).await;
    assert!(
        out.ends_with(&format!("% Bad secrets\r\n\r\n{host}>")),
        "{out:?}"
    );

    // The admin API refuses what it does not understand.
    let url = format!(
        "http://{}/api/devices/{host}/faults",
        lab.lab.admin_addr().unwrap()
    );
    let resp = fleetup::http_client::client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_fault");
    assert!(lab.lab.state(host).unwrap().faults.is_empty());
    lab.stop().await;
}

/// fleetup's own FTP server on a random loopback address, read-only over `files`.
async fn ftp_server(files: &[(&str, &[u8])]) -> FileServer {
    let (dir, ip) = served_dir(files, 251);
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let transfers = fleetup::transfers::Transfers::new();
    let shutdown = Shutdown::new();
    let config = fleetup::ftp::FtpConfig {
        credentials: fleetup::ftp::FtpCredentials::new("fleet", "s3cret-pw"),
        ..fleetup::ftp::FtpConfig::default()
    };
    tokio::spawn(fleetup::ftp::run(
        listener,
        dir.path().to_path_buf(),
        config,
        transfers.clone(),
        shutdown.clone(),
    ));
    FileServer {
        addr,
        dir,
        transfers,
        shutdown,
    }
}

#[tokio::test]
async fn ftp_copy_passive_and_active_from_fleetups_ftp_server() {
    let data = pseudo_random_bytes(150_000, 21);
    let server = ftp_server(&[(NEW_IMAGE, &data)]).await;
    let addr = server.addr;
    let ip = v4(addr);
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.ftp_port = addr.port();
        c.state_dir = state_dir.path().to_path_buf();
    })
    .await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let flash = state_dir.path().join(host).join("flash");
    let mut vty = enabled(lab.ssh(0), host).await;

    // Passive (the default), credentials in the URL; IOS masks them when it echoes the URL.
    vty.send(&format!(
        "copy ftp://fleet:s3cret-pw@{ip}/{NEW_IMAGE} flash:\n"
    ))
    .await;
    vty.expect(r"Destination filename \[.*\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    let expected = format!(
        r"(?s)^\r\nAccessing ftp://\*:\*@{ip}/{f}\.\.\.\r\nLoading {f} !+\r\n\[OK - 150000/4096 bytes\]\r\n\r\n150000 bytes copied in \d+\.\d{{3}} secs \(\d+ bytes/sec\)\r\n{host}#$",
        ip = regex::escape(&ip.to_string()),
        f = regex::escape(NEW_IMAGE),
    );
    assert!(Regex::new(&expected).unwrap().is_match(&out), "{out:?}");
    assert!(!out.contains("s3cret-pw"));
    assert_eq!(std::fs::read(flash.join(NEW_IMAGE)).unwrap(), data);

    // Active, credentials from `ip ftp username` / `ip ftp password`.
    let c = format!("{host}(config)#");
    vty.cmd("configure terminal", &c).await;
    vty.cmd("ip ftp username fleet", &c).await;
    vty.cmd("ip ftp password s3cret-pw", &c).await;
    vty.cmd("no ip ftp passive", &c).await;
    vty.cmd("end", &p).await;
    vty.send(&format!("copy ftp://{ip}/{NEW_IMAGE} flash:active.bin\n"))
        .await;
    vty.expect(r"Destination filename \[active\.bin\]\? $")
        .await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(out.contains("[OK - 150000/4096 bytes]"), "{out:?}");
    assert_eq!(std::fs::read(flash.join("active.bin")).unwrap(), data);

    let served = server.transfers.snapshot();
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(
        served
            .iter()
            .all(|t| t.bytes == 150_000 && t.client.ip() == lab.ssh(0).ip()),
        "{served:?}"
    );

    // Refusals keep the IOS wording.
    vty.send(&format!(
        "copy ftp://fleet:wrong@{ip}/{NEW_IMAGE} flash:x.bin\n"
    ))
    .await;
    vty.expect(r"Destination filename \[x\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert_line(
        &out,
        &format!(
            r"^%Error opening ftp://\*:\*@{}/{} \(Permission denied\)\r$",
            regex::escape(&ip.to_string()),
            regex::escape(NEW_IMAGE)
        ),
    );
    lab.stop().await;
    server.shutdown.shutdown_and_wait().await;
}

/// A copy whose SSH session went away ends with it, as on IOS; it never spoils the copy that
/// replaced it (each copy writes its own temporary file) and leaves nothing behind on flash.
/// The first copy's server stalls after one block, as a killed fleetup does: that copy would
/// otherwise sit in its TFTP timeout, then clean up, in the middle of the second copy.
#[tokio::test]
async fn a_copy_left_by_a_dead_session_never_spoils_the_next_one() {
    let data = fleetup::images::pseudo_random_bytes(400_000, 9);
    let server = tftp_server(&[(NEW_IMAGE, &data)]).await;
    let port = server.addr.port();
    // The stalled server: answers a read request with its first block, then nothing.
    let stalled_ip = loop {
        let ip = Ipv4Addr::new(
            127,
            rand::random_range(20..250),
            rand::random_range(1..250),
            251,
        );
        if ip != v4(server.addr) {
            break ip;
        }
    };
    let stalled = std::net::UdpSocket::bind((stalled_ip, port)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        if let Ok((_, client)) = stalled.recv_from(&mut buf) {
            let mut block = vec![0, 3, 0, 1];
            block.extend(std::iter::repeat_n(0x5a, 512));
            let _ = stalled.send_to(&block, client);
            // Hold the socket, silent, until the test ends.
            let _ = stalled.recv_from(&mut buf);
        }
    });
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.tftp_port = port;
        c.state_dir = state_dir.path().to_path_buf();
        // Five tries of 300 ms: the abandoned copy gives up about 1.5 s after it stalled, in
        // the middle of the second copy (four seconds).
        c.tftp_timeout = std::time::Duration::from_millis(300);
        c.rate = Some(100_000);
    })
    .await;
    let host = "lab-sw-001";
    let flash = state_dir.path().join(host).join("flash");
    let mut first = enabled(lab.ssh(0), host).await;
    first
        .send(&format!("copy tftp://{stalled_ip}/{NEW_IMAGE} flash:\n"))
        .await;
    first.expect(r"Destination filename .*\? $").await;
    first.send("\n").await;
    first.expect("Loading").await;
    drop(first);
    let mut second = enabled(lab.ssh(0), host).await;
    let out = copy_tftp(&mut second, v4(server.addr), NEW_IMAGE, host).await;
    assert!(out.contains("[OK - 400000 bytes]"), "{out:?}");
    assert_eq!(std::fs::read(flash.join(NEW_IMAGE)).unwrap(), data);
    // The abandoned copy is gone too: no temporary file is left on flash.
    let leftovers = || {
        std::fs::read_dir(&flash)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".partial"))
            .collect::<Vec<_>>()
    };
    crate::support::eventually("the abandoned copy to end", || async {
        leftovers().is_empty().then_some(())
    })
    .await;
    assert_eq!(std::fs::read(flash.join(NEW_IMAGE)).unwrap(), data);
    lab.stop().await;
}

/// With `--ssh-port 0` each device keeps, across lab restarts, the port it was given: the
/// inventory written at the first start stays true.
#[tokio::test]
async fn devices_keep_their_ssh_ports_across_lab_restarts() {
    use fleetup::sim::{Lab, LabConfig};
    let state_dir = tempfile::tempdir().unwrap();
    let config = || LabConfig {
        devices: 3,
        base_ip: crate::support::random_base(),
        ssh_port: 0,
        state_dir: state_dir.path().to_path_buf(),
        ..LabConfig::default()
    };
    let first_config = config();
    let base = first_config.base_ip;
    let shutdown = Shutdown::new();
    let lab = Lab::start(first_config, shutdown.clone()).await.unwrap();
    let before: Vec<_> = lab.devices().into_iter().map(|d| d.ssh).collect();
    shutdown.shutdown_and_wait().await;
    let shutdown = Shutdown::new();
    let lab = Lab::start(
        LabConfig {
            base_ip: base,
            ..config()
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let after: Vec<_> = lab.devices().into_iter().map(|d| d.ssh).collect();
    assert_eq!(before, after);
    assert!(before.iter().all(|a| a.port() != 0));
    shutdown.shutdown_and_wait().await;
}

/// A connect to a reloading device gets no answer at all (no reset): the attempt is still
/// pending after two seconds, as with a real device that is booting.
async fn assert_silent(addr: SocketAddr) {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Err(_elapsed) => {}
        Ok(r) => panic!("{addr} answered a connect while reloading: {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloading_device_goes_silent_or_refuses_as_told() {
    use fleetup::sim::{Fault, FaultSpec, WhileReloading};
    for mode in [WhileReloading::Silent, WhileReloading::Refuse] {
        let lab = TestLab::start(1, |c| {
            c.while_reloading = mode;
            c.faults = vec![FaultSpec {
                device: "1".into(),
                faults: vec![Fault::ReloadNeverReturns],
            }];
        })
        .await;
        let addr = lab.ssh(0);
        let up_since = |lab: &TestLab| -> jiff::Timestamp {
            let s = lab.lab.state("lab-sw-001").unwrap();
            s.up_since
                .as_deref()
                .unwrap_or_else(|| panic!("{mode:?}: no up_since"))
                .parse()
                .unwrap()
        };
        let before = up_since(&lab);
        let mut vty = enabled(addr, "lab-sw-001").await;
        vty.send("reload\n").await;
        vty.expect(r"Proceed with reload\? \[confirm\]$").await;
        vty.send("\n").await;
        vty.wait_closed().await;
        match mode {
            WhileReloading::Silent => assert_silent(addr).await,
            WhileReloading::Refuse => {
                let e = tokio::net::TcpStream::connect(addr).await.unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
            }
        }
        assert_eq!(
            lab.lab.state("lab-sw-001").unwrap().power,
            fleetup::sim::Power::Reloading
        );
        // Booted: the same port answers SSH again, and says since when.
        lab.lab.clear_faults("lab-sw-001");
        assert!(lab.lab.wait_until_up("lab-sw-001").await);
        let mut vty = enabled(addr, "lab-sw-001").await;
        let out = vty.cmd("show version", "lab-sw-001#").await;
        assert!(out.contains("Last reload reason: Reload command"), "{out}");
        let after = up_since(&lab);
        assert!(after > before, "{mode:?}: up_since {before} then {after}");
        lab.stop().await;
    }
}

#[tokio::test]
async fn client_setup_lines_and_a_link_left_down_by_a_reload() {
    let lab = TestLab::start(1, |_| {}).await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let c = format!("{host}(config)#");
    let mut vty = enabled(lab.ssh(0), host).await;
    // pyATS/unicon's default setup, then an interface and the copy source interface.
    vty.cmd("config term", &c).await;
    assert_eq!(vty.cmd("no logging console", &c).await, "");
    let line = format!("{host}(config-line)#");
    assert_eq!(vty.cmd("line console 0", &line).await, "");
    assert_eq!(vty.cmd("exec-timeout 0", &line).await, "");
    assert_eq!(vty.cmd("line vty 0 4", &line).await, "");
    assert_eq!(vty.cmd("exec-timeout 0", &line).await, "");
    let ifc = format!("{host}(config-if)#");
    // A global line leaves the submode.
    assert_eq!(vty.cmd("int gi1/0/3", &ifc).await, "");
    assert_eq!(vty.cmd("description printer-3f", &ifc).await, "");
    assert_eq!(vty.cmd("ip tftp source-interface Vlan1", &c).await, "");
    vty.cmd("end", &p).await;
    let run = vty
        .cmd("show running-config | include logging|source-interface", &p)
        .await;
    assert_eq!(
        run,
        "no logging console\r\nip tftp source-interface Vlan1\r\n"
    );
    let status = vty.cmd("show interfaces status", &p).await;
    assert_line(&status, r"^Gi1/0/3   printer-3f         connected    20 ");
    let brief = vty.cmd("show ip interface brief", &p).await;
    assert_line(
        &brief,
        r"^GigabitEthernet1/0/1   unassigned      YES unset  up                    up\r$",
    );
    let cdp = vty.cmd("show cdp neighbors", &p).await;
    assert_line(&cdp, r"^dist-sw1         Gig 1/0/1 ");
    assert_line(&cdp, r"^Total cdp entries displayed : 2\r$");

    assert_eq!(
        set_fault(&lab, host, "link-down-after-reload").await,
        reqwest::StatusCode::OK
    );
    vty.cmd("write memory", &p).await;
    vty.send("reload\n").await;
    vty.expect(r"Proceed with reload\? \[confirm\]$").await;
    vty.send("\n").await;
    vty.wait_closed().await;
    assert!(lab.lab.wait_until_up(host).await);
    assert_eq!(
        lab.lab.state(host).unwrap().links_down,
        vec!["GigabitEthernet1/0/1".to_string()]
    );
    let mut vty = enabled(lab.ssh(0), host).await;
    let brief = vty.cmd("show ip interface brief", &p).await;
    assert_line(
        &brief,
        r"^GigabitEthernet1/0/1   unassigned      YES unset  down                  down\r$",
    );
    let status = vty.cmd("show interfaces status", &p).await;
    assert_line(
        &status,
        r"^Gi1/0/1   uplink dist-sw1    notconnect   trunk ",
    );
    // The saved description survived the reload; the uplink's neighbor is gone.
    assert_line(&status, r"^Gi1/0/3   printer-3f         connected ");
    let cdp = vty.cmd("show cdp neighbors", &p).await;
    assert!(!cdp.contains("dist-sw1"), "{cdp}");
    assert_line(&cdp, r"^Total cdp entries displayed : 1\r$");
    lab.stop().await;
}

/// Each persona prints the configuration register of the capture it follows: `0x102` on the
/// Catalyst 9300 (genieparser iosxe ShowVersion golden_output_c9300), `0xF` on the 2960-X.
#[tokio::test]
async fn the_configuration_register_is_the_source_captures() {
    let lab = TestLab::start(2, |c| c.personas = vec!["c9300".into(), "c2960x".into()]).await;
    for (i, reg) in [(0, "0x102"), (1, "0xF")] {
        let out = openssh(lab.ssh(i), "cisco", "show version").await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert_line(&text, &format!(r"^Configuration register is {reg}\r$"));
    }
    lab.stop().await;
}

/// `boot nxos` and `show boot` as on a Nexus 9000v (tests/fixtures/cisco/
/// blog_heathdbrown_n9kv_boot_nxos_show_boot.txt): the image is checked first, a file that is
/// not on bootflash is refused, and the variable reads back as `bootflash:/FILE` in both
/// sections, line for line as the capture prints them.
#[tokio::test]
async fn nx_os_boot_variable_reads_back_as_on_a_nexus() {
    let lab = TestLab::start(1, |c| c.personas = vec!["n9k".into()]).await;
    let p = "lab-sw-001#";
    let c = "lab-sw-001(config)#";
    let mut vty = Vty::open(lab.ssh(0), "admin", "cisco").await.unwrap();
    vty.expect(r"(?m)^lab-sw-001#$").await;
    vty.cmd("terminal length 0", p).await;
    vty.cmd("configure terminal", c).await;
    let check = "Performing image verification and compatibility check, please wait....\r\n";
    let out = vty.cmd("boot nxos bootflash:nxos.9.9.9.bin", c).await;
    assert!(out.starts_with(check), "{out:?}");
    assert!(out.contains("does not exist"), "{out:?}");
    // The spelling of the capture: no file system, no slash.
    let out = vty.cmd("boot nxos nxos.9.3.8.bin", c).await;
    assert_eq!(out, check);
    vty.cmd("end", p).await;
    let out = vty.cmd("show boot", p).await;
    let capture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cisco/blog_heathdbrown_n9kv_boot_nxos_show_boot.txt"
    ))
    .unwrap();
    let real = &capture[capture.find("Current Boot Variables:").unwrap()..];
    let want = real
        .replace("nxos.7.0.3.I6.1.bin", "nxos.9.3.8.bin")
        .replace('\n', "\r\n");
    assert_eq!(out, want);
    let st = admin_state(&lab, "lab-sw-001").await;
    assert_eq!(st["running_image"], "bootflash:/nxos.9.3.8.bin", "{st:#}");
    lab.stop().await;
}

/// A Nexus 7000 changed by hand, as an engineer does without `install all`: `boot kickstart`
/// and `boot system` in configuration mode (each image checked, a missing file refused,
/// `boot nxos` unknown), both kept in the running configuration as `bootflash:/FILE sup-1`,
/// saved, and the reload boots the pair they name; `show version` prints each image's own
/// version.
#[tokio::test]
async fn a_nexus_7000_boots_the_kickstart_and_system_its_configuration_names() {
    const KICKSTART: &str = "n7000-s2-kickstart.8.4.4.bin";
    const SYSTEM: &str = "n7000-s2-dk9.8.4.7.bin";
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.personas = vec!["n7k".into()];
        c.state_dir = state_dir.path().to_path_buf();
    })
    .await;
    let host = "lab-sw-001";
    let flash = state_dir.path().join(host).join("flash");
    for (n, file) in [KICKSTART, SYSTEM].into_iter().enumerate() {
        std::fs::write(flash.join(file), pseudo_random_bytes(70_000, 90 + n as u64)).unwrap();
    }
    let p = "lab-sw-001#";
    let c = "lab-sw-001(config)#";
    let mut vty = Vty::open(lab.ssh(0), "admin", "cisco").await.unwrap();
    vty.expect(r"(?m)^lab-sw-001#$").await;
    vty.cmd("terminal length 0", p).await;
    vty.cmd("configure terminal", c).await;
    let check = "Performing image verification and compatibility check, please wait....\r\n";
    let out = vty
        .cmd("boot kickstart bootflash:n7000-s2-kickstart.9.9.9.bin", c)
        .await;
    assert_eq!(
        out,
        "Image bootflash:/n7000-s2-kickstart.9.9.9.bin does not exist\r\n"
    );
    let out = vty
        .cmd("boot system bootflash:/n7000-s2-dk9.9.9.9.bin", c)
        .await;
    assert_eq!(
        out,
        format!("{check}Image bootflash:/n7000-s2-dk9.9.9.9.bin does not exist\r\n")
    );
    let out = vty.cmd(&format!("boot nxos bootflash:{SYSTEM}"), c).await;
    assert!(out.contains("% Invalid command at '^' marker."), "{out:?}");
    let out = vty
        .cmd(&format!("boot system bootflash:{SYSTEM} sup-3"), c)
        .await;
    assert!(out.contains("% Invalid command at '^' marker."), "{out:?}");
    assert_eq!(vty.cmd(&format!("boot kickstart {KICKSTART}"), c).await, "");
    assert_eq!(
        vty.cmd(&format!("boot system bootflash:{SYSTEM} sup-1"), c)
            .await,
        check
    );
    vty.cmd("end", p).await;
    let run = vty.cmd("show running-config | include boot", p).await;
    assert_eq!(
        run,
        format!(
            "boot kickstart bootflash:/{KICKSTART} sup-1\r\nboot system bootflash:/{SYSTEM} sup-1\r\n"
        )
    );
    let boot = vty.cmd("show boot", p).await;
    assert_line(
        &boot,
        &format!(
            r"^kickstart variable = bootflash:/{}\r$",
            regex::escape(KICKSTART)
        ),
    );
    assert_line(
        &boot,
        &format!(
            r"^system variable = bootflash:/{}\r$",
            regex::escape(SYSTEM)
        ),
    );
    // Not saved yet: the next reload would boot the old pair.
    let st = admin_state(&lab, host).await;
    assert_eq!(
        st["boot_kickstart"], "bootflash:/n7000-s2-kickstart.8.2.2.bin",
        "{st:#}"
    );
    vty.cmd("copy running-config startup-config", p).await;
    let st = admin_state(&lab, host).await;
    assert_eq!(
        st["boot_kickstart"],
        format!("bootflash:/{KICKSTART}"),
        "{st:#}"
    );
    assert_eq!(
        st["boot_variable"][0],
        format!("bootflash:/{SYSTEM}"),
        "{st:#}"
    );
    vty.send("reload\n").await;
    vty.expect(r"This command will reboot the system\. \(y/n\)\?  \[n\] $")
        .await;
    vty.send("y\n").await;
    vty.wait_closed().await;
    assert!(lab.lab.wait_until_up(host).await);
    let st = admin_state(&lab, host).await;
    assert_eq!(
        st["running_kickstart"],
        format!("bootflash:/{KICKSTART}"),
        "{st:#}"
    );
    assert_eq!(
        st["running_image"],
        format!("bootflash:/{SYSTEM}"),
        "{st:#}"
    );
    assert_eq!(st["version"], "8.4(7)", "{st:#}");
    let out = openssh(lab.ssh(0), "cisco", "show version").await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_line(&text, r"^  kickstart: version 8\.4\(4\)\r$");
    assert_line(&text, r"^  system:    version 8\.4\(7\)\r$");
    lab.stop().await;
}

/// `copy http://…` from fleetup's HTTP image server, as a Catalyst 9300 prints it: the
/// `Accessing`, `Loading … !!!` and `[OK - N bytes]` lines, a token that is not live reads
/// `(No such file or directory)`, and with the management port in `Mgmt-vrf` (persona
/// `mgmt_vrf`) a copy that names no VRF times out, while `vrf Mgmt-vrf` or
/// `ip http client source-interface GigabitEthernet0/0` reaches the server.
#[tokio::test]
async fn http_copies_print_like_ios_xe_and_follow_the_management_vrf() {
    const XE_IMAGE: &str = "cat9k_iosxe.17.09.04a.SPA.bin";
    let app = crate::support::TestApp::start_with(|a| {
        a.image_http = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let data = pseudo_random_bytes(200_000, 31);
    std::fs::write(app.dir.path().join("images").join(XE_IMAGE), &data).unwrap();
    let http = app.service.http_image_addr.expect("image HTTP is on");
    let grant = app.service.grants.issue_token(vec![XE_IMAGE.to_string()]);
    let url = format!("http://{http}/j/{}/{XE_IMAGE}", grant.name());

    let persona_dir = tempfile::tempdir().unwrap();
    let persona = persona_dir.path().join("c9300-vrf.yaml");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("personas/c9300.yaml"),
    )
    .unwrap()
    .replace("name: c9300\n", "name: c9300-vrf\nmgmt_vrf: Mgmt-vrf\n");
    std::fs::write(&persona, text).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.personas = vec![persona.to_string_lossy().into_owned()];
        c.state_dir = state_dir.path().to_path_buf();
        c.fault_delay = Duration::from_millis(50);
    })
    .await;
    let host = "lab-sw-001";
    let p = format!("{host}#");
    let flash = state_dir.path().join(host).join("flash");
    let mut vty = enabled(lab.ssh(0), host).await;
    let copy = |to: &str, vrf: &str| format!("copy {url} flash:{to}{vrf}\n");

    // Out of the management VRF: no answer.
    vty.send(&copy("a.bin", "")).await;
    vty.expect(r"Destination filename \[a\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert_line(
        &out,
        &format!(r"^%Error opening {} \(Timed out\)\r$", regex::escape(&url)),
    );
    assert!(!flash.join("a.bin").exists());

    // Naming the VRF.
    vty.send(&copy("a.bin", " vrf Mgmt-vrf")).await;
    vty.expect(r"Destination filename \[a\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    let expected = format!(
        r"(?s)^\r\nAccessing {u}\.\.\.\r\nLoading {u} !+\r\n\[OK - 200000 bytes\]\r\n\r\n200000 bytes copied in \d+\.\d{{3}} secs \(\d+ bytes/sec\)\r\n{host}#$",
        u = regex::escape(&url),
    );
    assert!(Regex::new(&expected).unwrap().is_match(&out), "{out:?}");
    assert_eq!(std::fs::read(flash.join("a.bin")).unwrap(), data);

    // Through the management interface.
    let c = format!("{host}(config)#");
    vty.cmd("configure terminal", &c).await;
    vty.cmd("ip http client source-interface GigabitEthernet0/0", &c)
        .await;
    vty.cmd("end", &p).await;
    vty.send(&copy("b.bin", "")).await;
    vty.expect(r"Destination filename \[b\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(out.contains("[OK - 200000 bytes]"), "{out:?}");
    assert_eq!(std::fs::read(flash.join("b.bin")).unwrap(), data);

    // A token that is not live: the server's 404 in IOS's words.
    let dead = url.replace(grant.name(), "notatoken000");
    vty.send(&format!("copy {dead} flash:c.bin vrf Mgmt-vrf\n"))
        .await;
    vty.expect(r"Destination filename \[c\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert_line(
        &out,
        &format!(
            r"^%Error opening {} \(No such file or directory\)\r$",
            regex::escape(&dead)
        ),
    );
    assert!(!flash.join("c.bin").exists());
    lab.stop().await;
}

/// The lab device's SCP server and fleetup's push to it (`fleetup::device::scp_push::push`),
/// plus OpenSSH's `scp -O` as a second, independent client of the same server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_push_lands_byte_exact_only_with_ip_scp_server_enable() {
    use fleetup::device::scp_push::push;
    use fleetup::device::{DeviceError, Target, Timeouts};
    use fleetup::inventory::{Login, Platform, Secret};

    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| c.state_dir = state_dir.path().to_path_buf()).await;
    let host = "lab-sw-001";
    let addr = lab.ssh(0);
    let flash = state_dir.path().join(host).join("flash");
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join(NEW_IMAGE);
    let data = pseudo_random_bytes(3 * 1024 * 1024 + 11, 21);
    std::fs::write(&local, &data).unwrap();
    let size = data.len() as u64;
    let target = Target {
        name: host.into(),
        host: addr.ip().to_string(),
        port: addr.port(),
        platform: Platform::Ios,
        login: Login {
            username: "admin".into(),
            password: Some(Secret("cisco".into())),
            enable_secret: Some(Secret("cisco".into())),
        },
        private_key: None,
        known_host_key: None,
        transcript: None,
    };
    let timeouts = Timeouts::default();
    let remote = format!("flash:{NEW_IMAGE}");

    // Off by default: a clear error that names the setting, and nothing on flash.
    let err = push(&target, &local, &remote, size, |_| {}, &timeouts)
        .await
        .unwrap_err();
    assert!(matches!(err, DeviceError::Copy { .. }), "{err:?}");
    assert!(err.to_string().contains("ip scp server enable"), "{err}");
    assert!(!flash.join(NEW_IMAGE).exists());

    let mut vty = enabled(addr, host).await;
    vty.cmd("configure terminal", &format!("{host}(config)#"))
        .await;
    vty.cmd("ip scp server enable", &format!("{host}(config)#"))
        .await;
    vty.cmd("end", &format!("{host}#")).await;
    let config = vty.cmd("show running-config", &format!("{host}#")).await;
    assert_line(&config, r"^ip scp server enable\r?$");

    let mut seen = Vec::new();
    let copied = push(&target, &local, &remote, size, |n| seen.push(n), &timeouts)
        .await
        .unwrap();
    assert_eq!(copied, size);
    assert_eq!(seen.last(), Some(&size), "progress reaches the size");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only grows");
    assert!(
        std::fs::read(flash.join(NEW_IMAGE)).unwrap() == data,
        "byte-exact push"
    );
    let verify = vty
        .cmd(
            &format!("verify /md5 flash:{NEW_IMAGE}"),
            &format!("{host}#"),
        )
        .await;
    assert!(verify.contains(&md5sum(&local).await), "{verify}");

    // OpenSSH's own legacy SCP client lands the same bytes.
    let out = tokio::process::Command::new("sshpass")
        .args(["-p", "cisco", "scp", "-O"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "PubkeyAuthentication=no",
            "-P",
        ])
        .arg(addr.port().to_string())
        .arg(&local)
        .arg(format!("admin@{}:flash:copy2.bin", addr.ip()))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(flash.join("copy2.bin")).unwrap() == data);

    // A push bigger than the free space is refused as a full flash, not a transport failure.
    assert_eq!(
        set_fault(&lab, host, "flash-too-small").await,
        reqwest::StatusCode::OK
    );
    let err = push(&target, &local, "flash:third.bin", size, |_| {}, &timeouts)
        .await
        .unwrap_err();
    let DeviceError::Copy { source, .. } = &err else {
        panic!("expected a copy error, got {err:?}");
    };
    assert!(source.to_string().contains("space"), "{err}");
    assert!(!flash.join("third.bin").exists());

    vty.cmd("configure terminal", &format!("{host}(config)#"))
        .await;
    vty.cmd("no ip scp server enable", &format!("{host}(config)#"))
        .await;
    vty.cmd("end", &format!("{host}#")).await;
    let err = push(&target, &local, "flash:fourth.bin", size, |_| {}, &timeouts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ip scp server enable"), "{err}");
    lab.stop().await;
}

/// `copy scp://…` and `copy sftp://…` on a lab device against fleetup's own SCP/SFTP image
/// server, logging in with a one-time account: password in the URL or at the prompt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_scp_and_sftp_from_fleetups_image_server() {
    use fleetup::transfers::{Protocol, TransferState};

    let app = crate::support::TestApp::start_with(|a| {
        a.image_scp = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let scp = app.service.scp_addr.unwrap();
    let data = pseudo_random_bytes(700_000, 31);
    std::fs::write(app.dir.path().join("images").join(NEW_IMAGE), &data).unwrap();
    let account = app.service.grants.issue_account(vec![NEW_IMAGE.into()]);
    let (user, pw) = (account.name(), account.secret().unwrap());

    let state_dir = tempfile::tempdir().unwrap();
    let lab = TestLab::start(1, |c| {
        c.scp_port = scp.port();
        c.state_dir = state_dir.path().to_path_buf();
    })
    .await;
    let host = "lab-sw-001";
    let flash = state_dir.path().join(host).join("flash");
    let mut vty = enabled(lab.ssh(0), host).await;
    let done = |name: &str| {
        format!(
            r"(?s)^\r\n Sending file modes: C0644 {size} {f}\r\n!+\r\n{size} bytes copied in \d+\.\d{{3}} secs \(\d+ bytes/sec\)\r\n{host}#$",
            size = data.len(),
            f = regex::escape(name),
        )
    };

    // The password in the URL.
    vty.send(&format!(
        "copy scp://{user}:{pw}@{}/{NEW_IMAGE} flash:\n",
        scp.ip()
    ))
    .await;
    vty.expect(&format!(
        r"Destination filename \[{}\]\? $",
        regex::escape(NEW_IMAGE)
    ))
    .await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(
        Regex::new(&done(NEW_IMAGE)).unwrap().is_match(&out),
        "{out:?}"
    );
    assert!(std::fs::read(flash.join(NEW_IMAGE)).unwrap() == data);

    // No password in the URL: the device asks for it.
    vty.send(&format!(
        "copy scp://{user}@{}/{NEW_IMAGE} flash:second.bin\n",
        scp.ip()
    ))
    .await;
    vty.expect(r"Destination filename \[second\.bin\]\? $")
        .await;
    vty.send("\n").await;
    vty.expect(r"Password: $").await;
    vty.send(&format!("{pw}\n")).await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(!out.contains(pw), "the password is not echoed: {out:?}");
    assert!(out.contains(" Sending file modes: C0644"), "{out:?}");
    assert!(std::fs::read(flash.join("second.bin")).unwrap() == data);

    vty.send(&format!(
        "copy sftp://{user}:{pw}@{}/{NEW_IMAGE} flash:third.bin\n",
        scp.ip()
    ))
    .await;
    vty.expect(r"Destination filename \[third\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(out.contains("bytes copied in"), "{out:?}");
    assert!(std::fs::read(flash.join("third.bin")).unwrap() == data);

    // A wrong password and a file the account does not name fail as IOS says it.
    vty.send(&format!(
        "copy scp://{user}:wrong@{}/{NEW_IMAGE} flash:x.bin\n",
        scp.ip()
    ))
    .await;
    vty.expect(r"Destination filename \[x\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(
        out.contains(&format!(
            "%Error opening scp://*:*@{}/{NEW_IMAGE} (Permission denied)",
            scp.ip()
        )),
        "{out:?}"
    );
    vty.send(&format!(
        "copy scp://{user}:{pw}@{}/other.bin flash:x.bin\n",
        scp.ip()
    ))
    .await;
    vty.expect(r"Destination filename \[x\.bin\]\? $").await;
    vty.send("\n").await;
    let out = vty.expect(&format!(r"(?m)^{host}#$")).await;
    assert!(out.contains("(No such file or directory)"), "{out:?}");
    assert!(!flash.join("x.bin").exists());

    let transfers = app.service.state.transfers.snapshot();
    let done_by = |p: Protocol| {
        transfers
            .iter()
            .filter(|t| t.protocol == p && t.state == TransferState::Completed)
            .count()
    };
    assert_eq!(done_by(Protocol::Scp), 2, "{transfers:?}");
    assert_eq!(done_by(Protocol::Sftp), 1, "{transfers:?}");
    assert!(
        transfers
            .iter()
            .all(|t| t.client.ip() == std::net::IpAddr::V4(v4(lab.ssh(0)))),
        "copies leave from the device's own address: {transfers:?}"
    );
    lab.stop().await;
}

#[path = "lab_stacks.rs"]
mod stacks;

#[path = "lab_issu.rs"]
mod issu;
