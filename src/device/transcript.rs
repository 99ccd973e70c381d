//! What fleetup typed on a device and what the device answered, step by step, for the device
//! view. Bounded (per command and per job) and redacted: a secret handed to the transcript is
//! replaced by `***` before anything is kept, so it is never stored.
//!
//! The driver owns the writing side (the SSH connection records every command line it sends,
//! dialog answers included); the caller takes the entries out whenever it likes ([`take`]).
//!
//! [`take`]: Transcript::take

use std::sync::{Arc, Mutex, MutexGuard};

use super::upgrade::Step;

/// The marker that says output was cut.
pub(crate) const TRUNCATED: &str = "[truncated]";

/// How much of a job's dialog is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TranscriptLimits {
    /// Bytes of output kept per command.
    pub per_command: usize,
    /// Bytes (commands and outputs) kept per job; beyond it only one `[truncated]` entry.
    pub per_job: usize,
}

impl Default for TranscriptLimits {
    fn default() -> Self {
        TranscriptLimits {
            per_command: 64 * 1024,
            per_job: 1024 * 1024,
        }
    }
}

/// What a transcript line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A command line fleetup sent, with the device's output.
    Command,
    /// An answer fleetup typed to a question of the device (`command` is what was typed,
    /// empty for a bare RETURN; `output` is the question).
    Answer,
    /// Something the transcript itself says (the limit was reached).
    Note,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Command => "command",
            EntryKind::Answer => "answer",
            EntryKind::Note => "note",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "command" => Some(EntryKind::Command),
            "answer" => Some(EntryKind::Answer),
            "note" => Some(EntryKind::Note),
            _ => None,
        }
    }
}

/// One line of the transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TranscriptEntry {
    /// The step that was running; `None` outside an upgrade's steps.
    pub step: Option<Step>,
    pub kind: EntryKind,
    pub command: String,
    pub output: String,
    /// When the line was sent.
    pub at: jiff::Timestamp,
}

/// A job's transcript; cheap to clone (every clone writes to the same one).
#[derive(Clone, Default)]
pub struct Transcript {
    inner: Arc<Mutex<Buffer>>,
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transcript(..)")
    }
}

#[derive(Default)]
struct Buffer {
    limits: TranscriptLimits,
    secrets: Vec<String>,
    step: Option<Step>,
    pending: Vec<TranscriptEntry>,
    /// Bytes kept so far (taken entries included).
    used: usize,
    full: bool,
}

/// `text` with every secret replaced by `***`.
pub(crate) fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.is_empty() && out.contains(s) {
            out = out.replace(s, "***");
        }
    }
    out
}

/// The first `max` bytes of `text` (cut at a character boundary) and the marker, or `text`.
fn cap(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n{TRUNCATED}", &text[..end])
}

impl Transcript {
    pub(crate) fn new(limits: TranscriptLimits) -> Transcript {
        Transcript {
            inner: Arc::new(Mutex::new(Buffer {
                limits,
                ..Default::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic while holding the lock leaves only a half-kept line behind.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A value that must never be kept: replaced by `***` wherever it appears.
    pub(crate) fn add_secret(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let mut b = self.lock();
        if !b.secrets.iter().any(|s| s == secret) {
            b.secrets.push(secret.to_string());
            // A longer secret containing a shorter one must be replaced first.
            b.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// The step the next lines belong to.
    pub(crate) fn set_step(&self, step: Step) {
        self.lock().step = Some(step);
    }

    /// Keep one line: redacted, its output capped, within the job's budget.
    pub(crate) fn record(&self, kind: EntryKind, command: &str, output: &str, at: jiff::Timestamp) {
        let mut b = self.lock();
        if b.full {
            return;
        }
        let secrets = b.secrets.iter().map(String::as_str);
        let command = redact(command, secrets.clone());
        let output = cap(redact(output, secrets), b.limits.per_command);
        let left = b.limits.per_job.saturating_sub(b.used);
        let step = b.step;
        let size = command.len() + output.len();
        if size <= left {
            b.used += size;
            b.pending.push(TranscriptEntry {
                step,
                kind,
                command,
                output,
                at,
            });
            return;
        }
        // Over the job's budget: keep what fits of this line, then say that the rest is gone.
        if left > command.len() {
            let output = cap(output, left - command.len());
            b.pending.push(TranscriptEntry {
                step,
                kind,
                command,
                output,
                at,
            });
        }
        let limit = b.limits.per_job;
        b.used = limit;
        b.full = true;
        b.pending.push(TranscriptEntry {
            step,
            kind: EntryKind::Note,
            command: TRUNCATED.to_string(),
            output: format!(
                "the transcript reached its limit of {limit} bytes; later lines are not kept"
            ),
            at,
        });
    }

    /// The lines recorded since the last call, oldest first.
    pub(crate) fn take(&self) -> Vec<TranscriptEntry> {
        std::mem::take(&mut self.lock().pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    #[test]
    fn secrets_are_never_kept() {
        let t = Transcript::new(TranscriptLimits::default());
        t.add_secret("s3cret");
        t.add_secret("s3cret-longer");
        t.add_secret("");
        t.set_step(Step::Copy);
        t.record(
            EntryKind::Command,
            "copy ftp://fu1:s3cret-longer@10.0.0.5/a.bin flash:a.bin",
            "Accessing ftp://fu1:s3cret-longer@10.0.0.5/a.bin...\nenable s3cret",
            at(),
        );
        let e = t.take();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].step, Some(Step::Copy));
        assert_eq!(
            e[0].command,
            "copy ftp://fu1:***@10.0.0.5/a.bin flash:a.bin"
        );
        assert!(!e[0].output.contains("s3cret"), "{}", e[0].output);
        assert!(t.take().is_empty(), "taken entries are gone");
    }

    #[test]
    fn output_is_capped_per_command() {
        let t = Transcript::new(TranscriptLimits {
            per_command: 100,
            per_job: 10_000,
        });
        t.record(EntryKind::Command, "show tech", &"é".repeat(400), at());
        t.record(EntryKind::Command, "show clock", "12:00:00", at());
        let e = t.take();
        assert_eq!(e.len(), 2);
        assert!(e[0].output.len() <= 100 + 1 + TRUNCATED.len());
        assert!(e[0].output.ends_with(TRUNCATED), "{}", e[0].output);
        assert_eq!(e[1].output, "12:00:00");
    }

    #[test]
    fn the_job_budget_holds_and_says_so() {
        let limits = TranscriptLimits {
            per_command: 1000,
            per_job: 5000,
        };
        let t = Transcript::new(limits);
        for i in 0..100 {
            t.set_step(if i < 50 { Step::Copy } else { Step::WaitBack });
            t.record(EntryKind::Command, "show version", &"x".repeat(900), at());
        }
        let e = t.take();
        let kept: usize = e
            .iter()
            .filter(|e| e.kind != EntryKind::Note)
            .map(|e| e.command.len() + e.output.len())
            .sum();
        assert!(kept <= limits.per_job + TRUNCATED.len() + 1, "{kept}");
        let notes: Vec<_> = e.iter().filter(|e| e.kind == EntryKind::Note).collect();
        assert_eq!(notes.len(), 1, "one marker only");
        assert_eq!(e.last().map(|e| e.kind), Some(EntryKind::Note));
        assert_eq!(notes[0].command, TRUNCATED);
        // Nothing more once full.
        t.record(EntryKind::Command, "show clock", "12:00", at());
        assert!(t.take().is_empty());
    }
}
