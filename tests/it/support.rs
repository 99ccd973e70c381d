//! Shared helpers for the integration tests: a service on free ports with a fresh data dir,
//! in-process or as a real `fleetup serve` process; the one rollout rig (a service over a
//! simulated lab, [`Rig`]); test bytes from the library's one generator.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fleetup::rollout::Clock;
use fleetup::serve::{ServeArgs, Service};
use fleetup::shutdown::Shutdown;
use fleetup::sim::{Lab, LabConfig};
use reqwest::StatusCode;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789";

/// Read a server-sent event stream until its text holds `needle` (true) or it ends or a minute
/// passes (false); returns what was read.
pub async fn read_stream_until(resp: reqwest::Response, needle: &str) -> (bool, String) {
    use futures_util::StreamExt;
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(needle) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    (found, text)
}

/// Wait for the moment to kill the service in the middle of wave `wave`: at least `sent`
/// devices of the wave have been sent their reload (the lab counted it) and at least `rest`
/// are still far from theirs (waiting or copying), and every device recorded as reloading has
/// really reloaded, so that the kill does not land between the engine's record of a reload and
/// the command reaching the device (that window has its own tests).
/// Every lab device was reloaded exactly once and runs the new image's version.
pub fn assert_every_device_reloaded_once(rig: &Rig) {
    for dev in rig.lab.devices() {
        let st = rig.lab.state(&dev.name).unwrap();
        assert_eq!(
            st.reload_count, 1,
            "{} was reloaded {} times",
            dev.name, st.reload_count
        );
        assert_eq!(st.version, IMAGE_VERSION, "{}", dev.name);
    }
}

pub async fn wait_reloads_mid_wave(rig: &Rig, id: &str, wave: usize, sent: usize, rest: usize) {
    eventually("reloads sent in the wave, others still to come", || async {
        let d = rig.try_detail(id).await?;
        let jobs = d["waves"].as_array()?.get(wave)?["devices"]
            .as_array()?
            .clone();
        let reloaded = |j: &Value| {
            rig.lab
                .state(j["device"].as_str().unwrap_or(""))
                .is_some_and(|st| st.reload_count >= 1)
        };
        let consistent = jobs
            .iter()
            .all(|j| (j["reload_sent"] == true) == reloaded(j));
        let sent_now = jobs.iter().filter(|j| j["reload_sent"] == true).count();
        let early = |j: &Value| {
            j["state"] == "pending"
                || matches!(
                    j["step"].as_str(),
                    None | Some(
                        "connect" | "facts" | "pre_check" | "file_present" | "free_space" | "copy"
                    )
                )
        };
        let to_come: Vec<&Value> = jobs.iter().filter(|j| j["reload_sent"] != true).collect();
        (consistent
            && sent_now >= sent
            && to_come.len() >= rest
            && to_come.iter().all(|j| early(j)))
        .then_some(())
    })
    .await
}

/// The `fleetup` binary as a command that sees none of this process's `FLEETUP_` variables:
/// only the flags and environment the test gives it.
pub fn fleetup_alone() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetup"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLEETUP_") {
            command.env_remove(k);
        }
    }
    command
}

