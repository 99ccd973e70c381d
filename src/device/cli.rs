//! The prompt-aware CLI engine: a pure state machine between the bytes a Cisco shell prints
//! and the commands an upgrade sends.
//!
//! It never touches a socket or the clock. The transport feeds it what the channel received
//! ([`CliSession::handle_input`]) with the current instant, sends what
//! [`CliSession::poll_transmit`] gives, sleeps until [`CliSession::poll_timeout`] and calls
//! [`CliSession::handle_timeout`]. Outcomes come out of [`CliSession::poll_event`].
//!
//! What it knows about IOS, IOS-XE and NX-OS shells:
//! - a prompt is the last, unterminated line: `host>`, `host#`, `host(config...)#`; once the
//!   first prompt named the host, only prompts of that host count (a `#` in output is not a
//!   prompt), and config mode may show the hostname truncated;
//! - the device echoes what was typed: the echo line is removed from the output;
//! - syslog messages (`*Mar  1 00:01:02.345: %SYS-5-CONFIG_I: ...`) can arrive at any time,
//!   even between output lines or after the prompt: they are reported apart, never as output;
//! - interactive questions are answered from the command's [`Dialog`].

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;

use crate::inventory::Secret;

/// The CLI mode a prompt shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `host>`
    Exec,
    /// `host#`
    Privileged,
    /// `host(config)#`, `host(config-if)#`, ...
    Config,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prompt {
    /// The hostname as the prompt shows it (possibly truncated in config mode).
    pub hostname: String,
    pub mode: Mode,
    pub text: String,
}

// scrapli's IOS-XE prompt patterns, widened a little: hostnames up to 63 characters of
// `\w . - @ / :`, a parenthesised sub-mode, then `>` or `#`.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([\w.\-@/:]{1,63})(\([\w.\-@/:+]{0,32}\))?([>#])\s?$")
        .unwrap_or_else(|e| panic!("built-in prompt regex: {e}"))
});

// `*Mar  1 00:01:02.345: %SYS-5-CONFIG_I: ...`, `Nov 24 11:00:00 UTC: %LINK-3-UPDOWN: ...`,
// `000123: *Mar  1 ...`, or a bare `%SYS-5-RELOAD: ...` (no timestamps configured).
static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:\d+:\s+)?(?:[*.]?[A-Z][a-z]{2}\s+\d{1,2}\s+(?:\d{4}\s+)?\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:\s+[A-Z]{2,5})?:\s+)?%[A-Z0-9_]+-\d-[A-Z0-9_]+:",
    )
    .unwrap_or_else(|e| panic!("built-in syslog regex: {e}"))
});

/// Read a prompt from a line, if it is one.
pub(crate) fn parse_prompt(line: &str) -> Option<Prompt> {
    // Every line of every output comes here: most end otherwise, and need no regex.
    if !line.trim_end().ends_with(['>', '#']) {
        return None;
    }
    let c = PROMPT.captures(line)?;
    let mode = match (c.get(2), &c[3]) {
        (Some(_), "#") => Mode::Config,
        (Some(_), _) => return None,
        (None, "#") => Mode::Privileged,
        (None, _) => Mode::Exec,
    };
    Some(Prompt {
        hostname: c[1].to_string(),
        mode,
        text: line.trim_end().to_string(),
    })
}

pub(crate) fn is_syslog(line: &str) -> bool {
    // As for prompts: a line without a `%` is no syslog message, and needs no regex.
    line.contains('%') && SYSLOG.is_match(line.trim_start())
}

/// What to type in answer to a question.
#[derive(Clone)]
pub(crate) enum Reply {
    /// Just RETURN: accepts the default in brackets or confirms `[confirm]`.
    Enter,
    /// A word and RETURN.
    Line(String),
    /// A secret and RETURN; never shown in events.
    Secret(Secret),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Enter => f.write_str("Enter"),
            Reply::Line(s) => write!(f, "Line({s:?})"),
            Reply::Secret(_) => f.write_str("Secret(***)"),
        }
    }
}

#[derive(Debug, Clone)]
struct Answer {
    /// Shared by every dialog that asks it: a clone of a `Regex` starts with no search caches
    /// of its own, and builds them at its first match.
    question: std::sync::Arc<Regex>,
    reply: Reply,
}

/// The questions a command may ask and what to answer, first match wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialog {
    answers: Vec<Answer>,
}

