//! The HTTP(S) image server of a real service against real clients (curl, wget) and raw
//! sockets for the refusals and the limits. Each test issues its own path tokens into the
//! service's grants, as the rollout engine does for a device job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use fleetup::serve::ServeArgs;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{TestApp, eventually, md5sum, self_signed_cert, write_random_file};

/// Upper bound on any single wait, so a broken server fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(60);
const IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";
const OTHER: &str = "c3750e-universalk9-mz.152-4.E10.bin";
const SIZE: usize = 5 * 1024 * 1024 + 321;

/// A service with its HTTP image server on 127.0.0.1 (any port), `IMAGE` and `OTHER` in its
/// store, and a scratch directory.
struct Served {
    app: TestApp,
    work: tempfile::TempDir,
}

async fn serve(adjust: impl FnOnce(&mut ServeArgs)) -> Served {
    let app = TestApp::start_with(|a| {
        a.image_http = "127.0.0.1:0".parse().unwrap();
        adjust(a);
    })
    .await;
    let images = app.dir.path().join("images");
    write_random_file(&images.join(IMAGE), SIZE, 17);
    write_random_file(&images.join(OTHER), 4096, 18);
    Served {
        app,
        work: tempfile::tempdir().unwrap(),
    }
}

impl Served {
    fn http(&self) -> SocketAddr {
        self.app.service.http_image_addr.expect("image HTTP is on")
    }

    fn image(&self) -> PathBuf {
        self.app.dir.path().join("images").join(IMAGE)
    }

    fn url(&self, token: &str, file: &str) -> String {
        format!("http://{}/j/{token}/{file}", self.http())
    }

    fn out(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    async fn transfers(&self) -> Vec<Value> {
        let r = self.app.get("/api/v1/transfers").send().await.unwrap();
        assert!(r.status().is_success());
        let body: Value = r.json().await.unwrap();
        body["transfers"].as_array().cloned().unwrap_or_default()
    }

    async fn metrics(&self) -> String {
        self.app
            .get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

async fn run(program: &str, args: &[&str], dir: &Path) -> Output {
    tokio::time::timeout(
        GUARD,
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(dir)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} did not finish"))
    .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn assert_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A response read to the end of the connection.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn field(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn parse_reply(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        head,
        body: bytes[end + 4..].to_vec(),
    }
}

/// Send `request` as is and read until the server closes.
async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut got))
        .await
        .expect("the server closes")
        .unwrap();
    parse_reply(&got)
}

/// `GET target` with `Connection: close` and extra header lines.
async fn get(addr: SocketAddr, target: &str, extra: &str) -> Reply {
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}

fn find<'a>(transfers: &'a [Value], protocol: &str, bytes: u64) -> Option<&'a Value> {
    transfers.iter().find(|t| {
        t["protocol"] == protocol
            && t["file"] == IMAGE
            && t["state"] == "completed"
            && t["bytes"] == bytes
    })
}

#[tokio::test]
async fn curl_and_wget_download_byte_exact_and_show_as_transfers() {
    let s = serve(|_| {}).await;
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    let url = s.url(grant.name(), IMAGE);
    let want = md5sum(&s.image());

    let o = run(
        "curl",
        &["-sS", "-f", "-o", "curl.bin", &url],
        s.work.path(),
    )
    .await;
    assert_ok("curl", &o);
    assert_eq!(md5sum(&s.out("curl.bin")), want);

    let o = run("wget", &["-q", "-O", "wget.bin", &url], s.work.path()).await;
    assert_ok("wget", &o);
    assert_eq!(md5sum(&s.out("wget.bin")), want);

    // Both downloads are transfers of protocol http with every byte counted.
    let t = eventually("two completed http transfers", || async {
        let t = s.transfers().await;
        let n = t
            .iter()
            .filter(|x| find(std::slice::from_ref(x), "http", SIZE as u64).is_some())
            .count();
        (n == 2).then_some(t)
    })
    .await;
    let one = find(&t, "http", SIZE as u64).unwrap();
    assert_eq!(one["total"], SIZE as u64);
    assert_eq!(one["direction"], "download");
    let m = s.metrics().await;
    assert!(
        m.contains("fleetup_transfers_total{protocol=\"http\",result=\"completed\"} 2"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "fleetup_transfer_bytes_total{{protocol=\"http\"}} {}",
            2 * SIZE
        )),
        "{m}"
    );
    s.app.service.stop().await;
}