/// The database URL of a test's service on `data_dir`, when the suite runs on PostgreSQL
/// (`FLEETUP_TEST_POSTGRES`, a superuser's URL, set by scripts/test's PostgreSQL pass): a fresh
/// database of its own, created at the first start and kept for every restart on the same data
/// directory (its URL is in DATA_DIR/.test-database). `None` on SQLite, the default.
pub fn test_database(data_dir: &Path) -> Option<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let admin = std::env::var("FLEETUP_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())?;
    let marker = data_dir.join(".test-database");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url.trim().to_string());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .arg(&admin)
        .args(["-qX", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "CREATE DATABASE {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (server, _) = admin
        .rsplit_once('/')
        .expect("FLEETUP_TEST_POSTGRES is postgres://USER:PASSWORD@HOST:PORT/DATABASE");
    let url = format!("{server}/{name}");
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

/// Whether this run of the suite is on PostgreSQL (see [`test_database`]).
pub fn on_postgres() -> bool {
    std::env::var("FLEETUP_TEST_POSTGRES").is_ok_and(|s| !s.is_empty())
}

/// The store of the service that ran on `data_dir` (SQLite there, or its test database).
pub async fn open_db(data_dir: &Path) -> fleetup::store::Db {
    let url = match test_database(data_dir) {
        Some(url) => url.parse().unwrap(),
        None => fleetup::store::DatabaseUrl::in_data_dir(data_dir),
    };
    fleetup::store::Db::connect(&url, data_dir).await.unwrap()
}

/// A service running inside the test process.
pub struct TestApp {
    pub service: Service,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ServeArgs)) -> TestApp {
        Self::start_full(adjust, fleetup::rollout::Clock::System).await
    }

    pub async fn start_full(
        adjust: impl FnOnce(&mut ServeArgs),
        clock: fleetup::rollout::Clock,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut args = ServeArgs {
            data_dir: dir.path().to_path_buf(),
            http: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        adjust(&mut args);
        if args.database.is_none()
            && let Some(url) = test_database(&args.data_dir)
        {
            args.database = Some(url.parse().unwrap());
        }
        let service = Service::start_with_clock(&args, Some(TOKEN.into()), clock)
            .await
            .unwrap();
        TestApp {
            service,
            dir,
            http: fleetup::http_client::client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.service.base_url(), path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).bearer_auth(TOKEN)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(self.url(path)).bearer_auth(TOKEN)
    }
}

/// A real `fleetup serve` process on free ports.
pub struct ServeProcess {
    pub child: Child,
    pub base_url: String,
    pub data_dir: PathBuf,
    /// Where the TFTP and FTP servers listen, when on.
    pub tftp: Option<std::net::SocketAddr>,
    pub ftp: Option<std::net::SocketAddr>,
    /// Where the HTTP and HTTPS image servers listen, when on.
    pub image_http: Option<std::net::SocketAddr>,
    pub image_https: Option<std::net::SocketAddr>,
    /// The SCP/SFTP image server, when started with `--image-scp`.
    pub scp: Option<std::net::SocketAddr>,
    /// What it wrote to stderr after its banner (the last 10,000 lines).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServeProcess {
    pub fn start(data_dir: &Path) -> ServeProcess {
        Self::start_with(data_dir, &[])
    }

    /// With extra flags; `--tftp`, `--ftp` and `--image-http` default to off unless given.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> ServeProcess {
        Self::start_inner(data_dir, extra, None, &[])
    }

    /// Like `start_with`, with variables set in the process's environment.
    pub fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> ServeProcess {
        Self::start_inner(data_dir, extra, None, env)
    }

    /// Like `start_with`, started with a soft and a hard limit on open files (`prlimit`).
    pub fn start_with_nofile(
        data_dir: &Path,
        extra: &[&str],
        soft: u64,
        hard: u64,
    ) -> ServeProcess {
        Self::start_inner(data_dir, extra, Some((soft, hard)), &[])
    }

    fn start_inner(
        data_dir: &Path,
        extra: &[&str],
        nofile: Option<(u64, u64)>,
        env: &[(String, String)],
    ) -> ServeProcess {
        let mut args: Vec<&str> = vec!["serve", "--http", "127.0.0.1:0"];
        for flag in ["--tftp", "--ftp", "--image-http"] {
            if !extra.contains(&flag) {
                args.extend([flag, "off"]);
            }
        }
        args.extend(extra);
        let database = if extra.contains(&"--database") {
            None
        } else {
            test_database(data_dir)
        };
        if let Some(url) = &database {
            args.extend(["--database", url]);
        }
        args.push("--data-dir");
        let mut command = match nofile {
            // prlimit sets its own limits, then execs the program: the pid stays the same.
            Some((soft, hard)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={soft}:{hard}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_fleetup"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_fleetup")),
        };
        let mut child = command
            .args(&args)
            .arg(data_dir)
            .env("FLEETUP_API_TOKEN", TOKEN)
            .env("FLEETUP_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut base_url = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.trim().strip_prefix("dashboard and API: ") {
                base_url = Some(rest.trim_end_matches('/').to_string());
                break;
            }
        }
        // The banner's next line: `TFTP: ADDR|off   FTP: …   HTTP: …   HTTPS: …   SCP/SFTP: …`.
        let (mut tftp, mut ftp, mut image_http, mut image_https, mut scp) =
            (None, None, None, None, None);
        if let Some(Ok(line)) = lines.next() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for pair in words.chunks(2) {
                match pair {
                    ["TFTP:", a] => tftp = a.parse().ok(),
                    ["FTP:", a] => ftp = a.parse().ok(),
                    ["HTTP:", a] => image_http = a.parse().ok(),
                    ["HTTPS:", a] => image_https = a.parse().ok(),
                    ["SCP/SFTP:", a] => scp = a.parse().ok(),
                    _ => {}
                }
            }
        }
        // Keep draining stderr so the child never blocks on a full pipe; keep the tail.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() >= 10_000 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        ServeProcess {
            child,
            base_url: base_url.expect("serve printed its address"),
            data_dir: data_dir.to_path_buf(),
            tftp,
            ftp,
            image_http,
            image_https,
            scp,
            log,
        }
    }

    /// What the process has logged so far (after its banner).
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// A request to this process's API with the test token.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        fleetup::http_client::client()
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(TOKEN)
    }

    /// A POST to this process's API with the test token.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        fleetup::http_client::client()
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(TOKEN)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and wait for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    /// Peak resident set size (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// Current resident set size (VmRSS) in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made with the openssl command
/// line: `(certificate, key)` PEM files in `dir`. The certificate is its own CA
/// (`curl --cacert`).
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("image-cert.pem"), dir.join("image-key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command line");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Write `size` bytes of deterministic pseudo-random data.
pub fn write_random_file(path: &Path, size: usize, seed: u64) {
    std::fs::write(path, fleetup::images::pseudo_random_bytes(size, seed)).unwrap();
}