impl Dialog {
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Add an answer; `question` is a regex matched against the unterminated last line.
    ///
    /// The questions are literals of this file, each compiled once per process: a dialog is
    /// built for every command that may ask something, thousands of times in one rollout.
    pub(crate) fn answer(mut self, question: &'static str, reply: Reply) -> Self {
        static COMPILED: LazyLock<
            std::sync::Mutex<std::collections::HashMap<&'static str, std::sync::Arc<Regex>>>,
        > = LazyLock::new(Default::default);
        let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
        let question =
            compiled
                .entry(question)
                .or_insert_with(|| {
                    std::sync::Arc::new(Regex::new(question).unwrap_or_else(|e| {
                        panic!("dialog question {question:?} is not a regex: {e}")
                    }))
                })
                .clone();
        drop(compiled);
        self.answers.push(Answer { question, reply });
        self
    }

    /// `copy URL flash:`: accept the suggested names, confirm an overwrite.
    pub(crate) fn copy() -> Self {
        Self::none()
            .answer(
                r"Address or name of remote host \[[^\]]*\]\?\s*$",
                Reply::Enter,
            )
            .answer(r"Source filename \[[^\]]*\]\?\s*$", Reply::Enter)
            .answer(r"Destination filename \[[^\]]*\]\?\s*$", Reply::Enter)
            .answer(
                r"Do you want to over\s?write\??.*\[confirm\]\s*$",
                Reply::Enter,
            )
    }

    /// [`Dialog::copy`] from a server that asks for a password (`copy scp:` on NX-OS, or
    /// IOS when the URL carries none), and NX-OS's question for the VRF when the command
    /// named none.
    pub(crate) fn copy_from(password: Option<Secret>, vrf: Option<String>) -> Self {
        let mut d = Self::copy();
        if let Some(p) = password {
            d = d.answer(r"(?i)password:\s*$", Reply::Secret(p));
        }
        if let Some(v) = vrf {
            d = d.answer(
                r"Enter vrf \(If no input, current vrf '[^']*' is considered\):\s*$",
                Reply::Line(v),
            );
        }
        d
    }

    /// `delete flash:X`, `write memory` and other commands that only ask for confirmation.
    pub(crate) fn confirm() -> Self {
        Self::none()
            .answer(r"Delete filename \[[^\]]*\]\?\s*$", Reply::Enter)
            .answer(r"Destination filename \[[^\]]*\]\?\s*$", Reply::Enter)
            .answer(r"\[confirm\]\s*$", Reply::Enter)
    }

    /// `reload`: the configuration was saved just before on purpose, so anything changed
    /// since is not saved (unicon answers the same).
    pub(crate) fn reload() -> Self {
        Self::none()
            .answer(
                r"System config(?:uration)? has been modified\.\s*Save\?\s*\[yes/no\]:?\s*$",
                Reply::Line("no".into()),
            )
            .answer(r"\[confirm\]\s*$", Reply::Enter)
            // NX-OS: `This command will reboot the system. (y/n)?  [n]`.
            .answer(
                r"reboot the system\.\s*\(y/n\)\?\s*\[n\]\s*$",
                Reply::Line("y".into()),
            )
    }

    /// `enable`: the secret at `Password:`.
    pub(crate) fn enable(secret: Option<Secret>) -> Self {
        let reply = match secret {
            Some(s) => Reply::Secret(s),
            None => Reply::Enter,
        };
        Self::none().answer(r"(?i)password:\s*$", reply)
    }

    /// IOS-XE `install ...` and NX-OS `install all`: proceed.
    pub(crate) fn install() -> Self {
        Self::none()
            .answer(r"\[y/n(?:/q)?\]\s*$", Reply::Line("y".into()))
            .answer(r"\(y/n\)\?\s*\[n\]\s*$", Reply::Line("y".into()))
            .answer(r"\[confirm\]\s*$", Reply::Enter)
    }

    fn find(&self, tail: &str) -> Option<&Reply> {
        self.answers
            .iter()
            .find(|a| a.question.is_match(tail))
            .map(|a| &a.reply)
    }
}

/// What the session observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The first prompt after login (or after [`CliSession::expect_prompt`]).
    Ready(Prompt),
    /// A command finished: its output (echo, syslog and the final prompt removed) and the
    /// prompt it ended at.
    Done {
        command: String,
        output: String,
        prompt: Prompt,
    },
    /// A question was answered from the dialog; `reply` is what was typed (secrets masked).
    Answered {
        question: String,
        reply: String,
    },
    Syslog(String),
    /// The deadline passed. `tail` is the end of what the device printed, to say where it hung.
    /// The session is unusable afterwards: output of the old command may still arrive.
    TimedOut {
        command: Option<String>,
        tail: String,
    },
}

/// Misuse of the session by its caller (a bug in the driver, not a device problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CliError {
    #[error("a command is still running ({0:?}); wait for its prompt before sending another")]
    Busy(String),
    #[error("the session is waiting for its first prompt")]
    NotReady,
    #[error("the session timed out earlier and can no longer be used; reconnect")]
    Broken,
}