#[tokio::test]
async fn curl_and_wget_resume_a_partial_download_byte_exact() {
    let s = serve(|_| {}).await;
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    let url = s.url(grant.name(), IMAGE);
    let full = std::fs::read(s.image()).unwrap();
    let want = md5sum(&s.image());
    let cut = 1024 * 1024 + 17;

    // curl -C - continues from the partial file's length.
    std::fs::write(s.out("curl.bin"), &full[..cut]).unwrap();
    let o = run(
        "curl",
        &["-sS", "-f", "-C", "-", "-o", "curl.bin", &url],
        s.work.path(),
    )
    .await;
    assert_ok("curl -C -", &o);
    assert_eq!(md5sum(&s.out("curl.bin")), want);

    // wget -c does the same under the URL's file name.
    std::fs::write(s.out(IMAGE), &full[..cut * 2]).unwrap();
    let o = run("wget", &["-q", "-c", &url], s.work.path()).await;
    assert_ok("wget -c", &o);
    assert_eq!(md5sum(&s.out(IMAGE)), want);
    // Again on the complete file: the server's 416 means "nothing left" to wget.
    let o = run("wget", &["-c", &url], s.work.path()).await;
    assert_ok("wget -c on a complete file", &o);
    assert_eq!(md5sum(&s.out(IMAGE)), want);

    // curl -r: one explicit range.
    let o = run(
        "curl",
        &["-sS", "-f", "-r", "100-299", "-o", "part.bin", &url],
        s.work.path(),
    )
    .await;
    assert_ok("curl -r", &o);
    assert_eq!(std::fs::read(s.out("part.bin")).unwrap(), &full[100..300]);

    // A range is a transfer of the range's length.
    let resumed = (SIZE - cut) as u64;
    eventually("the resumed and the ranged transfers", || async {
        let t = s.transfers().await;
        (find(&t, "http", resumed).is_some() && find(&t, "http", 200).is_some()).then_some(())
    })
    .await;
    let t = s.transfers().await;
    assert_eq!(find(&t, "http", resumed).unwrap()["total"], resumed);
    s.app.service.stop().await;
}

