//! Shared helpers for the integration tests: a service on free ports with a fresh data dir,
//! in-process or as a real `fleetup serve` process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fleetup::serve::{ServeArgs, Service};

pub const TOKEN: &str = "test-token-0123456789";

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
        let service = Service::start_with_clock(&args, Some(TOKEN.into()), clock)
            .await
            .unwrap();
        TestApp {
            service,
            dir,
            http: reqwest::Client::new(),
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
}

impl ServeProcess {
    pub fn start(data_dir: &Path) -> ServeProcess {
        Self::start_with(data_dir, &[])
    }

    /// With extra flags; `--tftp` and `--ftp` default to off unless given.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> ServeProcess {
        let mut args: Vec<&str> = vec!["serve", "--http", "127.0.0.1:0"];
        for flag in ["--tftp", "--ftp"] {
            if !extra.contains(&flag) {
                args.extend([flag, "off"]);
            }
        }
        args.extend(extra);
        args.push("--data-dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetup"))
            .args(&args)
            .arg(data_dir)
            .env("FLEETUP_API_TOKEN", TOKEN)
            .env("FLEETUP_LOG", "warn")
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
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServeProcess {
            child,
            base_url: base_url.expect("serve printed its address"),
            data_dir: data_dir.to_path_buf(),
        }
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
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
