//! The built-in FTP server against real clients (curl, lftp, Python ftplib) and a raw control
//! connection for the refusals. Every server binds port 0 on its own random loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fleetup::ftp::{FtpConfig, FtpCredentials, FtpTls, PortRange};
use fleetup::shutdown::Shutdown;
use fleetup::transfers::{Protocol, TransferState, Transfers};

use crate::support::{random_loopback, write_random_file};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket};

const USER: &str = "dev";
const PASS: &str = "s3cret-pw";
const BIG: usize = 40 * 1024 * 1024;
/// Upper bound on any single wait, so a broken server fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(60);

/// A random loopback address other than those in `taken`.
fn random_loopback_except(taken: &[Ipv4Addr]) -> Ipv4Addr {
    loop {
        let o = random_loopback();
        if !taken.contains(&o) {
            return o;
        }
    }
}

struct Server {
    addr: SocketAddr,
    root: tempfile::TempDir,
    work: tempfile::TempDir,
    transfers: Transfers,
    shutdown: Shutdown,
    credentials: FtpCredentials,
    task: tokio::task::JoinHandle<Result<(), fleetup::ftp::FtpError>>,
}

fn config() -> FtpConfig {
    FtpConfig {
        credentials: FtpCredentials::new(USER, PASS),
        ..FtpConfig::default()
    }
}

async fn start(config: FtpConfig) -> Server {
    start_on(random_loopback(), config).await
}

async fn start_on(ip: Ipv4Addr, config: FtpConfig) -> Server {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let root = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let transfers = Transfers::new();
    let shutdown = Shutdown::new();
    let credentials = config.credentials.clone();
    let task = tokio::spawn(fleetup::ftp::run(
        listener,
        root.path().to_path_buf(),
        config,
        transfers.clone(),
        shutdown.clone(),
    ));
    Server {
        addr,
        root,
        work,
        transfers,
        shutdown,
        credentials,
        task,
    }
}

impl Server {
    fn image(&self, name: &str, size: usize) -> PathBuf {
        let p = self.root.path().join(name);
        write_random_file(&p, size, size as u64 ^ name.len() as u64);
        p
    }

