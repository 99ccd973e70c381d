//! Fuzz targets: the parsers and protocol machines that read what a hostile network or a
//! careless operator sends, each checked against invariants rather than for panics alone.
//!
//! Two harnesses drive the same target functions: the coverage-guided one in `fuzz/` (cargo-afl,
//! run by `bench/fuzz.sh`), and the bounded pass of `tests/it/fuzz.rs`, which runs every target
//! over the committed seed corpus (`fuzz/corpus/<target>/`) plus deterministic mutations of it
//! ([`mutations`]). A broken invariant is a panic with a message saying which.
//!
//! Targets that look at files (the image path, the FTP session) work on a [`Fixture`]: an image
//! directory holding served files, hidden and partial files, a subdirectory and links, next to
//! a secret file outside it.

mod ftp;
mod http;
mod images;
mod tftp;
mod yaml;

use std::path::{Path, PathBuf};

pub use self::ftp::{ftp_command, ftp_session};
pub use self::http::http_request;
pub use self::images::image_path;
pub use self::tftp::{tftp_packet, tftp_session};
pub use self::yaml::{inventory, playbook};

/// One fuzz target: its name (also its corpus directory) and its body.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&Fixture, &[u8]),
    /// Byte strings worth splicing into inputs (AFL's dictionary, the mutator's tokens).
    pub tokens: &'static [&'static [u8]],
}

/// Every target, in the order `bench/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "tftp_packet",
        run: |_, data| tftp_packet(data),
        tokens: tftp::TOKENS,
    },
    Target {
        name: "tftp_session",
        run: |_, data| tftp_session(data),
        tokens: tftp::TOKENS,
    },
    Target {
        name: "ftp_command",
        run: ftp_command,
        tokens: ftp::TOKENS,
    },
    Target {
        name: "ftp_session",
        run: ftp_session,
        tokens: ftp::TOKENS,
    },
    Target {
        name: "image_path",
        run: image_path,
        tokens: images::TOKENS,
    },
    Target {
        name: "http_request",
        run: http_request,
        tokens: http::TOKENS,
    },
    Target {
        name: "playbook",
        run: |_, data| playbook(data),
        tokens: yaml::TOKENS,
    },
    Target {
        name: "inventory",
        run: |_, data| inventory(data),
        tokens: yaml::TOKENS,
    },
];

