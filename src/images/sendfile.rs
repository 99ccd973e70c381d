//! Image bytes straight from the page cache to a socket, for the FTP and HTTP image servers.

use std::io;

use tokio::net::TcpStream;

/// Send up to `count` bytes of `file` from `*pos` without copying them through user space;
/// advances `*pos`. WouldBlock when the socket buffer is full.
#[cfg(target_os = "linux")]
pub(crate) fn send_chunk(
    sock: &TcpStream,
    file: &std::fs::File,
    pos: &mut u64,
    count: usize,
) -> io::Result<usize> {
    loop {
        match rustix::fs::sendfile(sock, file, Some(pos), count) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`send_chunk`] where sendfile(2) is not at hand: a bounded copy through user space.
#[cfg(not(target_os = "linux"))]
pub(crate) fn send_chunk(
    sock: &TcpStream,
    file: &std::fs::File,
    pos: &mut u64,
    count: usize,
) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; count.min(256 << 10)];
    let n = file.read_at(&mut buf, *pos)?;
    let n = sock.try_write(&buf[..n])?;
    *pos += n as u64;
    Ok(n)
}