/// `md5sum`'s answer for a file.
pub fn md5sum(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Poll `f` until it returns Some, with a generous deadline (a condition, not a timing claim).
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback /24 of its own (127.x.y.1), so that labs of tests running in parallel never
/// collide; benches use 127.0.x and 127.1-19.x.
pub fn random_base() -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(
        127,
        rand::random_range(20..250),
        rand::random_range(1..250),
        1,
    )
}

/// An upload form with `path`'s content as the `file` field, named `name`.
pub fn multipart_file(path: &Path, name: &str) -> reqwest::multipart::Form {
    let part =
        reqwest::multipart::Part::bytes(std::fs::read(path).unwrap()).file_name(name.to_string());
    reqwest::multipart::Form::new().part("file", part)
}

/// A random loopback address 127.x.y.z (not 127.0.0.1), so parallel tests never share one.
pub fn random_loopback() -> std::net::Ipv4Addr {
    let r: u32 = rand::random();
    let [a, b, c, _] = r.to_be_bytes();
    std::net::Ipv4Addr::new(127, a.max(2), b, c.clamp(2, 254))
}

/// The image every [`Rig`] has in its store, and the version its name carries.
pub const IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";
pub const IMAGE_VERSION: &str = "15.2(7)E8";

/// A lab playbook for [`IMAGE`] over TFTP; `extra` is appended, and a `strategy:` in it polls
/// the reloading device every second.
pub fn playbook(extra: &str) -> String {
    format!(
        "name: lab-rollout\ntargets:\n  groups: [lab]\nimage:\n  ios: {IMAGE}\ntransfer:\n  protocol: tftp\n  server: 127.0.0.1\n{}",
        extra.replace("strategy:\n", "strategy:\n  timeouts: {poll: 1}\n")
    )
}