#[tokio::test]
async fn head_ranges_methods_and_keep_alive() {
    let s = serve(|_| {}).await;
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    let target = format!("/j/{}/{IMAGE}", grant.name());
    let full = std::fs::read(s.image()).unwrap();
    let addr = s.http();

    let r = raw(
        addr,
        format!("HEAD {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.field("content-length"), Some(SIZE.to_string().as_str()));
    assert_eq!(r.field("accept-ranges"), Some("bytes"));
    assert!(r.body.is_empty());

    let r = get(addr, &target, &format!("Range: bytes={SIZE}-\r\n")).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.field("content-range"),
        Some(format!("bytes */{SIZE}").as_str())
    );

    let r = get(addr, &target, "Range: bytes=-10\r\n").await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.field("content-range"),
        Some(format!("bytes {}-{}/{SIZE}", SIZE - 10, SIZE - 1).as_str())
    );
    assert_eq!(r.body, &full[SIZE - 10..]);

    // Several ranges: the whole file, 200.
    let r = get(addr, &target, "Range: bytes=0-1,5-6\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);

    let r = raw(
        addr,
        format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.field("allow"), Some("GET, HEAD"));

    // Two requests on one connection: HEAD, then a range, then the server closes as asked.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let two = format!(
        "HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\nGET {target} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-4\r\nConnection: close\r\n\r\n"
    );
    c.write_all(two.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, c.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let first = parse_reply(&got);
    assert_eq!(first.status, 200);
    assert_eq!(first.field("connection"), Some("keep-alive"));
    let second = parse_reply(&first.body);
    assert_eq!(second.status, 206);
    assert_eq!(second.body, &full[..5]);
    s.app.service.stop().await;
}

#[tokio::test]
async fn wrong_ended_guessed_and_other_file_tokens_get_404() {
    let s = serve(|_| {}).await;
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    let other = s.app.service.grants.issue_token(vec![OTHER.into()]);
    let token = grant.name().to_string();
    let addr = s.http();

    let ok = get(addr, &format!("/j/{token}/{IMAGE}"), "").await;
    assert_eq!(ok.status, 200);
    // A token for another file, a guessed one, a wrong one of the right form.
    for target in [
        format!("/j/{token}/{OTHER}"),
        format!("/j/{}/{IMAGE}", other.name()),
        format!("/j/aaaaaaaaaaaa/{IMAGE}"),
        format!("/j/{}/{IMAGE}", token.to_uppercase()),
        format!("/j/{token}x/{IMAGE}"),
        format!("/{IMAGE}"),
        format!("/j/{IMAGE}"),
    ] {
        let r = get(addr, &target, "").await;
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(r.body, b"not found\n", "{target}");
    }
    // curl sees the 404 as a failure.
    let o = run(
        "curl",
        &["-sS", "-f", "-o", "x.bin", &s.url("guessed00000", IMAGE)],
        s.work.path(),
    )
    .await;
    assert_eq!(o.status.code(), Some(22), "{o:?}");
    // The grant ends with its job: the same URL is 404.
    drop(grant);
    let r = get(addr, &format!("/j/{token}/{IMAGE}"), "").await;
    assert_eq!(r.status, 404);
    s.app.service.stop().await;
}

#[tokio::test]
async fn traversal_attempts_get_404_and_read_nothing_outside_the_store() {
    let s = serve(|_| {}).await;
    let secret = "the contents of a file outside the store";
    std::fs::write(s.app.dir.path().join("secret.txt"), secret).unwrap();
    let images = s.app.dir.path().join("images");
    std::os::unix::fs::symlink(s.app.dir.path().join("secret.txt"), images.join("link.bin"))
        .unwrap();
    std::fs::write(images.join(".hidden.bin"), secret).unwrap();
    std::fs::create_dir(images.join("sub")).unwrap();
    // Even a grant naming such files serves none of them.
    let grant = s.app.service.grants.issue_token(vec![
        IMAGE.into(),
        "../secret.txt".into(),
        "..".into(),
        "link.bin".into(),
        ".hidden.bin".into(),
        "sub".into(),
        "/etc/passwd".into(),
    ]);
    let t = grant.name();
    let addr = s.http();
    let long = format!("/j/{t}/{}", "a".repeat(2000));
    let targets = [
        format!("/j/{t}/../secret.txt"),
        format!("/j/{t}/../../secret.txt"),
        format!("/j/{t}/%2e%2e/secret.txt"),
        format!("/j/{t}/%2e%2e%2fsecret.txt"),
        format!("/j/{t}/..%2fsecret.txt"),
        format!("/j/{t}/..%5csecret.txt"),
        format!("/j/{t}/%2e%2e"),
        format!("/j/{t}/.."),
        format!("/j/{t}/%2Fetc%2Fpasswd"),
        format!("/j/{t}//etc/passwd"),
        "//etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        "/../../../../etc/passwd".to_string(),
        format!("/j/{t}/{IMAGE}%00.txt"),
        format!("/j/{t}/%00"),
        format!("/j/{t}/link.bin"),
        format!("/j/{t}/.hidden.bin"),
        format!("/j/{t}/sub"),
        format!("/j/{t}/sub/"),
        format!("/j/{t}/"),
        format!("/j/{t}"),
        "/j/".to_string(),
        "/".to_string(),
        format!("http://x/j/{t}/{IMAGE}"),
        long,
    ];
    for target in &targets {
        let r = get(addr, target, "").await;
        assert_eq!(r.status, 404, "{target}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(secret) && !body.contains("root:"),
            "{target}: {body}"
        );
    }
    // A raw NUL in the request line is no request at all.
    let r = raw(addr, format!("GET /j/{t}/a\0b HTTP/1.1\r\n\r\n").as_bytes()).await;
    assert_eq!(r.status, 400);
    // Nothing was sent, so nothing shows as a transfer.
    assert!(s.transfers().await.is_empty());
    // The server still serves the granted image.
    assert_eq!(get(addr, &format!("/j/{t}/{IMAGE}"), "").await.status, 200);
    s.app.service.stop().await;
}

#[tokio::test]
async fn https_download_with_curl_cacert_and_plain_http_to_the_https_port() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(certs.path());
    let (c, k) = (cert.clone(), key.clone());
    let s = serve(move |a| {
        a.image_https = "127.0.0.1:0".parse().unwrap();
        a.image_http_options.tls_cert = Some(c);
        a.image_http_options.tls_key = Some(k);
    })
    .await;
    let https = s.app.service.https_image_addr.expect("image HTTPS is on");
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    let url = format!("https://{https}/j/{}/{IMAGE}", grant.name());
    let cacert = cert.to_str().unwrap();

    let o = run(
        "curl",
        &["-sS", "-f", "--cacert", cacert, "-o", "tls.bin", &url],
        s.work.path(),
    )
    .await;
    assert_ok("curl --cacert", &o);
    assert_eq!(md5sum(&s.out("tls.bin")), md5sum(&s.image()));

    // Resumed over TLS too.
    let full = std::fs::read(s.image()).unwrap();
    std::fs::write(s.out("tls2.bin"), &full[..12345]).unwrap();
    let o = run(
        "curl",
        &[
            "-sS", "-f", "--cacert", cacert, "-C", "-", "-o", "tls2.bin", &url,
        ],
        s.work.path(),
    )
    .await;
    assert_ok("curl --cacert -C -", &o);
    assert_eq!(md5sum(&s.out("tls2.bin")), md5sum(&s.image()));

    // Without the CA the certificate is refused (curl exit 60).
    let o = run("curl", &["-sS", "-o", "x.bin", &url], s.work.path()).await;
    assert_eq!(o.status.code(), Some(60), "{o:?}");

    // Plain HTTP to the HTTPS port: a plain 400 that says why, then the connection closes.
    let plain = format!("http://{https}/j/{}/{IMAGE}", grant.name());
    let o = run(
        "curl",
        &["-sS", "-o", "-", "-w", "%{http_code}", &plain],
        s.work.path(),
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("HTTPS port") && out.ends_with("400"), "{o:?}");

    eventually("the https transfers", || async {
        let t = s.transfers().await;
        (find(&t, "https", SIZE as u64).is_some()
            && find(&t, "https", (SIZE - 12345) as u64).is_some())
        .then_some(())
    })
    .await;
    s.app.service.stop().await;
}

