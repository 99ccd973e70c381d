//! The HTTP listener under hostile clients: half-open connections (slowloris) against a real
//! `fleetup serve` process with a low open-files limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::ServeProcess;

/// Upper bound on any single wait, so a broken server fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(60);

/// The soft and hard limits on open files of a process, from /proc/PID/limits.
fn open_files_limits(pid: &str) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// Whether the server closed `s` (end of stream or reset) before the guard.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or the like before the close is fine.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn half_open_connections_neither_exhaust_descriptors_nor_starve_health() {
    let (_, hard_here) = open_files_limits("self");
    let hard = hard_here.min(4096);
    assert!(
        hard >= 1024,
        "this test needs a hard limit of 1024 open files"
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start_with_nofile(
        &dir.path().join("data"),
        &[
            "--http-max-connections",
            "100",
            "--http-header-timeout",
            "1",
        ],
        200,
        hard,
    );
    assert_eq!(
        open_files_limits(&serve.pid().to_string()),
        (hard, hard),
        "serve raises its soft limit to the hard limit"
    );
    let addr = serve.base_url.trim_start_matches("http://").to_string();
    // 300 connections that start a request and never finish its head: more than the soft
    // limit the service was started with.
    let mut half_open: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut health = TcpStream::connect(&addr).unwrap();
    health
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    health.set_read_timeout(Some(GUARD)).unwrap();
    let mut answer = String::new();
    health.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    for (i, s) in half_open.iter_mut().enumerate() {
        assert!(
            closed_by_server(s),
            "half-open connection {i} was not closed"
        );
    }
}
