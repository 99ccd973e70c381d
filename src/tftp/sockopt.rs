//! The few socket and file calls tokio and std do not offer: receiving a datagram together
//! with the local address it was sent to (IP_PKTINFO), and a read-ahead hint for image files.
//!
//! A server bound to `0.0.0.0` must answer each request from the address the device sent it
//! to: a device reaching fleetup on one of several addresses drops replies from another one.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket as StdUdpSocket,
};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Ask the kernel to attach the destination address to every received datagram.
pub(super) fn enable_pktinfo(socket: &UdpSocket) -> io::Result<()> {
    let fd = socket.as_raw_fd();
    match socket.local_addr()? {
        SocketAddr::V4(_) => setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
        SocketAddr::V6(_) => {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
            // A dual-stack socket also receives IPv4; ignore failure on IPv6-only sockets.
            let _ = setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1);
            Ok(())
        }
    }
}

/// Receive one datagram: its length, its source and the local address it was sent to (when
/// the kernel reported it).
pub(super) async fn recv_with_dst(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    socket
        .async_io(Interest::READABLE, || recvmsg(socket.as_raw_fd(), buf))
        .await
}

fn recvmsg(fd: i32, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<IpAddr>)> {
    let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // u64 elements give the alignment control messages need.
    let mut control = [0u64; 32];
    // SAFETY: msghdr is plain data; every pointer set below stays valid for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: fd is an open socket and msg describes valid buffers.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled `name` (zeroed before, so a short address is still defined).
    let from = sockaddr_to_std(unsafe { name.assume_init_ref() })?;
    let mut local = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled, within
    // msg_controllen; payloads are read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::IPPROTO_IP && c.cmsg_type == libc::IP_PKTINFO {
                let info: libc::in_pktinfo = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                // A broadcast request is answered from the interface's own address.
                let spec = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                let ip = if dst.is_broadcast() || dst.is_multicast() || dst.octets()[3] == 255 {
                    spec
                } else {
                    dst
                };
                local = Some(IpAddr::V4(ip));
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info: libc::in6_pktinfo =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                local = Some(match ip.to_ipv4_mapped() {
                    Some(v4) if from.is_ipv4() => IpAddr::V4(v4),
                    _ => IpAddr::V6(ip),
                });
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, from, local))
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Ok(match ip.to_ipv4_mapped() {
                // Clients on a dual-stack socket: keep their IPv4 identity for logs and caps.
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        other => Err(io::Error::other(format!(
            "datagram from unknown address family {other}"
        ))),
    }
}

/// Send datagrams, each to its own destination, in as few system calls as the kernel allows
/// (sendmmsg): a window of blocks leaves in one call instead of one call per block. Blocks
/// when the socket does; returns the first error, after the datagrams before it were sent.
pub(super) fn send_batch(
    socket: &StdUdpSocket,
    datagrams: &[Vec<u8>],
    dsts: &[SocketAddr],
) -> io::Result<()> {
    let n = datagrams.len().min(dsts.len());
    match n {
        0 => return Ok(()),
        // Lock step: one datagram, no need for the vectors below.
        1 => return socket.send_to(&datagrams[0], dsts[0]).map(|_| ()),
        _ => {}
    }
    let names: Vec<socket2::SockAddr> = dsts[..n].iter().map(|&a| a.into()).collect();
    let mut iovs: Vec<libc::iovec> = datagrams[..n]
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr().cast_mut().cast(),
            iov_len: d.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(n);
    for (iov, name) in iovs.iter_mut().zip(&names) {
        // SAFETY: msghdr is plain data; the pointers set below outlive every sendmmsg call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = name.as_ptr().cast_mut().cast();
        hdr.msg_namelen = name.len();
        hdr.msg_iov = iov;
        hdr.msg_iovlen = 1;
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    let fd = socket.as_raw_fd();
    let mut sent = 0;
    while sent < n {
        let rest = &mut msgs[sent..];
        // SAFETY: fd is an open socket; `rest` holds valid headers whose buffers and
        // addresses are borrowed for the duration of the call (the kernel only reads them).
        let rc = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += rc as usize;
    }
    Ok(())
}

/// Receive a datagram if one is waiting, without blocking: `Ok(None)` when none is.
pub(super) fn try_recv(
    socket: &StdUdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, SocketAddr)>> {
    match recvmsg(socket.as_raw_fd(), buf) {
        Ok((n, from, _)) => Ok(Some((n, from))),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Tell the kernel an image is read front to back, so its read-ahead grows: one cached copy
/// then feeds every transfer of the file.
pub(super) fn advise_sequential(file: &std::fs::File) {
    // SAFETY: a hint on an open file descriptor; failure is harmless.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}