/// A token as written in an AFL dictionary: printable ASCII as is, other bytes as `\xNN`.
pub fn dictionary_escape(token: &[u8]) -> String {
    token
        .iter()
        .map(|b| match b {
            b' '..=b'~' if *b != b'"' && *b != b'\\' => char::from(*b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Size of the secret file outside the image directory: a reply or listing that shows it has
/// read outside the root.
pub(crate) const SECRET_SIZE: u64 = 31337;
/// Size of every hidden or partial file inside the image directory, which must never be served.
pub(crate) const HIDDEN_SIZE: u64 = 4242;
/// Size of the served image.
pub(crate) const IMAGE_SIZE: u64 = 1500;

/// The files the path targets look at: `root` is an image directory, `outside` its sibling.
///
/// ```text
/// base/outside/secret.bin             SECRET_SIZE bytes, never to be served
/// base/root/c2960x-universalk9-mz.152-7.E8.bin   the image (IMAGE_SIZE)
/// base/root/nxos.9.3.8.bin            a link to the image (inside: served)
/// base/root/.hidden.bin               HIDDEN_SIZE (hidden: never served)
/// base/root/.incoming/0123.part       HIDDEN_SIZE (a partial upload)
/// base/root/.tftp-upload-x.part       HIDDEN_SIZE (a partial TFTP upload)
/// base/root/sub/inner.bin             HIDDEN_SIZE (subdirectories are not served)
/// base/root/escape.bin                link to ../outside/secret.bin
/// base/root/partial.bin               link to .incoming/0123.part
/// base/root/hidden-link.bin           link to .hidden.bin
/// ```
#[derive(Debug, Clone)]
pub struct Fixture {
    pub root: PathBuf,
    pub outside: PathBuf,
    /// An empty directory: what a name alone makes the file servers refuse shows there.
    pub empty: PathBuf,
}

/// The image the fixture serves.
pub(crate) const IMAGE: &str = "c2960x-universalk9-mz.152-7.E8.bin";

impl Fixture {
    /// Create the fixture under `base` (which may already hold it: creation is idempotent, so
    /// forked fuzzing processes can share one).
    pub fn build(base: &Path) -> std::io::Result<Fixture> {
        let root = base.join("root");
        let outside = base.join("outside");
        let empty = base.join("empty");
        for dir in [
            &root,
            &outside,
            &empty,
            &root.join(".incoming"),
            &root.join("sub"),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        let files = [
            (outside.join("secret.bin"), SECRET_SIZE),
            (root.join(IMAGE), IMAGE_SIZE),
            (root.join(".hidden.bin"), HIDDEN_SIZE),
            (root.join(".incoming/0123.part"), HIDDEN_SIZE),
            (root.join(".tftp-upload-x.part"), HIDDEN_SIZE),
            (root.join("sub/inner.bin"), HIDDEN_SIZE),
        ];
        for (path, len) in files {
            if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(len) {
                std::fs::write(&path, crate::images::pseudo_random_bytes(len as usize, len))?;
            }
        }
        let links = [
            ("nxos.9.3.8.bin", IMAGE),
            ("escape.bin", "../outside/secret.bin"),
            ("partial.bin", ".incoming/0123.part"),
            ("hidden-link.bin", ".hidden.bin"),
        ];
        for (name, to) in links {
            match std::os::unix::fs::symlink(to, root.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fixture {
            root,
            outside,
            empty,
        })
    }
}

/// A small deterministic generator (xorshift64*): the same seed gives the same mutations on
/// every machine, so a failure in CI reproduces.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Bytes a mutation likes to write: boundaries of integer types and of ASCII.
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'\r', b'\n', b' ', b'/', b'.', b'\\', b':', b'-', b'\t', 0x1b,
];

/// One mutation of `input`: a stack of one to four edits in the style of AFL's havoc stage
/// (bit flips, interesting bytes, insertions, deletions, repeats, tokens, splices with
/// another seed).
pub fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next_u64() as u8;
            }
            3 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(32));
                out.drain(at..at + n);
            }
            5 if len > 0 => {
                // Repeat a slice: long names, many options, many lines.
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = out[at..at + n].to_vec();
                for _ in 0..1 + rng.below(8) {
                    out.splice(at..at, chunk.iter().copied());
                }
            }
            6 if !tokens.is_empty() => {
                let t = tokens[rng.below(tokens.len())];
                let at = rng.below(len + 1);
                if rng.below(2) == 0 || at + t.len() > len {
                    out.splice(at..at, t.iter().copied());
                } else {
                    out[at..at + t.len()].copy_from_slice(t);
                }
            }
            7 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                let cut = rng.below(len);
                out.truncate(cut);
            }
            _ => {}
        }
    }
    // Bound the size as AFL does with its default maximum, so a case stays cheap.
    out.truncate(64 * 1024);
    out
}

/// The seed corpus of `target` under `dir` (`fuzz/corpus`), sorted by file name.
pub fn corpus(dir: &Path, target: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(target))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    files.iter().map(std::fs::read).collect()
}

/// `cases` deterministic mutations of `seeds` (seeded with `seed`), after the seeds themselves.
pub fn mutations<'a>(
    target: &'a Target,
    seeds: &'a [Vec<u8>],
    cases: usize,
    seed: u64,
) -> impl Iterator<Item = Vec<u8>> + 'a {
    let mut rng = Rng::new(seed);
    let mut last: Vec<u8> = Vec::new();
    seeds.iter().cloned().chain((0..cases).map(move |_| {
        // Mostly mutate a seed; sometimes keep mutating the previous case, to go deeper.
        let base = if !last.is_empty() && rng.below(4) == 0 {
            last.clone()
        } else if seeds.is_empty() {
            Vec::new()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        last = mutate(&mut rng, &base, seeds, target.tokens);
        last.clone()
    }))
}

/// Build an input from little pieces, for targets whose input is a script: a reader that
/// gives zeros once the input is spent, so every prefix of an input is meaningful.
pub(crate) struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Script { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// A length-prefixed chunk (one length byte).
    pub(crate) fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte()).min(self.data.len());
        let (c, rest) = self.data.split_at(n);
        self.data = rest;
        c
    }

    /// A chunk with a two-byte length, for datagrams longer than 255 bytes.
    pub(crate) fn long_chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16()).min(self.data.len());
        let (c, rest) = self.data.split_at(n);
        self.data = rest;
        c
    }
}