    fn url(&self, file: &str) -> String {
        format!("ftp://{USER}:{PASS}@{}/{file}", self.addr)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    async fn stop(self) {
        self.shutdown.shutdown_and_wait().await;
        self.task.await.unwrap().unwrap();
    }
}

fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(
        x.len(),
        y.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    assert!(
        x == y,
        "{} and {} differ in content",
        a.display(),
        b.display()
    );
}

async fn run(program: &str, args: &[&str]) -> Output {
    tokio::time::timeout(
        GUARD,
        tokio::process::Command::new(program).args(args).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} {args:?} did not finish"))
    .unwrap()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw control connection, for what clients would never send.
struct Ctl {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Ctl {
    async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> (Ctl, (u16, String)) {
        let s = TcpSocket::new_v4().unwrap();
        s.bind((from, 0).into()).unwrap();
        let stream = s.connect(server).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Ctl {
            r: BufReader::new(r),
            w,
        };
        let greeting = c.reply().await;
        (c, greeting)
    }

    async fn connect(server: SocketAddr) -> (Ctl, (u16, String)) {
        Self::connect_from(Ipv4Addr::LOCALHOST, server).await
    }

    async fn login(server: SocketAddr) -> Ctl {
        Self::login_from(Ipv4Addr::LOCALHOST, server).await
    }

    async fn login_from(from: Ipv4Addr, server: SocketAddr) -> Ctl {
        let (mut c, (code, _)) = Self::connect_from(from, server).await;
        assert_eq!(code, 220);
        assert_eq!(c.cmd(&format!("USER {USER}")).await.0, 331);
        assert_eq!(c.cmd(&format!("PASS {PASS}")).await.0, 230);
        c
    }

    /// One reply, multi-line ones joined; code 0 when the server closed the connection.
    async fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        let mut code = 0;
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(GUARD, self.r.read_line(&mut line))
                .await
                .expect("no reply from the FTP server")
                .unwrap_or(0);
            if n == 0 {
                return (code, text);
            }
            text.push_str(&line);
            let digits = line.get(..3).and_then(|d| d.parse::<u16>().ok());
            if code == 0 {
                code = digits.expect("reply starts with a code");
            }
            if digits == Some(code) && line.as_bytes().get(3) == Some(&b' ') {
                return (code, text);
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

/// After RETR: 150, the data connection carries exactly `file`, then 226.
async fn expect_retr(c: &mut Ctl, data: &mut tokio::net::TcpStream, file: &Path) {
    assert_eq!(c.reply().await.0, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, std::fs::read(file).unwrap());
    assert_eq!(c.reply().await.0, 226);
}

/// The port of a 229 reply: `Entering Extended Passive Mode (|||PORT|)`.
fn epsv_port(reply: &str) -> u16 {
    reply
        .split("|||")
        .nth(1)
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap()
}

fn pasv_port(reply: &str) -> (Ipv4Addr, u16) {
    let inner = reply.split('(').nth(1).unwrap().split(')').next().unwrap();
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.trim().parse().unwrap())
        .collect();
    (
        Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8),
        n[4] << 8 | n[5],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_pasv_and_epsv_are_byte_exact_and_show_in_transfers() {
    let s = start(config()).await;
    let src = s.image("c2960x-universalk9-mz.152-7.E8.bin", BIG);
    let pasv = s.out("pasv.bin");
    let epsv = s.out("epsv.bin");
    let url = s.url("c2960x-universalk9-mz.152-7.E8.bin");
    let out = run(
        "curl",
        &["-sS", "--disable-epsv", "-o", pasv.to_str().unwrap(), &url],
    )
    .await;
    ok(&out, "curl PASV");
    assert_same_file(&src, &pasv);
    let out = run("curl", &["-sS", "-o", epsv.to_str().unwrap(), &url]).await;
    ok(&out, "curl EPSV");
    assert_same_file(&src, &epsv);

    let snap = s.transfers.snapshot();
    let done: Vec<_> = snap
        .iter()
        .filter(|t| t.protocol == Protocol::Ftp && t.state == TransferState::Completed)
        .collect();
    assert_eq!(done.len(), 2, "{snap:?}");
    for t in done {
        assert_eq!(t.bytes, BIG as u64);
        assert_eq!(t.total, Some(BIG as u64));
        assert_eq!(t.file, "c2960x-universalk9-mz.152-7.E8.bin");
        assert_eq!(t.direction, "download");
    }
    assert_eq!(s.transfers.counters(Protocol::Ftp).completed, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lftp_segmented_pget_is_byte_exact() {
    let s = start(config()).await;
    let src = s.image("ios.bin", BIG);
    let dest = s.out("ios.bin");
    let script = format!(
        "set ftp:ssl-allow no; set ftp:use-telnet-iac off; set net:max-retries 2; set net:timeout 30; set xfer:clobber on; \
         set net:limit-rate 16M; \
         open -u {USER},{PASS} ftp://{}; pget -n 4 ios.bin -o {}",
        s.addr,
        dest.display()
    );
    // ftp:use-telnet-iac off: with lftp's default urgent `IAC IP IAC DM` before the ABOR that
    // ends each segment, the ABOR line sometimes reaches the server only when lftp's
    // net:timeout expires (30 s, then the download still completes byte-exact). Open issue,
    // see docs/ftp.md; vsftpd does not show it.
    let out = run("lftp", &["-c", &script]).await;
    ok(&out, "lftp pget -n 4");
    assert_same_file(&src, &dest);
    // Segments after the first start with REST at a non-zero offset. lftp adds segments only
    // while the first connection is still busy, hence its per-connection rate limit above.
    let snap = s.transfers.snapshot();
    let partial = snap
        .iter()
        .filter(|t| t.total.is_some_and(|n| n < BIG as u64))
        .count();
    assert!(partial >= 1, "no segmented (REST) transfer seen: {snap:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_ftplib_downloads_byte_exact_and_lists() {
    let s = start(config()).await;
    let src = s.image("asr1000-universalk9.17.09.04a.SPA.bin", BIG);
    s.image("small.bin", 1000);
    let dest = s.out("py.bin");
    let script = format!(
        r#"
import ftplib, sys
f = ftplib.FTP()
f.connect("{ip}", {port}, timeout=30)
f.login("{USER}", "{PASS}")
name = "asr1000-universalk9.17.09.04a.SPA.bin"
print("SIZE", f.size(name))
print("NLST", sorted(f.nlst()))
print("MLSD", sorted((n, fa["size"]) for n, fa in f.mlsd()))
print("PWD", f.pwd())
with open(r"{dest}", "wb") as out:
    f.retrbinary("RETR " + name, out.write, blocksize=1 << 16)
f.quit()
"#,
        ip = s.addr.ip(),
        port = s.addr.port(),
        dest = dest.display()
    );
    let out = run("python3", &["-c", &script]).await;
    ok(&out, "python ftplib");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("SIZE {BIG}")), "{stdout}");
    assert!(
        stdout.contains("NLST ['asr1000-universalk9.17.09.04a.SPA.bin', 'small.bin']"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "MLSD [('asr1000-universalk9.17.09.04a.SPA.bin', '{BIG}'), ('small.bin', '1000')]"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("PWD /"), "{stdout}");
    assert_same_file(&src, &dest);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_list_and_nlst_show_only_servable_files() {
    let s = start(config()).await;
    s.image("b.bin", 10);
    s.image("a.bin", 20);
    std::fs::write(s.root.path().join(".incoming"), b"x").unwrap();
    std::fs::create_dir(s.root.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.root.path().join("passwd.bin")).unwrap();
    let out = run("curl", &["-sS", "-l", &s.url("")]).await;
    ok(&out, "curl NLST");
    // curl turns the CRLF of an ASCII listing into LF.
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names, ["a.bin", "b.bin"]);
    let out = run("curl", &["-sS", &s.url("")]).await;
    ok(&out, "curl LIST");
    let list = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("-r--r--r--"), "{list}");
    assert!(
        lines[0].contains(" 20 ") && lines[0].ends_with("a.bin"),
        "{list}"
    );
    assert!(
        lines[1].contains(" 10 ") && lines[1].ends_with("b.bin"),
        "{list}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_530_and_the_source_is_locked_out() {
    let s = start(FtpConfig {
        lockout_after: 3,
        ..config()
    })
    .await;
    s.image("ios.bin", 100);
    let (mut c, _) = Ctl::connect(s.addr).await;
    for attempt in 1..=3 {
        assert_eq!(c.cmd(&format!("USER {USER}")).await.0, 331);
        let (code, text) = c.cmd("PASS wrong").await;
        assert_eq!(code, 530, "attempt {attempt}: {text}");
        if attempt == 3 {
            assert!(text.contains("locked out"), "{text}");
        }
    }
    // The connection that hit the limit is closed, and new ones are turned away, even with
    // the right password.
    assert_eq!(c.reply().await.0, 0);
    let (_, (code, text)) = Ctl::connect(s.addr).await;
    assert_eq!(code, 421, "{text}");
    let out = run("curl", &["-sS", "-o", "/dev/null", &s.url("ios.bin")]).await;
    assert!(!out.status.success(), "curl got in while locked out");
    // Another source address is not affected.
    Ctl::login_from(random_loopback(), s.addr).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_wrong_password_is_denied() {
    let s = start(config()).await;
    s.image("ios.bin", 100);
    let url = format!("ftp://{USER}:nope@{}/ios.bin", s.addr);
    let out = run("curl", &["-sS", "-o", "/dev/null", &url]).await;
    // 67: "The user name, password, or similar was not accepted".
    assert_eq!(
        out.status.code(),
        Some(67),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("530"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_is_off_by_default() {
    let s = start(config()).await;
    let (mut c, _) = Ctl::connect(s.addr).await;
    assert_eq!(c.cmd("USER anonymous").await.0, 331);
    assert_eq!(c.cmd("PASS guest@example.com").await.0, 530);
    assert_eq!(
        c.cmd("PWD").await.0,
        530,
        "commands before login must be refused"
    );
    assert_eq!(c.cmd("RETR ios.bin").await.0, 530);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_credentials_work_until_removed() {
    let s = start(config()).await;
    let src = s.image("ios.bin", 3000);
    let token = s.credentials.add_temporary("rollout-7", "one-time-pw");
    let url = format!("ftp://rollout-7:one-time-pw@{}/ios.bin", s.addr);
    let dest = s.out("ios.bin");
    let out = run("curl", &["-sS", "-o", dest.to_str().unwrap(), &url]).await;
    ok(&out, "curl with temporary credentials");
    assert_same_file(&src, &dest);
    assert!(s.credentials.remove(token));
    let out = run("curl", &["-sS", "-o", "/dev/null", &url]).await;
    assert_eq!(
        out.status.code(),
        Some(67),
        "removed credentials still accepted"
    );
    s.stop().await;
}

/// Found by the ftp_session fuzz target: replies repeat what the client sent, and a control
/// character in it (a CR, an escape sequence) went out verbatim inside the reply line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_sent_by_a_client_are_not_repeated_in_replies() {
    let s = start(config()).await;
    s.image("ios.bin", 100);
    let (mut c, _) = Ctl::connect(s.addr).await;
    let (code, text) = c.cmd("USER a\rb\x1b[2J").await;
    assert_eq!(code, 331);
    assert_eq!(text, "331 Password required for a?b?[2J.\r\n");
    assert_eq!(c.cmd(&format!("PASS {PASS}")).await.0, 530);
    let mut c = Ctl::login(s.addr).await;
    for (line, reply) in [
        ("XYZ\x0c arg", "502 XYZ? not implemented.\r\n"),
        (
            "RETR ios\x07.bin",
            "550 ios?.bin: refused (control character in file name).\r\n",
        ),
        ("TYPE \x1bX", "504 TYPE ?X not supported; use I or A.\r\n"),
    ] {
        let (_, text) = c.cmd(line).await;
        assert_eq!(text, reply, "{line:?}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_verb_is_refused() {
    let s = start(config()).await;
    let src = s.image("ios.bin", 5000);
    let before = std::fs::read(&src).unwrap();
    let mut c = Ctl::login(s.addr).await;
    for line in [
        "STOR new.bin",
        "STOU",
        "APPE ios.bin",
        "DELE ios.bin",
        "RNFR ios.bin",
        "RNTO other.bin",
        "MKD newdir",
        "XMKD newdir",
        "RMD sub",
        "XRMD sub",
        "MFMT 20200101000000 ios.bin",
    ] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, 550, "{line}: {text}");
        assert!(text.contains("read-only"), "{line}: {text}");
    }
    let (code, _) = c.cmd("SITE CHMOD 777 ios.bin").await;
    assert_eq!(code, 502);
    // A real upload attempt fails too.
    let upload = s.out("up.bin");
    std::fs::write(&upload, b"malware").unwrap();
    let out = run(
        "curl",
        &["-sS", "-T", upload.to_str().unwrap(), &s.url("new.bin")],
    )
    .await;
    assert!(!out.status.success(), "upload succeeded");
    let names: Vec<_> = std::fs::read_dir(s.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["ios.bin".to_string()]);
    assert_eq!(std::fs::read(&src).unwrap(), before);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_root_are_refused() {
    let s = start(config()).await;
    s.image("ios.bin", 100);
    std::fs::write(s.root.path().join(".hidden.bin"), b"h").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.root.path().join("evil.bin")).unwrap();
    let mut c = Ctl::login(s.addr).await;
    for line in ["CWD ../..", "CWD ..", "CWD /etc", "CWD sub", "CDUP"] {
        let (code, text) = c.cmd(line).await;
        assert_eq!(code, 550, "{line}: {text}");
    }
    let (code, text) = c.cmd("PWD").await;
    assert_eq!(code, 257);
    assert!(text.contains("\"/\""), "{text}");
    assert_eq!(c.cmd("CWD /").await.0, 250);
    for name in [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".hidden.bin",
        "evil.bin",
        "sub/../ios.bin",
    ] {
        assert_eq!(c.cmd("TYPE I").await.0, 200);
        let (code, _) = c.cmd("PASV").await;
        assert_eq!(code, 227);
        let (code, text) = c.cmd(&format!("RETR {name}")).await;
        assert_eq!(code, 550, "RETR {name}: {text}");
        let (code, text) = c.cmd(&format!("SIZE {name}")).await;
        assert_eq!(code, 550, "SIZE {name}: {text}");
        let (code, _) = c.cmd(&format!("MDTM {name}")).await;
        assert_eq!(code, 550);
    }
    assert_eq!(c.cmd("SIZE missing.bin").await.0, 550);
    assert_eq!(
        c.cmd("SIZE ios.bin").await,
        (213, "213 100\r\n".to_string())
    );
    // And through a real client.
    let url = format!("ftp://{USER}:{PASS}@{}/%2E%2E/%2E%2E/etc/passwd", s.addr);
    let out = run("curl", &["-sS", "-o", "/dev/null", &url]).await;
    assert!(!out.status.success());
    assert_eq!(s.transfers.counters(Protocol::Ftp).started, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_with_curl_port_and_eprt_is_byte_exact() {
    let s = start(config()).await;
    let src = s.image("ios.bin", BIG);
    let eprt = s.out("eprt.bin");
    let port = s.out("port.bin");
    let url = s.url("ios.bin");
    // `-` : the address of the control connection.
    let out = run(
        "curl",
        &["-sS", "--ftp-port", "-", "-o", eprt.to_str().unwrap(), &url],
    )
    .await;
    ok(&out, "curl active (EPRT)");
    assert_same_file(&src, &eprt);
    let out = run(
        "curl",
        &[
            "-sS",
            "--ftp-port",
            "-",
            "--disable-eprt",
            "-o",
            port.to_str().unwrap(),
            &url,
        ],
    )
    .await;
    ok(&out, "curl active (PORT)");
    assert_same_file(&src, &port);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_and_eprt_to_another_address_are_refused() {
    let s = start(config()).await;
    s.image("ios.bin", 100);
    let me = random_loopback();
    let other = random_loopback_except(&[me]);
    // A host that would be attacked by an FTP bounce.
    let victim = TcpListener::bind((other, 0)).await.unwrap();
    let vport = victim.local_addr().unwrap().port();
    let mut c = Ctl::login_from(me, s.addr).await;
    let o = other.octets();
    let (code, text) = c
        .cmd(&format!(
            "PORT {},{},{},{},{},{}",
            o[0],
            o[1],
            o[2],
            o[3],
            vport >> 8,
            vport & 0xff
        ))
        .await;
    assert_eq!(code, 500, "{text}");
    let (code, text) = c.cmd(&format!("EPRT |1|{other}|{vport}|")).await;
    assert_eq!(code, 500, "{text}");
    // Nothing is set up, so a RETR has no data connection to use.
    let (code, _) = c.cmd("RETR ios.bin").await;
    assert_eq!(code, 425);
    // A privileged port on the client's own address is refused too.
    let m = me.octets();
    let (code, _) = c
        .cmd(&format!("PORT {},{},{},{},0,25", m[0], m[1], m[2], m[3]))
        .await;
    assert_eq!(code, 500);
    let (code, _) = c.cmd("PORT 1,2,3").await;
    assert_eq!(code, 501);
    let (code, _) = c.cmd("EPRT |9|x|1|").await;
    assert_eq!(code, 501);
    // The victim never saw a connection (the server has answered every command by now).
    let waker = futures_util::FutureExt::now_or_never(victim.accept());
    assert!(waker.is_none(), "the server connected to a third address");

    // The client's own address works, from the server's port 20 (tests run as root) or any.
    let mine = TcpListener::bind((me, 0)).await.unwrap();
    let mport = mine.local_addr().unwrap().port();
    let (code, text) = c.cmd(&format!("EPRT |1|{me}|{mport}|")).await;
    assert_eq!(code, 200, "{text}");
    c.w.write_all(b"RETR ios.bin\r\n").await.unwrap();
    let (mut data, from) = mine.accept().await.unwrap();
    assert_eq!(from.ip(), s.addr.ip());
    let root_user =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    if root_user {
        assert_eq!(
            from.port(),
            20,
            "active data connections come from port 20 when it can be bound"
        );
    }
    expect_retr(&mut c, &mut data, &s.root.path().join("ios.bin")).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_can_be_switched_off() {
    let s = start(FtpConfig {
        active: false,
        ..config()
    })
    .await;
    let mut c = Ctl::login(s.addr).await;
    let (code, feat) = c.cmd("FEAT").await;
    assert_eq!(code, 211);
    assert!(!feat.contains("EPRT") && feat.contains("EPSV"), "{feat}");
    let (code, text) = c.cmd("PORT 127,0,0,1,200,1").await;
    assert_eq!(code, 502, "{text}");
    assert!(text.contains("--ftp-active"), "{text}");
    assert_eq!(c.cmd("EPRT |1|127.0.0.1|51201|").await.0, 502);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftps_with_curl_ssl_reqd_is_byte_exact() {
    let certs = tempfile::tempdir().unwrap();
    let ip = random_loopback();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let out = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=fleetup-test",
            "-addext",
            &format!("subjectAltName=IP:{ip}"),
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    )
    .await;
    ok(&out, "openssl req");
    let tls = FtpTls::from_pem_files(&cert, &key).unwrap();
    // Bind on the certificate's address so curl can verify it against the CA file.
    let s = start_on(
        ip,
        FtpConfig {
            tls: Some(tls),
            ..config()
        },
    )
    .await;
    let src = s.image("ios.bin", BIG);
    let dest = s.out("ios.bin");
    let url = s.url("ios.bin");
    let out = run(
        "curl",
        &[
            "-sS",
            "--ssl-reqd",
            "--cacert",
            cert.to_str().unwrap(),
            "-o",
            dest.to_str().unwrap(),
            &url,
        ],
    )
    .await;
    ok(&out, "curl --ssl-reqd");
    assert_same_file(&src, &dest);
    // Listing over TLS too.
    let out = run(
        "curl",
        &[
            "-sS",
            "--ssl-reqd",
            "--cacert",
            cert.to_str().unwrap(),
            "-l",
            &s.url(""),
        ],
    )
    .await;
    ok(&out, "curl --ssl-reqd NLST");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "ios.bin");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftps_is_refused_clearly_when_not_configured() {
    let s = start(config()).await;
    s.image("ios.bin", 100);
    let (mut c, _) = Ctl::connect(s.addr).await;
    let (code, text) = c.cmd("AUTH TLS").await;
    assert_eq!(code, 502);
    assert!(text.contains("--ftp-tls-cert"), "{text}");
    assert_eq!(c.cmd("PROT P").await.0, 503);
    let out = run(
        "curl",
        &["-sS", "--ssl-reqd", "-o", "/dev/null", &s.url("ios.bin")],
    )
    .await;
    assert!(!out.status.success(), "--ssl-reqd must fail without TLS");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_download_with_curl_continue_is_byte_exact() {
    let s = start(config()).await;
    let src = s.image("ios.bin", BIG);
    let dest = s.out("ios.bin");
    let all = std::fs::read(&src).unwrap();
    // An odd offset, so a block-aligned mistake would show.
    std::fs::write(&dest, &all[..15_000_017]).unwrap();
    let out = run(
        "curl",
        &[
            "-sS",
            "-C",
            "-",
            "-o",
            dest.to_str().unwrap(),
            &s.url("ios.bin"),
        ],
    )
    .await;
    ok(&out, "curl -C -");
    assert_same_file(&src, &dest);
    let t = &s.transfers.snapshot()[0];
    assert_eq!(t.total, Some((BIG - 15_000_017) as u64));
    assert_eq!(t.state, TransferState::Completed);

    let mut c = Ctl::login(s.addr).await;
    assert_eq!(c.cmd(&format!("REST {}", BIG + 1)).await.0, 350);
    let (code, _) = c.cmd("PASV").await;
    assert_eq!(code, 227);
    let (code, text) = c.cmd("RETR ios.bin").await;
    assert_eq!(code, 554, "{text}");
    assert_eq!(c.cmd("REST -5").await.0, 501);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_downloads_are_byte_exact() {
    let s = start(FtpConfig {
        max_per_client: 20,
        passive_ports: None,
        ..config()
    })
    .await;
    let src = s.image("ios.bin", 8 * 1024 * 1024);
    let mut jobs = Vec::new();
    for i in 0..20 {
        let dest = s.out(&format!("c{i}.bin"));
        let url = s.url("ios.bin");
        jobs.push(tokio::spawn(async move {
            let out = run("curl", &["-sS", "-o", dest.to_str().unwrap(), &url]).await;
            (out, dest)
        }));
    }
    for j in jobs {
        let (out, dest) = j.await.unwrap();
        ok(&out, "concurrent curl");
        assert_same_file(&src, &dest);
    }
    assert_eq!(s.transfers.counters(Protocol::Ftp).completed, 20);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_per_source_and_global() {
    let s = start(FtpConfig {
        max_per_client: 2,
        max_sessions: 3,
        ..config()
    })
    .await;
    let ip1 = random_loopback();
    let (_a, (c1, _)) = Ctl::connect_from(ip1, s.addr).await;
    let (_b, (c2, _)) = Ctl::connect_from(ip1, s.addr).await;
    let (_, (c3, t3)) = Ctl::connect_from(ip1, s.addr).await;
    assert_eq!((c1, c2, c3), (220, 220, 421), "{t3}");
    let ip2 = random_loopback_except(&[ip1]);
    let (mut d, (c4, _)) = Ctl::connect_from(ip2, s.addr).await;
    assert_eq!(c4, 220);
    let ip3 = random_loopback_except(&[ip1, ip2]);
    let (_, (c5, t5)) = Ctl::connect_from(ip3, s.addr).await;
    assert_eq!(c5, 421, "global limit: {t5}");
    // A closed session frees its slot.
    assert_eq!(d.cmd("QUIT").await.0, 221);
    assert_eq!(d.reply().await.0, 0);
    let (_, (c6, t6)) = Ctl::connect_from(ip3, s.addr).await;
    assert_eq!(c6, 220, "{t6}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_control_and_data_connections_time_out() {
    let s = start(FtpConfig {
        idle_timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    s.image("ios.bin", 100);
    // A passive port nobody connects to.
    let mut c = Ctl::login(s.addr).await;
    assert_eq!(c.cmd("EPSV").await.0, 229);
    let (code, text) = c.cmd("RETR ios.bin").await;
    assert_eq!(code, 425, "{text}");
    // A silent control connection.
    let (code, text) = c.reply().await;
    assert_eq!(code, 421, "{text}");
    assert_eq!(c.reply().await.0, 0, "connection should be closed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasv_announces_the_public_host_and_a_pooled_port() {
    let base = 20000 + rand::random::<u16>() % 30000;
    let range = PortRange {
        low: base,
        high: base + 50,
    };
    let s = start(FtpConfig {
        public_host: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))),
        passive_ports: Some(range),
        ..config()
    })
    .await;
    let mut c = Ctl::login(s.addr).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (code, text) = c.cmd("PASV").await;
        assert_eq!(code, 227, "{text}");
        let (ip, port) = pasv_port(&text);
        assert_eq!(ip, Ipv4Addr::new(192, 0, 2, 10));
        assert!(
            (range.low..=range.high).contains(&port),
            "{port} outside {range}"
        );
        seen.push(port);
        let (code, text) = c.cmd("EPSV").await;
        assert_eq!(code, 229);
        let port = epsv_port(&text);
        assert!((range.low..=range.high).contains(&port));
    }
    assert_eq!(c.cmd("EPSV 2").await.0, 522);
    assert_eq!(c.cmd("EPSV ALL").await.0, 200);
    assert_eq!(c.cmd("PASV").await.0, 503);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_stops_a_transfer_and_the_session_goes_on() {
    let s = start(config()).await;
    s.image("ios.bin", BIG);
    let mut c = Ctl::login(s.addr).await;
    let (code, text) = c.cmd("EPSV").await;
    assert_eq!(code, 229);
    let port = epsv_port(&text);
    let mut data = tokio::net::TcpStream::connect((s.addr.ip(), port))
        .await
        .unwrap();
    assert_eq!(c.cmd("RETR ios.bin").await.0, 150);
    let mut first = vec![0u8; 4096];
    data.read_exact(&mut first).await.unwrap();
    c.w.write_all(b"\xff\xf4\xff\xf2ABOR\r\n").await.unwrap();
    let (code, text) = c.reply().await;
    assert!(code == 426 || code == 226, "{text}");
    if code == 426 {
        assert_eq!(c.reply().await.0, 226);
    }
    assert_eq!(c.cmd("NOOP").await.0, 200);
    drop(data);
    let t = &s.transfers.snapshot()[0];
    assert!(
        t.state == TransferState::Failed || t.bytes == BIG as u64,
        "{t:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_and_returns() {
    let s = start(config()).await;
    let mut c = Ctl::login(s.addr).await;
    s.shutdown.token.cancel();
    let (code, _) = c.reply().await;
    assert_eq!(code, 421);
    let addr = s.addr;
    s.stop().await;
    // A connect to a closed loopback port in the ephemeral range can pick that very port as
    // its source and connect to itself (TCP self-connect): that is not a listener.
    let listening = match tokio::net::TcpStream::connect(addr).await {
        Ok(stream) => stream.local_addr().ok() != Some(addr),
        Err(_) => false,
    };
    assert!(!listening, "listener still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_root_is_a_clear_error() {
    let listener = TcpListener::bind((random_loopback(), 0)).await.unwrap();
    let err = fleetup::ftp::run(
        listener,
        PathBuf::from("/nonexistent/fleetup-images"),
        config(),
        Transfers::new(),
        Shutdown::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/fleetup-images"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_port_serves_only_the_control_client() {
    let s = start(config()).await;
    s.image("ios.bin", 5000);
    let me = random_loopback();
    let mut c = Ctl::login_from(me, s.addr).await;
    let (code, text) = c.cmd("PASV").await;
    assert_eq!(code, 227);
    let (ip, port) = pasv_port(&text);
    assert_eq!(
        IpAddr::V4(ip),
        s.addr.ip(),
        "PASV announces the address the client connected to"
    );
    c.w.write_all(b"RETR ios.bin\r\n").await.unwrap();
    // Someone else grabs the port first: the server drops that connection unanswered.
    let intruder = random_loopback_except(&[me]);
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind((intruder, 0).into()).unwrap();
    let mut stolen = sock.connect((ip, port).into()).await.unwrap();
    let mut buf = Vec::new();
    let n = stolen.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "a foreign host received data");
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind((me, 0).into()).unwrap();
    let mut data = sock.connect((ip, port).into()).await.unwrap();
    expect_retr(&mut c, &mut data, &s.root.path().join("ios.bin")).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_sent_during_a_transfer_lets_it_finish() {
    let s = start(config()).await;
    s.image("ios.bin", 4 * 1024 * 1024);
    let mut c = Ctl::login(s.addr).await;
    let (code, text) = c.cmd("PASV").await;
    assert_eq!(code, 227);
    let (ip, port) = pasv_port(&text);
    let mut data = tokio::net::TcpStream::connect((ip, port)).await.unwrap();
    c.w.write_all(b"RETR ios.bin\r\nQUIT\r\n").await.unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, std::fs::read(s.root.path().join("ios.bin")).unwrap());
    assert_eq!(c.reply().await.0, 150);
    assert_eq!(c.reply().await.0, 226);
    assert_eq!(c.reply().await.0, 221);
    assert_eq!(c.reply().await.0, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_log_in_is_closed_after_the_login_timeout() {
    let s = start(FtpConfig {
        login_timeout: Duration::from_secs(1),
        ..config()
    })
    .await;
    // Busy but never logged in: commands do not extend the login deadline.
    let (mut c, (code, _)) = Ctl::connect(s.addr).await;
    assert_eq!(code, 220);
    assert_eq!(c.cmd("USER nobody").await.0, 331);
    let (code, text) = c.reply().await;
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("Not logged in within 1 s"), "{text}");
    assert_eq!(c.reply().await.0, 0, "connection should be closed");
    // A session that logs in in time goes on.
    let mut c = Ctl::login(s.addr).await;
    assert_eq!(c.cmd("NOOP").await.0, 200);
    s.stop().await;
}

/// One FTP reply read from a blocking control connection: (code, last line).
fn blocking_reply(r: &mut impl std::io::BufRead) -> (u16, String) {
    let mut code = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return (code, line);
        }
        let digits = line.get(..3).and_then(|d| d.parse::<u16>().ok());
        if code == 0 {
            code = digits.expect("reply starts with a code");
        }
        if digits == Some(code) && line.as_bytes().get(3) == Some(&b' ') {
            return (code, line);
        }
    }
}

/// 100 MB of command lines sent during a download the client does not read: the server
/// leaves them in the socket instead of queueing them, its memory stays bounded, and the
/// session answers every one of them once the stalled transfer has been given up.
#[test]
fn command_lines_flooded_during_a_transfer_do_not_grow_the_server() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;
    const LINE: usize = 1000;
    const FLOOD: usize = 100 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    write_random_file(&data.join("images/ios.bin"), 32 * 1024 * 1024, 7);
    let serve = crate::support::ServeProcess::start_with(
        &data,
        &[
            "--ftp",
            "127.0.0.1:0",
            "--ftp-password",
            PASS,
            // The client never reads the data connection: the send stalls and is given up.
            "--ftp-idle-timeout",
            "5",
        ],
    );
    let addr = serve.ftp.expect("FTP address in the banner");
    let ctl = TcpStream::connect(addr).unwrap();
    let mut r = BufReader::new(ctl.try_clone().unwrap());
    let mut w = ctl;
    let cmd = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str| {
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        blocking_reply(r)
    };
    assert_eq!(blocking_reply(&mut r).0, 220);
    assert_eq!(cmd(&mut w, &mut r, "USER fleetup").0, 331);
    assert_eq!(cmd(&mut w, &mut r, &format!("PASS {PASS}")).0, 230);
    let (code, text) = cmd(&mut w, &mut r, "EPSV");
    assert_eq!(code, 229, "{text}");
    let _data = TcpStream::connect((addr.ip(), epsv_port(&text))).unwrap();
    assert_eq!(cmd(&mut w, &mut r, "RETR ios.bin").0, 150);
    let base = serve.peak_rss();

    let lines = FLOOD / LINE;
    let writer = std::thread::spawn(move || {
        let mut line = format!("NOOP {}", "x".repeat(LINE - 7)).into_bytes();
        line.extend_from_slice(b"\r\n");
        let chunk: Vec<u8> = line.repeat(64);
        for _ in 0..lines / 64 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"QUIT\r\n").unwrap();
        w
    });
    let (code, text) = blocking_reply(&mut r);
    assert_eq!(code, 426, "the stalled RETR is given up: {text}");
    let mut noops = 0;
    loop {
        let (code, text) = blocking_reply(&mut r);
        match code {
            200 => noops += 1,
            221 => break,
            _ => panic!("unexpected reply {code} {text}"),
        }
    }
    assert_eq!(noops, lines / 64 * 64, "every queued command was answered");
    let _w = writer.join().unwrap();
    let mut rest = String::new();
    assert_eq!(r.read_line(&mut rest).unwrap_or(0), 0, "closed after QUIT");
    let peak = serve.peak_rss();
    assert!(
        peak < base + 64 * 1024 * 1024,
        "server peak RSS grew from {} MiB to {} MiB",
        base >> 20,
        peak >> 20
    );
}
