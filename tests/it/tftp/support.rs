//! Helpers shared by the TFTP tests.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;

/// Deterministic pseudo-random content, so a shifted or repeated block shows up as a mismatch.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

/// A random loopback address 127.x.y.z (not 127.0.0.1), so parallel tests never share one.
pub fn random_loopback() -> Ipv4Addr {
    let r: u32 = rand::random();
    let [a, b, c, _] = r.to_be_bytes();
    Ipv4Addr::new(127, a.max(2), b, c.clamp(2, 254))
}

/// A UDP port that was free a moment ago on `ip`, for third-party servers that cannot be
/// told to use port 0.
pub fn free_udp_port(ip: Ipv4Addr) -> u16 {
    let s = UdpSocket::bind(SocketAddr::from((ip, 0))).unwrap();
    s.local_addr().unwrap().port()
}
