//! The simulated fleet (`fleetup lab`) seen from the outside: OpenSSH and a russh client log in
//! over real sockets and drive the IOS command line.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use fleetup::shutdown::Shutdown;
use fleetup::sim::{Lab, LabConfig};
use regex::Regex;
use russh::ChannelMsg;
use russh::client;

/// Every wait in these tests is for a condition; this only stops a hung test.
const HANG: Duration = Duration::from_secs(60);

/// A loopback /24 of its own, so parallel tests never collide.
fn random_base() -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        rand::random_range(20..250),
        rand::random_range(1..250),
        1,
    )
}

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
struct Vty {
    channel: russh::Channel<client::Msg>,
    _session: client::Handle<AcceptAny>,
    buf: String,
    closed: bool,
}

impl Vty {
    async fn open(addr: SocketAddr, user: &str, password: &str) -> Result<Vty, String> {
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

    async fn send(&mut self, text: &str) {
        self.channel
            .data_bytes(text.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// Read until `re` matches; return everything up to the end of the match and keep the rest.
    async fn expect(&mut self, re: &str) -> String {
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
    async fn cmd(&mut self, line: &str, prompt: &str) -> String {
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
    #[allow(dead_code)]
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