#[derive(Debug)]
enum State {
    AwaitPrompt {
        deadline: Instant,
    },
    Idle,
    Running {
        command: String,
        dialog: Dialog,
        deadline: Instant,
        echo_pending: bool,
    },
    Broken,
}

/// The CLI engine of one SSH shell channel.
#[derive(Debug)]
pub(crate) struct CliSession {
    state: State,
    hostname: Option<String>,
    mode: Option<Mode>,
    /// Bytes of an incomplete UTF-8 sequence at the end of the last input.
    partial_utf8: Vec<u8>,
    /// The unterminated last line.
    tail: String,
    /// Complete output lines of the running command.
    lines: Vec<String>,
    /// A complete line that was a prompt of our host, followed so far only by syslog lines.
    prompt_before_syslog: Option<Prompt>,
    /// The question line last answered, so that it is not answered twice.
    answered_tail: Option<String>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

/// The number of hostname characters IOS keeps in config-mode prompts is not documented;
/// netmiko trusts the first 16, so do we.
const CONFIG_PROMPT_MIN_CHARS: usize = 16;

impl CliSession {
    /// A session that waits for the device's first prompt until `deadline`.
    pub(crate) fn new(deadline: Instant) -> Self {
        CliSession {
            state: State::AwaitPrompt { deadline },
            hostname: None,
            mode: None,
            partial_utf8: Vec::new(),
            tail: String::new(),
            lines: Vec::new(),
            prompt_before_syslog: None,
            answered_tail: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(crate) fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }

    /// The mode of the last prompt seen.
    pub(crate) fn mode(&self) -> Option<Mode> {
        self.mode
    }

    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// Type a bare RETURN and wait for a prompt (netmiko's `find_prompt`).
    #[cfg(test)]
    pub(crate) fn expect_prompt(&mut self, deadline: Instant) -> Result<(), CliError> {
        match &self.state {
            State::Running { command, .. } => return Err(CliError::Busy(command.clone())),
            State::Broken => return Err(CliError::Broken),
            _ => {}
        }
        self.transmit.push_back(b"\n".to_vec());
        self.tail.clear();
        self.lines.clear();
        self.state = State::AwaitPrompt { deadline };
        Ok(())
    }

    /// Send one command; its outcome is an [`Event::Done`] or [`Event::TimedOut`].
    pub(crate) fn send(
        &mut self,
        command: &str,
        dialog: Dialog,
        deadline: Instant,
    ) -> Result<(), CliError> {
        match &self.state {
            State::Idle => {}
            State::AwaitPrompt { .. } => return Err(CliError::NotReady),
            State::Running { command, .. } => return Err(CliError::Busy(command.clone())),
            State::Broken => return Err(CliError::Broken),
        }
        let command = command.trim().to_string();
        let mut bytes = command.clone().into_bytes();
        bytes.push(b'\n');
        self.transmit.push_back(bytes);
        self.tail.clear();
        self.lines.clear();
        self.prompt_before_syslog = None;
        self.answered_tail = None;
        self.state = State::Running {
            command,
            dialog,
            deadline,
            echo_pending: true,
        };
        Ok(())
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`CliSession::handle_timeout`] must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitPrompt { deadline } | State::Running { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let expired = match &self.state {
            State::AwaitPrompt { deadline } | State::Running { deadline, .. } => now >= *deadline,
            _ => false,
        };
        if !expired {
            return;
        }
        let command = match std::mem::replace(&mut self.state, State::Broken) {
            State::Running { command, .. } => Some(command),
            _ => None,
        };
        let mut printed = self.lines.join("\n");
        if !self.tail.is_empty() {
            printed.push('\n');
            printed.push_str(&self.tail);
        }
        let tail = last_chars(printed.trim(), 300);
        self.events.push_back(Event::TimedOut { command, tail });
    }

    /// Feed bytes received from the shell channel.
    pub(crate) fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        let text = self.decode(bytes);
        for ch in text.chars() {
            match ch {
                '\n' => {
                    let line = std::mem::take(&mut self.tail);
                    self.answered_tail = None;
                    self.complete_line(line);
                }
                // Backspace erases on screen (IOS wipes `--More--` with backspaces and spaces).
                '\x08' => {
                    self.tail.pop();
                }
                // Carriage returns, bells and NULs carry no output.
                '\r' | '\x07' | '\0' => {}
                c => self.tail.push(c),
            }
        }
        self.check_tail();
        self.handle_timeout(now);
    }

    fn decode(&mut self, bytes: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.partial_utf8);
        buf.extend_from_slice(bytes);
        match std::str::from_utf8(&buf) {
            Ok(s) => s.to_string(),
            Err(e) if e.error_len().is_none() => {
                // An incomplete sequence at the end: keep it for the next input.
                let valid = e.valid_up_to();
                self.partial_utf8 = buf[valid..].to_vec();
                String::from_utf8_lossy(&buf[..valid]).into_owned()
            }
            Err(_) => String::from_utf8_lossy(&buf).into_owned(),
        }
    }