/// Every job of a rollout detail, wave after wave.
pub fn jobs(detail: &Value) -> Vec<Value> {
    detail["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["devices"].as_array().unwrap().clone())
        .collect()
}

/// One device's job in a rollout detail.
pub fn job_of(detail: &Value, device: &str) -> Value {
    jobs(detail)
        .into_iter()
        .find(|j| j["device"] == device)
        .unwrap_or_else(|| panic!("no job of {device} in {detail:#}"))
}

/// How a [`Rig`] starts; [`Rig::options`] gives the defaults: an in-process service on the
/// system clock with its TFTP and FTP servers on loopback, inventory and image added through
/// the API.
pub struct RigOptions<'a> {
    devices: usize,
    tweak: Box<dyn FnOnce(&mut LabConfig) + 'a>,
    clock: Clock,
    process: bool,
    file_servers: bool,
    cli_setup: Option<String>,
    image_size: usize,
    image_http: bool,
    image_https: bool,
    serve: Box<dyn FnOnce(&mut ServeArgs) + 'a>,
    image_scp: bool,
    process_flags: Vec<String>,
    process_env: Vec<(String, String)>,
}

impl<'a> RigOptions<'a> {
    /// Adjust the in-process service's flags after the rig's own (a listener's address…).
    pub fn serve(mut self, tweak: impl FnOnce(&mut ServeArgs) + 'a) -> Self {
        self.serve = Box::new(tweak);
        self
    }

    /// Extra flags of the `fleetup serve` process (with [`RigOptions::serve_process`]).
    pub fn process_flags(mut self, flags: &[&str]) -> Self {
        self.process_flags = flags.iter().map(|f| f.to_string()).collect();
        self
    }

    /// A variable set in the `fleetup serve` process's environment (only there: the test
    /// process's own environment is left alone).
    pub fn process_env(mut self, key: &str, value: &str) -> Self {
        self.process_env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adjust the lab's configuration (a copy rate, faults, boot time…).
    pub fn lab(mut self, tweak: impl FnOnce(&mut LabConfig) + 'a) -> Self {
        self.tweak = Box::new(tweak);
        self
    }

    /// The service's clock (in-process only): a manual clock makes windows testable.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A real `fleetup serve` process on a data directory that outlives it, so that it can be
    /// killed and started again.
    pub fn serve_process(mut self) -> Self {
        self.process = true;
        self
    }

    /// Whether fleetup's TFTP and FTP servers listen (on loopback, free ports).
    pub fn file_servers(mut self, on: bool) -> Self {
        self.file_servers = on;
        self
    }

    /// Whether fleetup's HTTP image server listens (on loopback, a free port); off by default.
    pub fn image_http(mut self, on: bool) -> Self {
        self.image_http = on;
        self
    }

    /// Whether fleetup's HTTPS image server listens (on loopback, a free port) with a fresh
    /// self-signed certificate for 127.0.0.1 and localhost (`Rig::image_cert`); off by default.
    pub fn image_https(mut self, on: bool) -> Self {
        self.image_https = on;
        self
    }

    /// Import the inventory with `fleetup inventory import` (the lab's, then `extra_inventory`
    /// under `devices:`) and add the image with `fleetup image add`, as a user does.
    pub fn cli_setup(mut self, extra_inventory: &str) -> Self {
        self.cli_setup = Some(extra_inventory.to_string());
        self
    }

    /// Whether fleetup's SCP/SFTP image server listens (on loopback, a free port).
    pub fn image_scp(mut self, on: bool) -> Self {
        self.image_scp = on;
        self
    }

    /// The size of the target image in bytes.
    pub fn image_size(mut self, size: usize) -> Self {
        self.image_size = size;
        self
    }

    pub async fn start(self) -> Rig {
        Rig::start_with(self).await
    }
}

/// The one rollout rig: a fleetup service (in this process, or a real `fleetup serve`), a lab
/// of simulated devices imported into its inventory, and [`IMAGE`] in its store.
pub struct Rig {
    pub lab: Lab,
    lab_shutdown: Shutdown,
    service: RigService,
    /// Scratch space: the image as added, playbooks; and the data directory of a process.
    pub dir: tempfile::TempDir,
    /// The HTTPS image server's certificate (its own CA) and key, when it is on.
    pub image_cert: Option<(PathBuf, PathBuf)>,
    http: reqwest::Client,
    _lab_dir: tempfile::TempDir,
}

// One per test: the size of the process variant does not matter.
#[allow(clippy::large_enum_variant)]
enum RigService {
    InProcess(Box<TestApp>),
    Process {
        /// `None` while killed.
        serve: Option<Box<ServeProcess>>,
        data: PathBuf,
        flags: Vec<String>,
        env: Vec<(String, String)>,
    },
}

impl Rig {
    /// The defaults for a lab of `devices`, to adjust before [`RigOptions::start`].
    pub fn options<'a>(devices: usize) -> RigOptions<'a> {
        RigOptions {
            devices,
            tweak: Box::new(|_| {}),
            clock: Clock::System,
            process: false,
            file_servers: true,
            cli_setup: None,
            image_size: 3 * 1024 * 1024 + 123,
            image_http: false,
            image_https: false,
            serve: Box::new(|_| {}),
            image_scp: false,
            process_flags: Vec::new(),
            process_env: Vec::new(),
        }
    }