/// Read until the server closes the connection; what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .unwrap_or_default();
    got
}

#[tokio::test]
async fn slow_headers_are_closed_after_the_header_timeout() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_cert(certs.path());
    let s = serve(move |a| {
        a.image_http_options.header_timeout = 1;
        a.image_https = "127.0.0.1:0".parse().unwrap();
        a.image_http_options.tls_cert = Some(cert);
        a.image_http_options.tls_key = Some(key);
    })
    .await;
    let grant = s.app.service.grants.issue_token(vec![IMAGE.into()]);
    // Half a head, then nothing: closed without an answer.
    let mut half = TcpStream::connect(s.http()).await.unwrap();
    half.write_all(format!("GET /j/{}/{IMAGE} HTTP/1.1\r\nHost: x\r\n", grant.name()).as_bytes())
        .await
        .unwrap();
    assert!(until_closed(&mut half).await.is_empty());
    // Nothing at all, on either port (no TLS handshake either).
    let mut silent = TcpStream::connect(s.http()).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    let https = s.app.service.https_image_addr.unwrap();
    let mut silent = TcpStream::connect(https).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    s.app.service.stop().await;
}

/// A connection from `ip` to `addr` that has not sent anything yet.
async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((ip, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether a fresh connection is served: a full request gets an answer (404 for this target).
async fn served(c: &mut TcpStream) -> u16 {
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    parse_reply(&until_closed(c).await).status
}

#[tokio::test]
async fn connection_limits_per_client_and_overall() {
    let s = serve(|a| {
        a.image_http_options.max_per_client = 2;
        a.image_http_options.max_connections = 3;
        a.image_http_options.header_timeout = 600;
    })
    .await;
    let addr = s.http();
    let a1 = connect_from([127, 0, 0, 1], addr).await;
    let _a2 = connect_from([127, 0, 0, 1], addr).await;
    // The third from the same address: 503, closed.
    let mut a3 = connect_from([127, 0, 0, 1], addr).await;
    let r = parse_reply(&until_closed(&mut a3).await);
    assert_eq!(r.status, 503);
    // Another address still gets in, up to the overall cap.
    let mut b1 = connect_from([127, 0, 0, 2], addr).await;
    let mut c1 = connect_from([127, 0, 0, 3], addr).await;
    assert_eq!(parse_reply(&until_closed(&mut c1).await).status, 503);
    assert_eq!(served(&mut b1).await, 404);
    // Closing connections frees their slots.
    drop(a1);
    let status = eventually("a slot freed by closed connections", || async {
        let mut c = connect_from([127, 0, 0, 3], addr).await;
        match served(&mut c).await {
            404 => Some(404),
            _ => None,
        }
    })
    .await;
    assert_eq!(status, 404);
    s.app.service.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_transfer_fails() {
    let s = serve(|a| a.image_http_options.idle_timeout = 1).await;
    // Larger than every socket buffer between the server and a client that reads nothing.
    let big = "big-image.bin";
    let images = s.app.dir.path().join("images");
    write_random_file(&images.join(big), 48 * 1024 * 1024, 5);
    let grant = s.app.service.grants.issue_token(vec![big.into()]);
    let mut c = TcpStream::connect(s.http()).await.unwrap();
    c.write_all(format!("GET /j/{}/{big} HTTP/1.1\r\nHost: x\r\n\r\n", grant.name()).as_bytes())
        .await
        .unwrap();
    let failed = eventually("the stalled transfer fails", || async {
        s.transfers()
            .await
            .into_iter()
            .find(|t| t["file"] == big && t["state"] == "failed")
    })
    .await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("no progress"),
        "{failed}"
    );
    assert!(failed["bytes"].as_u64().unwrap() < 48 * 1024 * 1024);
    drop(c);
    s.app.service.stop().await;
}

#[tokio::test]
async fn https_without_a_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data_dir: dir.path().to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        image_https: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let err = match fleetup::serve::Service::start(&args, Some("t".into())).await {
        Ok(_) => panic!("started without a certificate"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("--image-https-cert"), "{err}");
}

/// `curl`'s status code for `url`, trusting `cacert`.
async fn status_of(url: &str, cacert: &Path) -> String {
    let o = run(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            cacert.to_str().unwrap(),
            url,
        ],
        Path::new("/"),
    )
    .await;
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rig_serves_images_over_http_and_https_in_process_and_as_a_process() {
    use crate::support::{IMAGE as RIG_IMAGE, Rig};
    let rig = Rig::options(1)
        .image_http(true)
        .image_https(true)
        .start()
        .await;
    let (http, https) = rig.image_http_addrs();
    let (http, https) = (http.expect("image HTTP on"), https.expect("image HTTPS on"));
    let (cert, _) = rig.image_cert.clone().expect("a certificate");
    let grant = rig.app().service.grants.issue_token(vec![RIG_IMAGE.into()]);
    for base in [format!("http://{http}"), format!("https://{https}")] {
        let url = format!("{base}/j/{}/{RIG_IMAGE}", grant.name());
        assert_eq!(status_of(&url, &cert).await, "200", "{url}");
    }
    rig.stop().await;

    let rig = Rig::options(1)
        .serve_process()
        .image_http(true)
        .image_https(true)
        .start()
        .await;
    let (http, https) = rig.image_http_addrs();
    let (cert, _) = rig.image_cert.clone().expect("a certificate");
    for base in [
        format!("http://{}", http.expect("image HTTP on")),
        format!("https://{}", https.expect("image HTTPS on")),
    ] {
        let url = format!("{base}/j/nosuchtoken0/{RIG_IMAGE}");
        assert_eq!(status_of(&url, &cert).await, "404", "{url}");
    }
    rig.stop().await;
}