    fn complete_line(&mut self, line: String) {
        if is_syslog(&line) {
            self.events
                .push_back(Event::Syslog(line.trim().to_string()));
            return;
        }
        let prompt = self.own_prompt(&line);
        match &mut self.state {
            State::Running {
                command,
                echo_pending,
                ..
            } => {
                if *echo_pending {
                    if line.trim().is_empty() {
                        return;
                    }
                    *echo_pending = false;
                    if line.trim_end().ends_with(command.as_str()) {
                        return;
                    }
                }
                if prompt.is_some() {
                    self.prompt_before_syslog = prompt;
                } else if !line.trim().is_empty() {
                    self.prompt_before_syslog = None;
                }
                self.lines.push(line);
            }
            State::AwaitPrompt { .. } => {
                if prompt.is_some() {
                    self.prompt_before_syslog = prompt;
                } else if !line.trim().is_empty() {
                    self.prompt_before_syslog = None;
                }
            }
            State::Idle | State::Broken => {}
        }
    }

    /// A prompt of the host this session talks to (any host before the first prompt).
    fn own_prompt(&self, line: &str) -> Option<Prompt> {
        let prompt = parse_prompt(line)?;
        let Some(host) = &self.hostname else {
            return Some(prompt);
        };
        let same = match prompt.mode {
            Mode::Config => {
                prompt.hostname == *host
                    || (host.starts_with(&prompt.hostname)
                        && prompt.hostname.len() >= CONFIG_PROMPT_MIN_CHARS.min(host.len()))
            }
            _ => prompt.hostname == *host,
        };
        same.then_some(prompt)
    }

    fn check_tail(&mut self) {
        if matches!(self.state, State::Idle | State::Broken) {
            return;
        }
        let tail = self.tail.clone();
        let prompt = if tail.trim().is_empty() {
            // The prompt was printed, then a syslog message moved the cursor to a new line.
            let prompt = self.prompt_before_syslog.take();
            if prompt.is_some() && self.lines.last().is_some_and(|l| parse_prompt(l).is_some()) {
                self.lines.pop();
            }
            prompt
        } else {
            self.own_prompt(&tail)
        };
        if let Some(prompt) = prompt {
            self.tail.clear();
            self.on_prompt(prompt);
            return;
        }
        // The pager, when `terminal length 0` was refused or reset: next page, and the marker
        // is not output.
        if matches!(self.state, State::Running { .. }) && tail.trim() == "--More--" {
            self.transmit.push_back(b" ".to_vec());
            self.tail.clear();
            return;
        }
        let reply = match &self.state {
            State::Running { dialog, .. }
                if !tail.trim().is_empty()
                    && self.answered_tail.as_deref() != Some(tail.as_str()) =>
            {
                dialog.find(&tail).cloned()
            }
            _ => None,
        };
        if let Some(reply) = reply {
            let (typed, shown) = match reply {
                Reply::Enter => ("\n".to_string(), String::new()),
                Reply::Line(s) => (format!("{s}\n"), s),
                Reply::Secret(s) => (format!("{}\n", s.0), "***".to_string()),
            };
            self.transmit.push_back(typed.into_bytes());
            self.events.push_back(Event::Answered {
                question: tail.trim().to_string(),
                reply: shown,
            });
            // The question stays the current line: the device may echo the reply onto it.
            self.answered_tail = Some(tail);
        }
    }

    fn on_prompt(&mut self, prompt: Prompt) {
        self.prompt_before_syslog = None;
        self.mode = Some(prompt.mode);
        if self.hostname.is_none() || prompt.mode != Mode::Config {
            self.hostname = Some(prompt.hostname.clone());
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::AwaitPrompt { .. } => self.events.push_back(Event::Ready(prompt)),
            State::Running { command, .. } => {
                let lines = std::mem::take(&mut self.lines);
                let lines: Vec<&str> = lines.iter().map(|l| l.trim_end()).collect();
                let output = lines.join("\n").trim_matches('\n').to_string();
                self.events.push_back(Event::Done {
                    command,
                    output,
                    prompt,
                });
            }
            other => self.state = other,
        }
    }
}