    /// An in-process service over a lab of `devices` adjusted by `tweak`.
    pub async fn start(devices: usize, tweak: impl FnOnce(&mut LabConfig)) -> Rig {
        Self::options(devices).lab(tweak).start().await
    }

    async fn start_with(o: RigOptions<'_>) -> Rig {
        let lab_dir = tempfile::tempdir().unwrap();
        let mut config = LabConfig {
            devices: o.devices,
            base_ip: random_base(),
            ssh_port: 0,
            state_dir: lab_dir.path().to_path_buf(),
            boot_time: Duration::from_millis(200),
            ..LabConfig::default()
        };
        (o.tweak)(&mut config);
        let lab_shutdown = Shutdown::new();
        let lab = Lab::start(config, lab_shutdown.clone()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let image_cert = o.image_https.then(|| self_signed_cert(dir.path()));
        let service = if o.process {
            assert!(
                matches!(o.clock, Clock::System),
                "a serve process runs on the system clock"
            );
            let data = dir.path().join("data");
            std::fs::create_dir(&data).unwrap();
            let mut flags: Vec<String> = Vec::new();
            if o.file_servers {
                flags.extend(["--tftp", "127.0.0.1:0", "--ftp", "127.0.0.1:0"].map(String::from));
            }
            if o.image_http {
                flags.extend(["--image-http", "127.0.0.1:0"].map(String::from));
            }
            if let Some((cert, key)) = &image_cert {
                flags.extend(["--image-https", "127.0.0.1:0"].map(String::from));
                flags.extend([
                    "--image-https-cert".to_string(),
                    cert.display().to_string(),
                    "--image-https-key".to_string(),
                    key.display().to_string(),
                ]);
            }
            if o.image_scp {
                flags.extend(["--image-scp", "127.0.0.1:0"].map(String::from));
            }
            flags.extend(o.process_flags);
            RigService::Process {
                serve: None,
                data,
                flags,
                env: o.process_env,
            }
        } else {
            let (on, scp) = (o.file_servers, o.image_scp);
            let http_on = o.image_http;
            let tls = image_cert.clone();
            RigService::InProcess(Box::new(
                TestApp::start_full(
                    |a| {
                        if on {
                            a.tftp = "127.0.0.1:0".parse().unwrap();
                            a.ftp = "127.0.0.1:0".parse().unwrap();
                        }
                        if http_on {
                            a.image_http = "127.0.0.1:0".parse().unwrap();
                        }
                        if let Some((cert, key)) = tls {
                            a.image_https = "127.0.0.1:0".parse().unwrap();
                            a.image_http_options.tls_cert = Some(cert);
                            a.image_http_options.tls_key = Some(key);
                        }
                        if scp {
                            a.image_scp = "127.0.0.1:0".parse().unwrap();
                        }
                        (o.serve)(a);
                    },
                    o.clock,
                )
                .await,
            ))
        };
        let mut rig = Rig {
            lab,
            lab_shutdown,
            service,
            dir,
            image_cert,
            http: fleetup::http_client::client(),
            _lab_dir: lab_dir,
        };
        if o.process {
            rig.start_serve().await;
        }
        let image = rig.dir.path().join(IMAGE);
        write_random_file(&image, o.image_size, 77);
        match o.cli_setup {
            Some(extra_inventory) => {
                let inventory = rig.dir.path().join("lab.yml");
                std::fs::write(
                    &inventory,
                    format!("{}{extra_inventory}", rig.lab.inventory_yaml()),
                )
                .unwrap();
                let out = rig
                    .fleetup(&["inventory", "import", inventory.to_str().unwrap()])
                    .await;
                assert_success(&out);
                assert!(stdout(&out).contains("created"), "{}", stdout(&out));
                let out = rig
                    .fleetup(&["image", "add", image.to_str().unwrap()])
                    .await;
                assert_success(&out);
                assert!(stdout(&out).contains(IMAGE_VERSION), "{}", stdout(&out));
            }
            None => {
                let r = rig
                    .post("/api/v1/inventory/import")
                    .body(rig.lab.inventory_yaml())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
                let r = rig
                    .post("/api/v1/images")
                    .multipart(multipart_file(&image, IMAGE))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
        rig
    }

    /// The in-process service (its database, its data directory).
    pub fn app(&self) -> &TestApp {
        match &self.service {
            RigService::InProcess(app) => app,
            RigService::Process { .. } => panic!("this rig runs `fleetup serve` as a process"),
        }
    }

    /// The service's data directory.
    pub fn data_dir(&self) -> PathBuf {
        match &self.service {
            RigService::InProcess(app) => app.dir.path().to_path_buf(),
            RigService::Process { data, .. } => data.clone(),
        }
    }

    pub fn base_url(&self) -> String {
        match &self.service {
            RigService::InProcess(app) => app.service.base_url(),
            RigService::Process { serve, .. } => {
                serve.as_ref().expect("serve is running").base_url.clone()
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Where the HTTP and HTTPS image servers listen (`None` when off).
    pub fn image_http_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        match &self.service {
            RigService::InProcess(app) => {
                (app.service.http_image_addr, app.service.https_image_addr)
            }
            RigService::Process { serve, .. } => {
                let serve = serve.as_ref().expect("serve is running");
                (serve.image_http, serve.image_https)
            }
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(TOKEN)
    }

    /// The body of a GET as text, whatever its status.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).send().await.unwrap().text().await.unwrap()
    }

    /// The body of a GET as JSON (`Null` when it is not JSON), whatever its status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(TOKEN)
    }

    /// Start the `fleetup serve` process (again) on the same data directory.
    pub async fn start_serve(&mut self) {
        let RigService::Process {
            serve,
            data,
            flags,
            env,
        } = &mut self.service
        else {
            panic!("this rig's service runs in the test process");
        };
        let (data, flags, env) = (data.clone(), flags.clone(), env.clone());
        let started = tokio::task::spawn_blocking(move || {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            ServeProcess::start_with_env(&data, &flags, &env)
        })
        .await
        .unwrap();
        *serve = Some(Box::new(started));
    }

    /// The running `fleetup serve` process.
    pub fn serve_handle(&self) -> &ServeProcess {
        match &self.service {
            RigService::Process { serve, .. } => serve.as_deref().expect("serve is running"),
            RigService::InProcess(_) => panic!("this rig's service runs in the test process"),
        }
    }

    /// SIGKILL the `fleetup serve` process: no shutdown path runs.
    pub fn kill_serve(&mut self) {
        if let RigService::Process { serve, .. } = &mut self.service
            && let Some(mut serve) = serve.take()
        {
            serve.child.kill().unwrap();
            serve.child.wait().unwrap();
        }
    }

    /// SIGTERM the `fleetup serve` process: it must stop cleanly, as on a service stop.
    pub fn terminate_serve(&mut self) {
        if let RigService::Process { serve, .. } = &mut self.service
            && let Some(serve) = serve.take()
        {
            let status = serve.terminate();
            assert!(status.success(), "serve exited with {status}");
        }
    }

    /// Run the real `fleetup` binary against this rig's service.
    pub async fn fleetup(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetup"))
            .args(args)
            .env("FLEETUP_SERVER", self.base_url())
            .env("FLEETUP_API_TOKEN", TOKEN)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }

    /// A file in the rig's scratch directory.
    pub fn write_playbook(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn names(&self) -> Vec<String> {
        self.lab.devices().into_iter().map(|d| d.name).collect()
    }

    pub async fn submit(&self, playbook: &str) -> String {
        let r = self
            .post("/api/v1/rollouts")
            .header("content-type", "application/yaml")
            .body(playbook.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    pub async fn detail(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/rollouts/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The detail, or `None` while the service does not answer (killed, restarting).
    pub async fn try_detail(&self, id: &str) -> Option<Value> {
        if let RigService::Process { serve: None, .. } = &self.service {
            return None;
        }
        let r = self
            .get(&format!("/api/v1/rollouts/{id}"))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// `GET /api/v1/transfers`: live transfers, then recent ones.
    pub async fn transfers(&self) -> Vec<Value> {
        let body: Value = self
            .get("/api/v1/transfers")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["transfers"].as_array().cloned().unwrap_or_default()
    }

    /// Every event of a rollout: from the in-process service's database, or from a serve
    /// process's `GET /rollouts/{id}/activity`.
    pub async fn events(&self, id: &str) -> Vec<Value> {
        if let RigService::InProcess(app) = &self.service {
            return app
                .service
                .state
                .db
                .events_after(id, 0, 100_000)
                .await
                .unwrap()
                .into_iter()
                .map(|e| serde_json::to_value(e).unwrap())
                .collect();
        }
        let r = self
            .get(&format!("/api/v1/rollouts/{id}/activity"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["events"].as_array().cloned().unwrap_or_default()
    }

    /// `POST /api/v1/rollouts/{id}/{verb}` (pause, resume, abort, retry): the status.
    pub async fn action(&self, id: &str, verb: &str) -> StatusCode {
        self.post(&format!("/api/v1/rollouts/{id}/{verb}"))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Wait until the rollout has ended: completed, failed, halted or aborted.
    pub async fn wait_end(&self, id: &str) -> Value {
        self.wait_state(
            id,
            &["completed", "completed_with_failures", "halted", "aborted"],
        )
        .await
    }

    /// Wait until the rollout is in one of `states`.
    pub async fn wait_state(&self, id: &str, states: &[&str]) -> Value {
        eventually(&format!("rollout {id} to reach {states:?}"), || async {
            let d = self.try_detail(id).await?;
            states
                .contains(&d["state"].as_str().unwrap_or(""))
                .then_some(d)
        })
        .await
    }

    /// Wait for an event matching `pred` (in-process service).
    pub async fn wait_event(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || async {
            self.events(id).await.into_iter().find(|e| pred(e))
        })
        .await
    }

    /// Stop the lab, then the service; a `fleetup serve` process must exit cleanly on SIGTERM.
    pub async fn stop(mut self) {
        self.lab_shutdown.shutdown_and_wait().await;
        if let RigService::Process { serve, .. } = &mut self.service
            && let Some(serve) = serve.take()
        {
            let status = serve.terminate();
            assert!(status.success(), "serve exited with {status}");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}
