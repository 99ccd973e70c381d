//! A WAN link in user space, for `bench/wan.sh` on kernels built without `sch_netem`.
//!
//! Creates two TUN devices, A and B, and forwards IP packets between them the way
//! `tc qdisc add dev X root netem delay D loss L rate R limit N` on both ends of a veth pair
//! would: each direction on its own, every packet lost with probability L, serialised at R
//! (a packet leaves when the one before it has left plus its own length at R), then delayed
//! by D, at most N packets in flight per direction (more are dropped and counted). The script
//! moves A and B into their namespaces (`ip link set A netns NS`; the descriptors stay
//! attached) and gives them addresses. The devices vanish when this process ends.
//!
//! Losses come from a seeded generator per direction, started again from its seed on SIGUSR1:
//! the script sends one before each download, so that the servers of a row meet the same
//! losses (exactly, for lock-step TFTP, whose packets are the same whatever the server).
//! SIGUSR2 moves to the next loss sequence (from the next SIGUSR1 on): a benchmark that repeats
//! its rows gives each round new losses, the same for both servers of the round.
//!
//! Usage: wan-link DEV_A DEV_B DELAY_MS LOSS_PERCENT RATE_MBIT [LIMIT_PACKETS]
//! Prints `ready` once both devices exist, then one line of counters per direction every
//! 10 s in which something moved, on stderr.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::FromRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bumped by SIGUSR1; each direction starts its loss generator again when it sees a change.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Bumped by SIGUSR2: which loss sequence a restart begins.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn on_usr2(_: libc::c_int) {
    SEQUENCE.fetch_add(1, Ordering::Relaxed);
}

/// SplitMix64: small, and the same sequence for the same seed.
struct Dice {
    seed: u64,
    state: u64,
    generation: u64,
}

impl Dice {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            state: seed,
            generation: 0,
        }
    }

    /// A number in [0, 1).
    fn roll(&mut self) -> f64 {
        let g = GENERATION.load(Ordering::Relaxed);
        if g != self.generation {
            self.generation = g;
            let sequence = SEQUENCE.load(Ordering::Relaxed);
            self.state = self
                .seed
                .wrapping_add(sequence.wrapping_mul(0xd1b5_4a32_d192_ed03));
        }
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `_IOW('T', 202, int)` from linux/if_tun.h.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the flags member of its union (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn open_tun(name: &str) -> Result<File, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("bad device name {name:?}"));
    }
    // SAFETY: a plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("/dev/net/tun: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TUN | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which IfReq lays out.
    if unsafe { libc::ioctl(fd, TUNSETIFF as _, &mut req) } < 0 {
        return Err(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(file)
}

#[derive(Clone, Copy)]
struct Shape {
    delay: Duration,
    loss: f64,
    /// Nanoseconds per byte at the link rate.
    ns_per_byte: f64,
    limit: usize,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    lost: AtomicU64,
    overflow: AtomicU64,
}

/// One direction: a reader stamps each packet with the moment it leaves the link, a writer
/// delivers it then. The stamps only grow (constant delay after a FIFO serialisation), so a
/// channel keeps them in order.
fn direction(
    mut from: File,
    mut to: File,
    shape: Shape,
    seed: u64,
    counters: Arc<Counters>,
) -> Vec<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_w = in_flight.clone();
    let counters_w = counters.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut line_free = Instant::now();
        let mut dice = Dice::new(seed);
        loop {
            let n = match from.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("wan-link: read: {e}");
                    return;
                }
            };
            if shape.loss > 0.0 && dice.roll() < shape.loss {
                counters.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if in_flight.load(Ordering::Relaxed) >= shape.limit {
                counters.overflow.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            let start = line_free.max(now);
            line_free = start + Duration::from_nanos((n as f64 * shape.ns_per_byte) as u64);
            in_flight.fetch_add(1, Ordering::Relaxed);
            if tx
                .send((line_free + shape.delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        for (due, packet) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            in_flight_w.fetch_sub(1, Ordering::Relaxed);
            // A full queue on the far device drops the packet, as a real link would.
            if to.write(&packet).is_ok() {
                counters_w.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    vec![reader, writer]
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: wan-link DEV_A DEV_B DELAY_MS LOSS_PERCENT RATE_MBIT [LIMIT_PACKETS]".to_string();
    let [a, b, delay, loss, rate, rest @ ..] = &args[..] else {
        return Err(usage);
    };
    let num = |s: &String, what: &str| -> Result<f64, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{what}: not a number >= 0: {s:?}\n{usage}"))
    };
    let rate_mbit = num(rate, "RATE_MBIT")?;
    if rate_mbit <= 0.0 {
        return Err(format!("RATE_MBIT must be above 0\n{usage}"));
    }
    let shape = Shape {
        delay: Duration::from_secs_f64(num(delay, "DELAY_MS")? / 1000.0),
        loss: num(loss, "LOSS_PERCENT")? / 100.0,
        ns_per_byte: 8.0 * 1000.0 / rate_mbit,
        limit: match rest.first() {
            Some(l) => num(l, "LIMIT_PACKETS")? as usize,
            None => 10_000,
        },
    };
    let tun_a = open_tun(a)?;
    let tun_b = open_tun(b)?;
    let clone = |f: &File| f.try_clone().map_err(|e| format!("dup: {e}"));
    let ab = Arc::new(Counters::default());
    let ba = Arc::new(Counters::default());
    // SAFETY: the handlers only touch an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
        libc::signal(libc::SIGUSR2, on_usr2 as *const () as libc::sighandler_t);
    }
    let mut threads = direction(clone(&tun_a)?, clone(&tun_b)?, shape, 1, ab.clone());
    threads.extend(direction(tun_b, tun_a, shape, 2, ba.clone()));
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut last = (0, 0);
    loop {
        std::thread::sleep(Duration::from_secs(10));
        if threads.iter().any(|t| t.is_finished()) {
            return Err("a forwarding thread stopped".into());
        }
        let now = (
            ab.sent.load(Ordering::Relaxed),
            ba.sent.load(Ordering::Relaxed),
        );
        if now != last {
            for (name, c) in [(format!("{a}->{b}"), &ab), (format!("{b}->{a}"), &ba)] {
                eprintln!(
                    "wan-link {name}: sent {} lost {} overflow {}",
                    c.sent.load(Ordering::Relaxed),
                    c.lost.load(Ordering::Relaxed),
                    c.overflow.load(Ordering::Relaxed)
                );
            }
            last = now;
        }
    }
}