fn last_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    s.chars().skip(count.saturating_sub(n)).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    /// A session that already saw the prompt `prompt`.
    fn ready(prompt: &str) -> (CliSession, Instant) {
        let t0 = Instant::now();
        let mut s = CliSession::new(at(t0, 10));
        s.handle_input(format!("\r\n{prompt}").as_bytes(), t0);
        assert!(matches!(s.poll_event(), Some(Event::Ready(_))));
        (s, t0)
    }

    fn done(s: &mut CliSession) -> (String, Prompt) {
        loop {
            match s.poll_event() {
                Some(Event::Done { output, prompt, .. }) => return (output, prompt),
                Some(_) => continue,
                None => panic!("no Done event; state {:?}", s.state),
            }
        }
    }

    fn events(s: &mut CliSession) -> Vec<Event> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn prompts_of_every_mode_and_unusual_hostnames() {
        let long = "dc1-row42-rack17-core-switch-primary"; // 36 characters
        for host in ["R1", "core-sw.1-a", long, "sw_lab@site/1:a"] {
            for (suffix, mode) in [
                (">", Mode::Exec),
                ("#", Mode::Privileged),
                ("(config)#", Mode::Config),
                ("(config-if)# ", Mode::Config),
            ] {
                let p = parse_prompt(&format!("{host}{suffix}")).unwrap();
                assert_eq!(p.hostname, host);
                assert_eq!(p.mode, mode);
            }
        }
        for not_prompt in [
            "R1#show version",
            "####",
            "Password:",
            "R1(config)>",
            "!!!!!",
            "a b#",
            "",
        ] {
            assert!(parse_prompt(not_prompt).is_none(), "{not_prompt:?}");
        }
    }

    #[test]
    fn login_banner_then_prompt_names_the_host() {
        let t0 = Instant::now();
        let mut s = CliSession::new(at(t0, 10));
        s.handle_input(
            b"\r\n**************\r\n* Authorized access only #\r\n**************\r\n\r\n",
            t0,
        );
        assert!(s.poll_event().is_none());
        s.handle_input(b"core-sw.1-a>", t0);
        let Some(Event::Ready(p)) = s.poll_event() else {
            panic!("no Ready")
        };
        assert_eq!(p.hostname, "core-sw.1-a");
        assert_eq!(s.mode(), Some(Mode::Exec));
        assert_eq!(s.hostname(), Some("core-sw.1-a"));
    }

    #[test]
    fn echo_is_stripped_and_output_ends_at_the_prompt() {
        let (mut s, t0) = ready("core-sw.1-a#");
        s.send("show boot", Dialog::none(), at(t0, 30)).unwrap();
        assert_eq!(s.poll_transmit().unwrap(), b"show boot\n");
        s.handle_input(b"show boot\r\nBOOT path-list      : flash:old.bin\r\nConfig file         : flash:/config.text\r\ncore-sw.1-a#", t0);
        let (out, prompt) = done(&mut s);
        assert_eq!(
            out,
            "BOOT path-list      : flash:old.bin\nConfig file         : flash:/config.text"
        );
        assert_eq!(prompt.mode, Mode::Privileged);
        assert!(s.is_idle());
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_result() {
        let (mut s, t0) = ready("R1#");
        s.send("show clock", Dialog::none(), at(t0, 30)).unwrap();
        for b in "show clock\r\n*11:02:03.123 UTC Tue Nov 24 2026\r\nR1#".as_bytes() {
            s.handle_input(&[*b], t0);
        }
        assert_eq!(done(&mut s).0, "*11:02:03.123 UTC Tue Nov 24 2026");
    }

    #[test]
    fn split_utf8_is_kept_whole() {
        let (mut s, t0) = ready("R1#");
        s.send("show banner motd", Dialog::none(), at(t0, 30))
            .unwrap();
        let text = "show banner motd\r\nZürich\r\nR1#".as_bytes();
        let cut = text.iter().position(|&b| b == 0xc3).unwrap() + 1;
        s.handle_input(&text[..cut], t0);
        s.handle_input(&text[cut..], t0);
        assert_eq!(done(&mut s).0, "Zürich");
    }

    #[test]
    fn a_hash_or_another_hosts_prompt_in_output_is_not_the_end() {
        let (mut s, t0) = ready("edge1#");
        s.send(
            "show running-config | include hostname|banner",
            Dialog::none(),
            at(t0, 30),
        )
        .unwrap();
        s.handle_input(
            b"show running-config | include hostname|banner\r\nother-router#",
            t0,
        );
        assert!(
            s.poll_event().is_none(),
            "another host's prompt ends nothing"
        );
        s.handle_input(b"\r\nhostname edge1\r\nedge1#", t0);
        assert_eq!(done(&mut s).0, "other-router#\nhostname edge1");
    }

    #[test]
    fn config_mode_prompt_may_truncate_a_long_hostname() {
        let host = "dc1-row42-rack17-core-switch-primary";
        let (mut s, t0) = ready(&format!("{host}#"));
        s.send("configure terminal", Dialog::none(), at(t0, 30))
            .unwrap();
        s.handle_input(b"configure terminal\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\ndc1-row42-rack17-cor(config)#", t0);
        let (out, prompt) = done(&mut s);
        assert_eq!(
            out,
            "Enter configuration commands, one per line.  End with CNTL/Z."
        );
        assert_eq!(prompt.mode, Mode::Config);
        assert_eq!(s.hostname(), Some(host), "the full name is kept");
        s.send("end", Dialog::none(), at(t0, 30)).unwrap();
        s.handle_input(format!("end\r\n{host}#").as_bytes(), t0);
        assert_eq!(done(&mut s).1.mode, Mode::Privileged);
        // A different name that only shares a short prefix is not our prompt.
        s.send("configure terminal", Dialog::none(), at(t0, 30))
            .unwrap();
        s.handle_input(b"configure terminal\r\ndc1(config)#", t0);
        assert!(s.poll_event().is_none());
    }

    #[test]
    fn syslog_lines_are_reported_apart() {
        let (mut s, t0) = ready("R1#");
        s.send("show flash:", Dialog::none(), at(t0, 30)).unwrap();
        s.handle_input(b"show flash:\r\nDirectory of flash:/\r\n*Mar  1 00:01:02.345: %LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up\r\n    2  -rw-   1234  <no date>  a.bin\r\n", t0);
        s.handle_input(b"000042: Nov 24 11:00:00 UTC: %SYS-5-CONFIG_I: Configured from console by admin\r\n1000 bytes total (10 bytes free)\r\nR1#", t0);
        let ev = events(&mut s);
        assert_eq!(
            ev.iter().filter(|e| matches!(e, Event::Syslog(_))).count(),
            2
        );
        let Some(Event::Done { output, .. }) = ev.last() else {
            panic!("{ev:?}")
        };
        assert_eq!(
            output,
            "Directory of flash:/\n    2  -rw-   1234  <no date>  a.bin\n1000 bytes total (10 bytes free)"
        );
    }

    #[test]
    fn a_syslog_line_after_the_prompt_does_not_hide_it() {
        let (mut s, t0) = ready("R1#");
        s.send("end", Dialog::none(), at(t0, 30)).unwrap();
        s.handle_input(b"end\r\nR1#\r\n*Nov 24 11:00:00.001: %SYS-5-CONFIG_I: Configured from console by admin on vty0\r\n", t0);
        let ev = events(&mut s);
        assert!(ev.iter().any(|e| matches!(e, Event::Syslog(_))));
        let Some(Event::Done { output, prompt, .. }) = ev.last() else {
            panic!("{ev:?}")
        };
        assert_eq!(output, "");
        assert_eq!(prompt.hostname, "R1");
    }

    #[test]
    fn copy_dialog_answers_destination_and_overwrite() {
        let (mut s, t0) = ready("R1#");
        s.send(
            "copy tftp://10.0.0.5/new.bin flash:",
            Dialog::copy(),
            at(t0, 600),
        )
        .unwrap();
        assert_eq!(
            s.poll_transmit().unwrap(),
            b"copy tftp://10.0.0.5/new.bin flash:\n"
        );
        s.handle_input(
            b"copy tftp://10.0.0.5/new.bin flash:\r\nDestination filename [new.bin]? ",
            t0,
        );
        assert_eq!(s.poll_transmit().unwrap(), b"\n");
        s.handle_input(b"\r\n%Warning:There is a file already existing with this name \r\nDo you want to over write? [confirm]", t0);
        assert_eq!(s.poll_transmit().unwrap(), b"\n");
        s.handle_input(b"\r\nAccessing tftp://10.0.0.5/new.bin...\r\nLoading new.bin from 10.0.0.5 (via Vlan1): !!!!!", t0);
        assert!(s.poll_transmit().is_none());
        s.handle_input(
            b"!!!!!\r\n[OK - 30 bytes]\r\n\r\n30 bytes copied in 0.035 secs (857 bytes/sec)\r\nR1#",
            t0,
        );
        let ev = events(&mut s);
        let answered: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Answered { question, .. } => Some(question.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            answered,
            [
                "Destination filename [new.bin]?",
                "Do you want to over write? [confirm]"
            ]
        );
        let Some(Event::Done { output, .. }) = ev.last() else {
            panic!("{ev:?}")
        };
        assert_eq!(
            crate::device::parse::copy_result(output),
            Ok(crate::device::parse::CopyReport { bytes: Some(30) })
        );
    }

    #[test]
    fn reload_dialog_says_no_to_save_and_confirms() {
        let (mut s, t0) = ready("R1#");
        s.send("reload", Dialog::reload(), at(t0, 60)).unwrap();
        s.poll_transmit();
        s.handle_input(
            b"reload\r\n\r\nSystem configuration has been modified. Save? [yes/no]: ",
            t0,
        );
        assert_eq!(s.poll_transmit().unwrap(), b"no\n");
        s.handle_input(b"no\r\nProceed with reload? [confirm]", t0);
        assert_eq!(s.poll_transmit().unwrap(), b"\n");
    }

    #[test]
    fn enable_secret_is_typed_but_never_shown() {
        let (mut s, t0) = ready("R1>");
        s.send(
            "enable",
            Dialog::enable(Some(Secret("s3cret".into()))),
            at(t0, 30),
        )
        .unwrap();
        s.poll_transmit();
        s.handle_input(b"enable\r\nPassword: ", t0);
        assert_eq!(s.poll_transmit().unwrap(), b"s3cret\n");
        s.handle_input(b"\r\nR1#", t0);
        let ev = events(&mut s);
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Answered { reply, .. } if reply == "***"))
        );
        assert!(!format!("{ev:?}").contains("s3cret"));
        assert_eq!(s.mode(), Some(Mode::Privileged));
    }

    #[test]
    fn install_questions_are_answered_yes() {
        let (mut s, t0) = ready("c9300#");
        s.send(
            "install add file flash:x.bin activate commit",
            Dialog::install(),
            at(t0, 1800),
        )
        .unwrap();
        s.poll_transmit();
        s.handle_input(b"install add file flash:x.bin activate commit\r\ninstall_add_activate_commit: START\r\nThis operation may require a reload of the system. Do you want to proceed? [y/n]", t0);
        assert_eq!(s.poll_transmit().unwrap(), b"y\n");
        let (mut n, t0) = ready("n9k#");
        n.send(
            "install all nxos bootflash:nxos.bin",
            Dialog::install(),
            at(t0, 1800),
        )
        .unwrap();
        n.poll_transmit();
        n.handle_input(b"install all nxos bootflash:nxos.bin\r\nSwitch will be reloaded for disruptive upgrade.\r\nDo you want to continue with the installation (y/n)?  [n] ", t0);
        assert_eq!(n.poll_transmit().unwrap(), b"y\n");
    }

    /// The C9500X `install add file ... activate commit` capture (genielibs mock data), fed as
    /// the device prints it: the proceed question is answered and the result reads SUCCESS.
    #[test]
    fn iosxe_install_transcript_is_driven_to_the_end() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cisco/genielibs_c9500x_install_add_activate_commit.txt"
        );
        let text = std::fs::read_to_string(path).unwrap().replace('\n', "\r\n");
        let question = "Do you want to proceed? [y/n]";
        let cut = text.find(question).unwrap() + question.len();
        let (mut s, t0) = ready("Q9-9500X-2003#");
        let command = "install add file bootflash:c9500x_BLD_LUX_DEV_LATEST_20250613_000857.SSA.bin activate commit";
        s.send(command, Dialog::install(), at(t0, 1800)).unwrap();
        s.poll_transmit();
        s.handle_input(format!("{command}\r\n").as_bytes(), t0);
        s.handle_input(&text.as_bytes()[..cut], t0);
        assert_eq!(s.poll_transmit().unwrap(), b"y\n");
        // The capture shows the echoed `y` after the question.
        s.handle_input(&text.as_bytes()[cut..], t0);
        s.handle_input(b"Q9-9500X-2003#", t0);
        let (out, _) = done(&mut s);
        assert!(out.contains("[y/n]y"), "{out}");
        assert_eq!(
            crate::device::parse::install_result(&out),
            Ok(crate::device::parse::InstallOutcome::Success)
        );
    }

    #[test]
    fn an_unanswered_question_times_out_with_the_question_in_the_tail() {
        let (mut s, t0) = ready("R1#");
        s.send("delete flash:old.bin", Dialog::none(), at(t0, 30))
            .unwrap();
        s.handle_input(
            b"delete flash:old.bin\r\nDelete filename [old.bin]? ",
            at(t0, 1),
        );
        assert_eq!(s.poll_timeout(), Some(at(t0, 30)));
        s.handle_timeout(at(t0, 29));
        assert!(s.poll_event().is_none(), "not yet");
        s.handle_timeout(at(t0, 30));
        let Some(Event::TimedOut { command, tail }) = s.poll_event() else {
            panic!()
        };
        assert_eq!(command.as_deref(), Some("delete flash:old.bin"));
        assert!(tail.ends_with("Delete filename [old.bin]?"), "{tail:?}");
        assert_eq!(
            s.send("show clock", Dialog::none(), at(t0, 60)),
            Err(CliError::Broken)
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn the_pager_is_paged_through() {
        let (mut s, t0) = ready("R1#");
        s.send("show running-config", Dialog::none(), at(t0, 30))
            .unwrap();
        s.poll_transmit();
        s.handle_input(b"show running-config\r\nhostname R1\r\n --More-- ", t0);
        assert_eq!(s.poll_transmit().unwrap(), b" ");
        s.handle_input(b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08        \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08boot system flash:a.bin\r\nR1#", t0);
        let (out, _) = done(&mut s);
        assert_eq!(out, "hostname R1\nboot system flash:a.bin");
    }

    #[test]
    fn late_input_past_the_deadline_still_completes_first() {
        let (mut s, t0) = ready("R1#");
        s.send("show clock", Dialog::none(), at(t0, 5)).unwrap();
        s.handle_input(b"show clock\r\n11:00\r\nR1#", at(t0, 6));
        assert_eq!(done(&mut s).0, "11:00");
    }

    #[test]
    fn first_prompt_timeout_and_misuse() {
        let t0 = Instant::now();
        let mut s = CliSession::new(at(t0, 5));
        assert_eq!(
            s.send("show clock", Dialog::none(), at(t0, 5)),
            Err(CliError::NotReady)
        );
        s.handle_input(b"% Login invalid\r\n", at(t0, 6));
        assert!(matches!(
            s.poll_event(),
            Some(Event::TimedOut { command: None, .. })
        ));
        let (mut s, t0) = ready("R1#");
        s.send("show clock", Dialog::none(), at(t0, 5)).unwrap();
        assert_eq!(
            s.send("show clock", Dialog::none(), at(t0, 5)),
            Err(CliError::Busy("show clock".into()))
        );
        assert_eq!(
            s.expect_prompt(at(t0, 5)),
            Err(CliError::Busy("show clock".into()))
        );
    }

    #[test]
    fn expect_prompt_sends_return() {
        let (mut s, t0) = ready("R1#");
        s.expect_prompt(at(t0, 5)).unwrap();
        assert_eq!(s.poll_transmit().unwrap(), b"\n");
        s.handle_input(b"\r\nR1#", t0);
        assert!(matches!(s.poll_event(), Some(Event::Ready(_))));
    }

    #[derive(serde::Deserialize)]
    struct Recording {
        interactions: Vec<Interaction>,
    }
    #[derive(serde::Deserialize)]
    struct Interaction {
        channel_output: String,
        expected_channel_input: String,
    }

    /// Replays a recorded real CSR1000v session (scrapli_replay): what the device printed is
    /// fed in, the commands scrapli typed are sent, and every command must complete with the
    /// output the recording shows.
    #[test]
    fn replay_of_a_real_csr1000v_session() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/cisco/scrapli_cfg_csr1000v_replay.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let rec: std::collections::BTreeMap<String, Recording> =
            crate::yaml::from_str(&text).unwrap();
        let interactions = &rec.values().next().unwrap().interactions;
        // The session start (until `tclsh`) and its end (from the copy to startup-config).
        let copy_at = interactions
            .iter()
            .position(|i| i.expected_channel_input == "copy running-config startup-config")
            .unwrap();
        let tclsh_at = interactions
            .iter()
            .position(|i| i.expected_channel_input == "tclsh")
            .unwrap();
        let mut outputs = Vec::new();
        for range in [0..tclsh_at, copy_at..interactions.len() - 2] {
            let t0 = Instant::now();
            let mut s = CliSession::new(at(t0, 30));
            for i in &interactions[range] {
                s.handle_input(i.channel_output.as_bytes(), t0);
                while let Some(e) = s.poll_event() {
                    if let Event::Done {
                        command, output, ..
                    } = e
                    {
                        outputs.push((command, output));
                    }
                }
                let input = i.expected_channel_input.as_str();
                if s.is_idle() && !input.trim().is_empty() {
                    let dialog = if input.starts_with("copy") {
                        Dialog::copy()
                    } else {
                        Dialog::confirm()
                    };
                    s.send(input, dialog, at(t0, 30)).unwrap();
                }
            }
        }
        let commands: Vec<_> = outputs.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            commands,
            [
                "terminal length 0",
                "terminal width 512",
                "show version | i Version",
                "dir flash: | i bytes",
                "copy running-config startup-config",
                "show run | i file prompt",
                "delete flash:__SCRAPLI_CFG_SESSION_NAME__"
            ]
        );
        assert_eq!(outputs[0].1, "");
        let version = crate::device::parse::show_version(&outputs[2].1).unwrap();
        assert_eq!(version.version, "16.12.03");
        let dir = crate::device::parse::dir(&outputs[3].1).unwrap();
        assert_eq!(dir.bytes_free, Some(5488451584));
        assert_eq!(
            outputs[4].1,
            "Destination filename [startup-config]?\nBuilding configuration...\n[OK]"
        );
        assert_eq!(
            outputs[6].1,
            "Delete filename [__SCRAPLI_CFG_SESSION_NAME__]?\nDelete bootflash:/__SCRAPLI_CFG_SESSION_NAME__? [confirm]"
        );
    }
}
