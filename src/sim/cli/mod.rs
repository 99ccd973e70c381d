//! The IOS command line of one vty session: modes, prompts, dialogs and the commands an upgrade
//! needs. Line editing and command matching are pure (`line`, `parser`); this layer runs the
//! dialogs and touches flash.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest as _, Md5};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

mod checks;
mod copy_ssh;
mod files;
mod iosxe;
mod nxos;

use super::Fault;
use super::LabShared;
use super::copy::{self, FetchError, FetchOptions, FlashSink, Source};
use super::device::{ConfigBits, Device};
use super::line::{Line, LineEditor};
use super::parser::{ParseError, Syntax, Tok::*, parse};

/// Where the session writes: an SSH channel.
pub(super) trait Output: Send {
    fn write(&mut self, data: Vec<u8>) -> impl Future<Output = Result<(), ()>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    User,
    Privileged,
    Config,
    /// `interface X` submode.
    ConfigIf,
    /// `line vty 0 4` / `line console 0` submode.
    ConfigLine,
}

impl Mode {
    fn is_config(self) -> bool {
        matches!(self, Mode::Config | Mode::ConfigIf | Mode::ConfigLine)
    }
}

/// What the session does after a command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// `exit`/`logout`: close the channel.
    Exit,
    /// A reload was confirmed (the supervisor drops the session) or a fault cuts the session.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Enable,
    Disable,
    Exit,
    ShowVersion,
    ShowPrivilege,
    ShowFlash,
    ShowBoot,
    ShowBootvar,
    ShowFileSystems,
    ShowRun,
    ShowStart,
    TermLength,
    TermWidth,
    Configure,
    Copy,
    Verify,
    Delete,
    Dir,
    Write,
    Reload,
    InstallAdd,
    /// `install activate [auto-abort-timer N] [prompt-level none]`.
    InstallActivate,
    InstallCommit,
    /// `install abort [prompt-level none]`.
    InstallAbort,
    InstallRemoveInactive,
    ShowInstallSummary,
    /// IOS-XE `show issu state detail`.
    ShowIssuStateDetail,
    ShowFileMd5,
    InstallAll,
    /// `install all kickstart K system S`, on personas with a kickstart image.
    InstallAllKickstart,
    /// The same, written `install all system S kickstart K`.
    InstallAllSystemKickstart,
    TermDontAsk,
    BootNxos,
    /// `boot kickstart FILE [sup-N]` (NX-OS with separate images).
    BootKickstart,
    NoBootKickstart,
    // configuration mode
    Hostname,
    BootSystem,
    NoBootSystem,
    ConfigRegister,
    TftpBlocksize,
    NoTftpBlocksize,
    FtpUsername,
    NoFtpUsername,
    FtpPassword,
    NoFtpPassword,
    FtpPassive,
    NoFtpPassive,
    ScpServer,
    NoScpServer,
    SnmpCommunity,
    NoSnmpCommunity,
    FilePrompt,
    End,
    Do,
    // pre/post checks and client setup (checks.rs)
    ShowIpIntBrief,
    ShowIntStatus,
    ShowCdp,
    ShowCdpDetail,
    ShowLldp,
    ShowIpRouteSummary,
    ShowIntBrief,
    ShowInstallActive,
    ShowInstallCommitted,
    ShowInstallAllImpact,
    TermSessionTimeout,
    Interface,
    LineMode,
    Logging,
    NoLogging,
    SourceInterface,
    NoSourceInterface,
    Description,
    NoDescription,
    Shutdown,
    NoShutdown,
    LineSetting,
    ExitSub,
}

/// Exec commands with the privilege level each needs.
type ExecTable = &'static [(u8, Syntax<Cmd>)];

/// Exec commands with the privilege level they need.
const EXEC: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("enable"), OptArg],
            cmd: Cmd::Enable,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("disable")],
            cmd: Cmd::Disable,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("exit")],
            cmd: Cmd::Exit,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("logout")],
            cmd: Cmd::Exit,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("quit")],
            cmd: Cmd::Exit,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("version")],
            cmd: Cmd::ShowVersion,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("privilege")],
            cmd: Cmd::ShowPrivilege,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("flash:"), OptArg],
            cmd: Cmd::ShowFlash,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("terminal"), Kw("length"), Arg],
            cmd: Cmd::TermLength,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("terminal"), Kw("width"), Arg],
            cmd: Cmd::TermWidth,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("show"), Kw("boot")],
            cmd: Cmd::ShowBoot,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("show"), Kw("bootvar")],
            cmd: Cmd::ShowBootvar,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("show"), Kw("file"), Kw("systems")],
            cmd: Cmd::ShowFileSystems,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("show"), Kw("running-config")],
            cmd: Cmd::ShowRun,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("show"), Kw("startup-config")],
            cmd: Cmd::ShowStart,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("configure"), Kw("terminal")],
            cmd: Cmd::Configure,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("copy"), Arg, Arg],
            cmd: Cmd::Copy,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("verify"), Kw("/md5"), Arg, OptArg],
            cmd: Cmd::Verify,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("delete"), Arg, OptArg],
            cmd: Cmd::Delete,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("dir"), OptArg],
            cmd: Cmd::Dir,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("write"), OptArg],
            cmd: Cmd::Write,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("reload"), Rest],
            cmd: Cmd::Reload,
        },
    ),
];

/// IOS-XE: copies name a VRF (`copy http://… flash: vrf Mgmt-vrf`).
const IOSXE: &[(u8, Syntax<Cmd>)] = &[(
    15,
    Syntax {
        toks: &[Kw("copy"), Arg, Arg, Kw("vrf"), Arg],
        cmd: Cmd::Copy,
    },
)];

/// IOS-XE install mode (personas with `install_mode: true`).
const INSTALL: &[(u8, Syntax<Cmd>)] = &[
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("add"), Kw("file"), Arg, Rest],
            cmd: Cmd::InstallAdd,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("remove"), Kw("inactive")],
            cmd: Cmd::InstallRemoveInactive,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("activate"), Rest],
            cmd: Cmd::InstallActivate,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("commit")],
            cmd: Cmd::InstallCommit,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("abort"), Rest],
            cmd: Cmd::InstallAbort,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("install"), Kw("summary")],
            cmd: Cmd::ShowInstallSummary,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("issu"), Kw("state"), Kw("detail")],
            cmd: Cmd::ShowIssuStateDetail,
        },
    ),
];

/// NX-OS additions.
const NXOS: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("file"), Arg, Kw("md5sum")],
            cmd: Cmd::ShowFileMd5,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("install"), Kw("all"), Kw("nxos"), Arg, Rest],
            cmd: Cmd::InstallAll,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("terminal"), Kw("dont-ask")],
            cmd: Cmd::TermDontAsk,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("copy"), Arg, Arg, Kw("vrf"), Arg],
            cmd: Cmd::Copy,
        },
    ),
];

/// NX-OS with separate kickstart and system images (Nexus 5000/7000): `install all kickstart
/// K system S` instead of `install all nxos`.
const NXOS_KICKSTART: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("file"), Arg, Kw("md5sum")],
            cmd: Cmd::ShowFileMd5,
        },
    ),
    (
        15,
        Syntax {
            toks: &[
                Kw("install"),
                Kw("all"),
                Kw("kickstart"),
                Arg,
                Kw("system"),
                Arg,
                Rest,
            ],
            cmd: Cmd::InstallAllKickstart,
        },
    ),
    (
        15,
        Syntax {
            toks: &[
                Kw("install"),
                Kw("all"),
                Kw("system"),
                Arg,
                Kw("kickstart"),
                Arg,
                Rest,
            ],
            cmd: Cmd::InstallAllSystemKickstart,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("terminal"), Kw("dont-ask")],
            cmd: Cmd::TermDontAsk,
        },
    ),
    (
        15,
        Syntax {
            toks: &[Kw("copy"), Arg, Arg, Kw("vrf"), Arg],
            cmd: Cmd::Copy,
        },
    ),
];

const NXOS_CONFIG: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("boot"), Kw("nxos"), Arg],
        cmd: Cmd::BootNxos,
    },
    Syntax {
        toks: &[Kw("no"), Kw("boot"), Kw("nxos"), Rest],
        cmd: Cmd::NoBootSystem,
    },
];

/// NX-OS with separate kickstart and system images: `boot kickstart` and `boot system` (each
/// with an optional `sup-1` / `sup-2`) instead of `boot nxos`. `boot system` here is NX-OS's,
/// not the IOS line of `CONFIG`: `Cmd::BootSystem` is run by `boot_nxos_system`.
const NXOS_KICKSTART_CONFIG: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("boot"), Kw("kickstart"), Arg, OptArg],
        cmd: Cmd::BootKickstart,
    },
    Syntax {
        toks: &[Kw("no"), Kw("boot"), Kw("kickstart"), Rest],
        cmd: Cmd::NoBootKickstart,
    },
];

const CONFIG: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("hostname"), Arg],
        cmd: Cmd::Hostname,
    },
    Syntax {
        toks: &[Kw("boot"), Kw("system"), Arg, Rest],
        cmd: Cmd::BootSystem,
    },
    Syntax {
        toks: &[Kw("no"), Kw("boot"), Kw("system"), Rest],
        cmd: Cmd::NoBootSystem,
    },
    Syntax {
        toks: &[Kw("config-register"), Arg],
        cmd: Cmd::ConfigRegister,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("tftp"), Kw("blocksize"), Arg],
        cmd: Cmd::TftpBlocksize,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("tftp"), Kw("blocksize"), OptArg],
        cmd: Cmd::NoTftpBlocksize,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("ftp"), Kw("username"), Arg],
        cmd: Cmd::FtpUsername,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("ftp"), Kw("username"), OptArg],
        cmd: Cmd::NoFtpUsername,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("ftp"), Kw("password"), Arg, OptArg],
        cmd: Cmd::FtpPassword,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("ftp"), Kw("password"), Rest],
        cmd: Cmd::NoFtpPassword,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("ftp"), Kw("passive")],
        cmd: Cmd::FtpPassive,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("ftp"), Kw("passive")],
        cmd: Cmd::NoFtpPassive,
    },
    Syntax {
        toks: &[Kw("file"), Kw("prompt"), OptArg],
        cmd: Cmd::FilePrompt,
    },
    Syntax {
        toks: &[Kw("end")],
        cmd: Cmd::End,
    },
    Syntax {
        toks: &[Kw("exit")],
        cmd: Cmd::End,
    },
    Syntax {
        toks: &[Kw("do"), Arg, Rest],
        cmd: Cmd::Do,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    Include,
    Exclude,
    Begin,
    Section,
    Count,
    /// NX-OS `| json` / `| json-pretty`: structured output, not a text filter.
    Json,
}

const FILTERS: &[Syntax<FilterKind>] = &[
    Syntax {
        toks: &[Kw("include"), Arg, Rest],
        cmd: FilterKind::Include,
    },
    Syntax {
        toks: &[Kw("exclude"), Arg, Rest],
        cmd: FilterKind::Exclude,
    },
    Syntax {
        toks: &[Kw("begin"), Arg, Rest],
        cmd: FilterKind::Begin,
    },
    Syntax {
        toks: &[Kw("section"), Arg, Rest],
        cmd: FilterKind::Section,
    },
    Syntax {
        toks: &[Kw("count"), Rest],
        cmd: FilterKind::Count,
    },
];

const NXOS_FILTERS: &[Syntax<FilterKind>] = &[
    Syntax {
        toks: &[Kw("json")],
        cmd: FilterKind::Json,
    },
    Syntax {
        toks: &[Kw("json-pretty")],
        cmd: FilterKind::Json,
    },
];

struct Filter {
    kind: FilterKind,
    pattern: Option<regex::Regex>,
}

impl Filter {
    fn apply(&self, text: &str) -> String {
        let matches = |l: &str| self.pattern.as_ref().is_none_or(|r| r.is_match(l));
        let lines = text.split('\n');
        match self.kind {
            FilterKind::Include => lines
                .filter(|l| matches(l))
                .map(|l| format!("{l}\n"))
                .collect(),
            FilterKind::Exclude => lines
                .filter(|l| !matches(l))
                .map(|l| format!("{l}\n"))
                .collect(),
            FilterKind::Begin => lines
                .skip_while(|l| !matches(l))
                .map(|l| format!("{l}\n"))
                .collect(),
            FilterKind::Section => {
                let mut out = String::new();
                let mut inside = false;
                for l in lines {
                    if !l.starts_with(' ') {
                        inside = matches(l);
                    }
                    if inside {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
                out
            }
            FilterKind::Json => text.to_string(),
            FilterKind::Count => format!(
                "Number of lines which match regexp = {}\n",
                lines.filter(|l| !l.is_empty() && matches(l)).count()
            ),
        }
    }
}

/// `\n` to `\r\n`, as a vty prints.
fn crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The optional supervisor of NX-OS `boot kickstart|system FILE [sup-1|sup-2]`.
fn valid_sup(word: Option<&str>) -> bool {
    word.is_none_or(|w| w.eq_ignore_ascii_case("sup-1") || w.eq_ignore_ascii_case("sup-2"))
}

fn is_running(s: &str) -> bool {
    let s = s.strip_prefix("system:").unwrap_or(s);
    s.len() >= 3 && "running-config".starts_with(s)
}

fn is_startup(s: &str) -> bool {
    let s = s.strip_prefix("nvram:").unwrap_or(s);
    s.len() >= 3 && "startup-config".starts_with(s)
}

pub(super) struct Cli<O: Output> {
    dev: Arc<Device>,
    lab: Arc<LabShared>,
    out: O,
    input: mpsc::UnboundedReceiver<Vec<u8>>,
    editor: LineEditor,
    mode: Mode,
    user: String,
    peer: IpAddr,
    /// NX-OS `terminal dont-ask`.
    dont_ask: bool,
    /// Lines per screen before `--More--`; 0 turns paging off.
    term_length: u32,
    /// The port an `interface X` submode configures.
    sub_interface: Option<String>,
    /// The prompt word of the `line` submode (`config-line`, NX-OS `config-console`).
    line_prompt: &'static str,
}

/// Size of the flash read between two dots of `verify /md5`.
const VERIFY_DOT: u64 = 1 << 20;
/// Bytes per `!` of a download.
const COPY_MARK: u64 = 32 * 1024;

impl<O: Output> Cli<O> {
    pub(super) fn new(
        dev: Arc<Device>,
        lab: Arc<LabShared>,
        out: O,
        input: mpsc::UnboundedReceiver<Vec<u8>>,
        user: String,
        peer: IpAddr,
    ) -> Self {
        // NX-OS logs network-admin users straight into privileged mode.
        let mode = if dev.persona.platform == crate::inventory::Platform::Nxos {
            Mode::Privileged
        } else {
            Mode::User
        };
        Self {
            dev,
            lab,
            out,
            input,
            editor: LineEditor::new(),
            mode,
            user,
            peer,
            dont_ask: false,
            term_length: 24,
            sub_interface: None,
            line_prompt: "config-line",
        }
    }

    async fn write(&mut self, s: &str) -> Result<(), ()> {
        if s.is_empty() {
            return Ok(());
        }
        self.out.write(s.as_bytes().to_vec()).await
    }

    fn hostname(&self) -> String {
        self.dev.state().running.hostname
    }

    fn prompt(&self) -> String {
        let host = self.hostname();
        match self.mode {
            Mode::User => format!("{host}>"),
            Mode::Privileged => format!("{host}#"),
            // IOS shortens the hostname in configuration prompts.
            Mode::Config => format!("{}(config)#", &host[..host.len().min(20)]),
            Mode::ConfigIf => format!("{}(config-if)#", &host[..host.len().min(20)]),
            Mode::ConfigLine => format!("{}({})#", &host[..host.len().min(20)], self.line_prompt),
        }
    }

    async fn read_line(&mut self, show: bool) -> Option<Line> {
        loop {
            let mut echo = Vec::new();
            let line = self.editor.next_line(show, &mut echo);
            if !echo.is_empty() {
                self.out.write(echo).await.ok()?;
            }
            if line.is_some() {
                return line;
            }
            let bytes = self.input.recv().await?;
            self.editor.push(&bytes);
        }
    }

    async fn read_text(&mut self, show: bool) -> Option<String> {
        match self.read_line(show).await? {
            Line::Text(t) => Some(t),
            Line::Interrupt | Line::End => Some(String::from("\u{3}")),
        }
    }

    /// The next key typed; `None` once the session's input has ended.
    async fn read_key(&mut self) -> Option<u8> {
        loop {
            if let Some(k) = self.editor.next_key() {
                return Some(k);
            }
            let bytes = self.input.recv().await?;
            self.editor.push(&bytes);
        }
    }

    /// A `[confirm]` answer: Return or `y` confirms, anything else declines.
    async fn confirm(&mut self) -> Option<bool> {
        let key = self.read_key().await?;
        let yes = matches!(key, b'\r' | b'\n' | b'y' | b'Y');
        if matches!(key, b'y' | b'Y' | b'n' | b'N')
            && matches!(self.editor.peek_key(), Some(b'\r' | b'\n'))
        {
            self.editor.next_key();
        }
        self.write("\r\n").await.ok()?;
        Some(yes)
    }

    /// The interactive session: prompt, read, execute, until the client leaves.
    pub(super) async fn run(mut self) -> Flow {
        if self.write("\r\n").await.is_err() {
            return Flow::Exit;
        }
        loop {
            let prompt = self.prompt();
            if self.write(&prompt).await.is_err() {
                return Flow::Exit;
            }
            let Some(line) = self.read_line(true).await else {
                return Flow::Exit;
            };
            let flow = match line {
                Line::Text(t) => self.execute(&t, prompt.len()).await,
                Line::Interrupt | Line::End => {
                    if self.mode.is_config() {
                        self.mode = Mode::Privileged;
                    }
                    Flow::Continue
                }
            };
            if flow != Flow::Continue {
                return flow;
            }
        }
    }

    /// One command given on the `ssh host COMMAND` line.
    pub(super) async fn run_exec(mut self, line: &str) -> Flow {
        self.term_length = 0;
        self.execute(line, 0).await
    }

    async fn execute(&mut self, line: &str, prompt_len: usize) -> Flow {
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        self.dev.record_command(line.trim());
        match self.execute_inner(line, prompt_len).await {
            Ok(flow) => flow,
            Err(()) => Flow::Exit,
        }
    }

    async fn execute_inner(&mut self, line: &str, prompt_len: usize) -> Result<Flow, ()> {
        let nxos = self.nxos();
        let (command, filter) = match line.find('|') {
            Some(i) => {
                let text = &line[i + 1..];
                let filters: Vec<Syntax<FilterKind>> = if nxos {
                    FILTERS.iter().chain(NXOS_FILTERS).copied().collect()
                } else {
                    FILTERS.to_vec()
                };
                match parse(text, &filters) {
                    Ok(p) => {
                        let pattern = if matches!(p.cmd, FilterKind::Json)
                            || (p.cmd == FilterKind::Count && p.args.is_empty())
                        {
                            None
                        } else {
                            let first = text.split_whitespace().next().unwrap_or_default();
                            let start = text.find(first).unwrap_or(0) + first.len();
                            let raw = text[start..].trim();
                            Some(
                                regex::Regex::new(raw)
                                    .or_else(|_| regex::Regex::new(&regex::escape(raw)))
                                    .map_err(|_| ())?,
                            )
                        };
                        (
                            &line[..i],
                            Some(Filter {
                                kind: p.cmd,
                                pattern,
                            }),
                        )
                    }
                    Err(e) => {
                        let e = match e {
                            ParseError::Invalid { at } => ParseError::Invalid { at: at + i + 1 },
                            other => other,
                        };
                        self.write(&e.render_as(nxos, prompt_len)).await?;
                        return Ok(Flow::Continue);
                    }
                }
            }
            None => (line, None),
        };
        if command.trim().is_empty() {
            self.write(
                &ParseError::Invalid {
                    at: line.find('|').unwrap_or(0),
                }
                .render_as(nxos, prompt_len),
            )
            .await?;
            return Ok(Flow::Continue);
        }
        if !self.mode.is_config()
            && let Some(out) = self.members_command(command)
        {
            self.show(&out, filter.as_ref()).await?;
            return Ok(Flow::Continue);
        }
        if !self.mode.is_config()
            && let Some(text) = self.persona_command(command)
        {
            let out = self.dev.render(&text);
            self.show(&out, filter.as_ref()).await?;
            return Ok(Flow::Continue);
        }
        let install: &[(u8, Syntax<Cmd>)] = if self.dev.persona.install_mode {
            INSTALL
        } else if nxos && self.dev.persona.kickstart_image.is_some() {
            NXOS_KICKSTART
        } else if nxos {
            NXOS
        } else {
            &[]
        };
        let (checks, more_checks): (ExecTable, ExecTable) = if self.dev.persona.install_mode {
            (checks::IOS_CHECKS, checks::INSTALL_CHECKS)
        } else if nxos {
            (checks::NXOS_CHECKS, &[])
        } else {
            (checks::IOS_CHECKS, &[])
        };
        let iosxe: &[(u8, Syntax<Cmd>)] =
            if self.dev.persona.platform == crate::inventory::Platform::Iosxe {
                IOSXE
            } else {
                &[]
            };
        let exec = EXEC
            .iter()
            .chain(install)
            .chain(iosxe)
            .chain(checks)
            .chain(more_checks);
        let kickstart = nxos && self.dev.persona.kickstart_image.is_some();
        let global: Vec<Syntax<Cmd>> = if nxos {
            let boot = if kickstart {
                NXOS_KICKSTART_CONFIG
            } else {
                NXOS_CONFIG
            };
            CONFIG
                .iter()
                .chain(boot)
                .chain(checks::CONFIG_CHECKS)
                .chain(checks::NXOS_CONFIG_CHECKS)
                .copied()
                .collect()
        } else {
            CONFIG
                .iter()
                .chain(checks::CONFIG_CHECKS)
                .copied()
                .collect()
        };
        let syntax: Vec<Syntax<Cmd>> = match self.mode {
            Mode::User => exec.filter(|(l, _)| *l <= 1).map(|(_, s)| *s).collect(),
            Mode::Privileged => exec.map(|(_, s)| *s).collect(),
            Mode::Config => global.clone(),
            Mode::ConfigIf => checks::INTERFACE_MODE.to_vec(),
            Mode::ConfigLine => checks::LINE_MODE.to_vec(),
        };
        let parsed = match parse(command, &syntax) {
            Ok(p) => p,
            // A global line typed in a submode leaves the submode, as on IOS.
            Err(_)
                if matches!(self.mode, Mode::ConfigIf | Mode::ConfigLine)
                    && parse(command, &global).is_ok() =>
            {
                self.mode = Mode::Config;
                self.sub_interface = None;
                match parse(command, &global) {
                    Ok(p) => p,
                    Err(_) => return Ok(Flow::Continue),
                }
            }
            Err(e) => {
                self.write(&e.render_as(nxos, prompt_len)).await?;
                return Ok(Flow::Continue);
            }
        };
        let args = parsed.args;
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
        let caret = |word: &str| {
            let at = command.rfind(word).unwrap_or(0);
            ParseError::Invalid { at }.render_as(nxos, prompt_len)
        };
        match parsed.cmd {
            Cmd::Enable => self.enable().await?,
            Cmd::Disable => self.mode = Mode::User,
            Cmd::Exit => return Ok(Flow::Exit),
            Cmd::ShowVersion
                if nxos && filter.as_ref().is_some_and(|f| f.kind == FilterKind::Json) =>
            {
                let text = self.version_json();
                self.write(&crlf(&text)).await?;
            }
            Cmd::ShowVersion => {
                let t = self.dev.persona.templates.show_version.clone();
                let out = self.dev.render(&t);
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::ShowPrivilege => {
                let level = if self.mode == Mode::User { 1 } else { 15 };
                self.show(
                    &format!("Current privilege level is {level}\n"),
                    filter.as_ref(),
                )
                .await?;
            }
            Cmd::ShowFlash => {
                let out = self.dir_listing(args.first().map(String::as_str));
                match out {
                    Ok(text) => self.show(&text, filter.as_ref()).await?,
                    Err(e) => self.write(&e).await?,
                }
            }
            Cmd::ShowBoot => {
                let t = self.dev.persona.templates.show_boot.clone();
                let out = self.dev.render(&t);
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::ShowBootvar => match self.dev.persona.templates.show_bootvar.clone() {
                Some(t) => {
                    let out = self.dev.render(&t);
                    self.show(&out, filter.as_ref()).await?;
                }
                None => {
                    let at = command.find("bootvar").map(|i| i + 4).unwrap_or(0);
                    self.write(&ParseError::Invalid { at }.render_as(nxos, prompt_len))
                        .await?;
                }
            },
            Cmd::ShowFileSystems => {
                let t = self.dev.persona.templates.show_file_systems.clone();
                let out = self.dev.render(&t);
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::ShowRun => {
                let s = self.dev.state();
                let body = self.config_text(&s.running, &s.version);
                let out = format!(
                    "Building configuration...\n\nCurrent configuration : {} bytes\n{body}",
                    body.len()
                );
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::ShowStart => {
                let s = self.dev.state();
                let body = self.config_text(&s.startup, &s.version);
                let out = format!(
                    "Using {} out of {} bytes\n{body}",
                    body.len(),
                    self.dev.persona.nvram_size
                );
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::TermLength => match arg(0).parse::<u32>() {
                Ok(n) if n <= 512 => self.term_length = n,
                _ => self.write(&caret(arg(0))).await?,
            },
            Cmd::TermWidth => match arg(0).parse::<u32>() {
                Ok(n) if n <= 512 => {}
                _ => self.write(&caret(arg(0))).await?,
            },
            Cmd::Configure => {
                let banner = if nxos {
                    "Enter configuration commands, one per line. End with CNTL/Z.\r\n"
                } else {
                    "Enter configuration commands, one per line.  End with CNTL/Z.\r\n"
                };
                self.write(banner).await?;
                self.mode = Mode::Config;
            }
            Cmd::Copy => {
                let vrf = args.get(2).map(String::as_str);
                return self.copy(arg(0), arg(1), vrf, &caret(arg(1))).await;
            }
            Cmd::Verify => self.verify(arg(0), args.get(1).map(String::as_str)).await?,
            Cmd::Delete => {
                let (force, path) = if arg(0).eq_ignore_ascii_case("/force") {
                    (true, arg(1))
                } else {
                    (false, arg(0))
                };
                if path.is_empty() {
                    self.write(&ParseError::Incomplete.render_as(nxos, prompt_len))
                        .await?;
                } else {
                    self.delete(path, force).await?;
                }
            }
            Cmd::Dir => match self.dir_listing(args.first().map(String::as_str)) {
                Ok(text) => self.show(&text, filter.as_ref()).await?,
                Err(e) => self.write(&e).await?,
            },
            Cmd::Write => {
                let what = arg(0).to_ascii_lowercase();
                if what.is_empty() || "memory".starts_with(&what) {
                    self.save_config().await?;
                    self.write("[OK]\r\n").await?;
                } else {
                    self.write(&caret(arg(0))).await?;
                }
            }
            Cmd::Reload => return self.reload().await,
            Cmd::InstallAdd => {
                let known = ["activate", "commit", "prompt-level", "none"];
                if let Some(bad) = args[1..]
                    .iter()
                    .find(|a| !known.contains(&a.to_ascii_lowercase().as_str()))
                {
                    self.write(&caret(bad)).await?;
                    return Ok(Flow::Continue);
                }
                let rest: Vec<String> = args[1..].iter().map(|a| a.to_ascii_lowercase()).collect();
                return self.install_add(arg(0), &rest).await;
            }
            Cmd::InstallRemoveInactive => self.install_remove_inactive().await?,
            Cmd::InstallActivate => return self.install_activate(&args).await,
            Cmd::InstallCommit => self.install_commit().await?,
            Cmd::InstallAbort => return self.install_abort(&args).await,
            Cmd::ShowFileMd5 => self.show_file_md5(arg(0)).await?,
            Cmd::InstallAll => {
                let rest = &args[1..];
                if let Some(bad) = rest
                    .iter()
                    .find(|w| !w.eq_ignore_ascii_case("non-disruptive"))
                {
                    self.write(&caret(bad)).await?;
                    return Ok(Flow::Continue);
                }
                return self.install_all(arg(0), !rest.is_empty()).await;
            }
            Cmd::InstallAllKickstart => return self.install_all_kickstart(arg(0), arg(1)).await,
            Cmd::InstallAllSystemKickstart => {
                return self.install_all_kickstart(arg(1), arg(0)).await;
            }
            Cmd::TermDontAsk => self.dont_ask = true,
            Cmd::BootNxos => self.boot_nxos(arg(0)).await?,
            Cmd::BootKickstart | Cmd::BootSystem
                if kickstart && (args.len() > 2 || !valid_sup(args.get(1).map(String::as_str))) =>
            {
                self.write(&caret(arg(1))).await?;
            }
            Cmd::BootKickstart => self.boot_kickstart_or_system(arg(0), true).await?,
            Cmd::BootSystem if kickstart => self.boot_kickstart_or_system(arg(0), false).await?,
            Cmd::NoBootKickstart => self.dev.update(|s| s.running.boot_kickstart = None),
            Cmd::NoBootSystem if kickstart => self.dev.update(|s| s.running.boot_system.clear()),
            Cmd::ShowInstallSummary => {
                let out = self.install_summary();
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::ShowIssuStateDetail => {
                let out = self.issu_state_detail();
                self.show(&out, filter.as_ref()).await?;
            }
            Cmd::Hostname => {
                let name = arg(0);
                if name.len() <= 63
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                {
                    let name = name.to_string();
                    self.dev.update(|s| s.running.hostname = name);
                } else {
                    self.write(&caret(name)).await?;
                }
            }
            Cmd::BootSystem => {
                // `boot system [switch all] flash:a.bin[;flash:b.bin]`
                let words: Vec<&str> = args.iter().map(String::as_str).collect();
                // Which stack members: `switch all`, `switch N`, or (none named) the active.
                let (members, spec) = match words.as_slice() {
                    [s, a, rest @ ..] if s.eq_ignore_ascii_case("switch") && !rest.is_empty() => {
                        (Some(a.to_ascii_lowercase()), rest.join(" "))
                    }
                    _ => (None, words.join(" ")),
                };
                let slots: Vec<u32> = self
                    .dev
                    .persona
                    .members
                    .as_ref()
                    .map(|m| m.slots.clone())
                    .unwrap_or_default();
                let chosen: Option<Vec<u32>> = match members.as_deref() {
                    None => Some(Vec::new()),
                    Some("all") => Some(slots.clone()),
                    Some(n) => n
                        .parse::<u32>()
                        .ok()
                        .filter(|n| slots.contains(n) || (slots.is_empty() && *n == 1))
                        .map(|n| vec![n]),
                };
                let Some(chosen) = chosen else {
                    self.write(&caret(arg(1))).await?;
                    return Ok(Flow::Continue);
                };
                let active = self.dev.active_slot();
                let sets_active = chosen.is_empty() || active.is_none_or(|a| chosen.contains(&a));
                let others: Vec<u32> = chosen
                    .iter()
                    .copied()
                    .filter(|n| Some(*n) != active)
                    .collect();
                let entries: Vec<String> = spec
                    .split(';')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect();
                if entries.iter().any(|e| !e.contains(':')) {
                    self.write(&caret(arg(0))).await?;
                } else {
                    let immediate = self.dev.persona.boot_system_immediate;
                    self.dev.update(|s| {
                        for m in s.members.iter_mut().filter(|m| others.contains(&m.number)) {
                            m.boot_variable = entries.clone();
                        }
                        if !sets_active {
                            return;
                        }
                        if immediate {
                            s.running.boot_system = entries.clone();
                            s.boot_variable = entries;
                        } else {
                            s.running.boot_system.extend(entries);
                        }
                    });
                }
            }
            Cmd::NoBootSystem => {
                let target = args.last().cloned();
                let immediate = self.dev.persona.boot_system_immediate;
                self.dev.update(|s| {
                    match &target {
                        Some(t) => s.running.boot_system.retain(|b| b != t),
                        None => s.running.boot_system.clear(),
                    }
                    if immediate {
                        s.boot_variable = s.running.boot_system.clone();
                    }
                });
            }
            Cmd::ConfigRegister => {
                let v = arg(0).to_ascii_lowercase();
                let hex = v.strip_prefix("0x").unwrap_or(&v);
                match u16::from_str_radix(hex, 16) {
                    Ok(n) => self
                        .dev
                        .update(|s| s.running.config_register = format!("0x{n:X}")),
                    Err(_) => self.write(&caret(arg(0))).await?,
                }
            }
            Cmd::TftpBlocksize => match arg(0).parse::<u16>() {
                Ok(n) if (512..=8192).contains(&n) => {
                    self.dev.update(|s| s.running.tftp_blocksize = Some(n))
                }
                _ => self.write(&caret(arg(0))).await?,
            },
            Cmd::NoTftpBlocksize => self.dev.update(|s| s.running.tftp_blocksize = None),
            Cmd::FtpUsername => {
                let u = arg(0).to_string();
                self.dev.update(|s| s.running.ftp_username = Some(u));
            }
            Cmd::NoFtpUsername => self.dev.update(|s| s.running.ftp_username = None),
            Cmd::FtpPassword => {
                // `ip ftp password [0] SECRET`
                let pw = if args.len() == 2 && arg(0) == "0" {
                    arg(1)
                } else if args.len() == 2 {
                    self.write(&caret(arg(1))).await?;
                    return Ok(Flow::Continue);
                } else {
                    arg(0)
                };
                let pw = pw.to_string();
                self.dev.update(|s| s.running.ftp_password = Some(pw));
            }
            Cmd::NoFtpPassword => self.dev.update(|s| s.running.ftp_password = None),
            Cmd::FtpPassive => self.dev.update(|s| s.running.ftp_passive = true),
            Cmd::NoFtpPassive => self.dev.update(|s| s.running.ftp_passive = false),
            Cmd::FilePrompt => {
                let v = arg(0).to_ascii_lowercase();
                let choice = ["alert", "noisy", "quiet"]
                    .into_iter()
                    .find(|c| !v.is_empty() && c.starts_with(v.as_str()));
                match (v.is_empty(), choice) {
                    (true, _) => self.dev.update(|s| s.running.file_prompt = "alert".into()),
                    (false, Some(c)) => self.dev.update(|s| s.running.file_prompt = c.into()),
                    (false, None) => self.write(&caret(arg(0))).await?,
                }
            }
            Cmd::End => {
                self.mode = Mode::Privileged;
                self.sub_interface = None;
            }
            Cmd::Do => {
                let rest = command.trim_start();
                let rest =
                    rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..].trim_start();
                let offset = prompt_len + (command.len() - rest.len());
                let back = self.mode;
                self.mode = Mode::Privileged;
                let flow = Box::pin(self.execute_inner(rest, offset)).await;
                if self.mode == Mode::Privileged {
                    self.mode = back;
                }
                return flow;
            }
            other => {
                return Ok(self
                    .check_command(other, command, &args, filter.as_ref(), prompt_len)
                    .await?
                    .unwrap_or(Flow::Continue));
            }
        }
        Ok(Flow::Continue)
    }

    /// A command about stack members or supervisors (`sim::members`), matched with
    /// abbreviations, on a persona with `members:`.
    fn members_command(&self, line: &str) -> Option<String> {
        self.dev.persona.members.as_ref()?;
        let typed: Vec<String> = line
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let key = super::members::COMMANDS.iter().find(|key| {
            let words: Vec<&str> = key.split_whitespace().collect();
            words.len() == typed.len()
                && words
                    .iter()
                    .zip(&typed)
                    .all(|(w, t)| !t.is_empty() && w.starts_with(t.as_str()))
        })?;
        super::members::command(&self.dev, key)
    }

    /// A command of the persona's `commands:` map, matched with abbreviations.
    fn persona_command(&self, line: &str) -> Option<String> {
        let typed: Vec<String> = line
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        self.dev.persona.commands.iter().find_map(|(key, text)| {
            let words: Vec<&str> = key.split_whitespace().collect();
            (words.len() == typed.len()
                && words
                    .iter()
                    .zip(&typed)
                    .all(|(w, t)| w.to_ascii_lowercase().starts_with(t.as_str())))
            .then(|| text.clone())
        })
    }

    async fn show(&mut self, text: &str, filter: Option<&Filter>) -> Result<(), ()> {
        if filter.is_some_and(|f| f.kind == FilterKind::Json) {
            return self
                .write("% JSON output of this command is not simulated by fleetup lab\r\n")
                .await;
        }
        let text = match filter {
            Some(f) => f.apply(text),
            None => text.to_string(),
        };
        let text = crlf(&text);
        if self.term_length == 0 {
            return self.write(&text).await;
        }
        // A screenful is the terminal length less the --More-- line.
        let page = (self.term_length as usize).saturating_sub(1).max(1);
        let lines: Vec<&str> = text.split_inclusive("\r\n").collect();
        let mut at = 0;
        let mut budget = page;
        loop {
            let end = (at + budget).min(lines.len());
            self.write(&lines[at..end].concat()).await?;
            at = end;
            if at >= lines.len() {
                return Ok(());
            }
            self.write(" --More-- ").await?;
            let key = self.read_key().await.ok_or(())?;
            self.write(&format!("{0}{1}{0}", "\x08".repeat(10), " ".repeat(10)))
                .await?;
            budget = match key {
                b' ' => page,
                b'\r' | b'\n' => 1,
                _ => return Ok(()),
            };
        }
    }

    async fn enable(&mut self) -> Result<(), ()> {
        if self.mode != Mode::User {
            return Ok(());
        }
        for _ in 0..3 {
            self.write("Password: ").await?;
            let Some(pw) = self.read_text(false).await else {
                return Err(());
            };
            if pw == self.lab.enable_secret {
                self.mode = Mode::Privileged;
                return Ok(());
            }
        }
        self.write("% Bad secrets\r\n\r\n").await
    }

    fn config_text(&self, c: &ConfigBits, version: &str) -> String {
        if self.nxos() {
            let mut t = format!(
                "\n!Command: show running-config\n!No configuration change since last restart\n\nversion {version} Bios:version 07.68\nhostname {}\n",
                c.hostname
            );
            t.push_str(&format!(
                "username {} password 5 $5$LAB$lab  role network-admin\nno feature telnet\nfeature ssh\n\n",
                self.lab.username
            ));
            t.push_str(&format!(
                "interface mgmt0\n  vrf member management\n  ip address {}/24\n",
                self.dev.ip
            ));
            t.push('\n');
            t.push_str(&self.interface_sections(c));
            for l in &c.lines {
                t.push_str(&format!("{l}\n"));
            }
            if self.dev.persona.kickstart_image.is_some() {
                // As a Nexus with separate images keeps them: one line per variable and
                // supervisor, `bootflash:/FILE` however it was typed.
                let nx = |e: &str| {
                    let file = e.rsplit(['/', ':']).next().unwrap_or(e);
                    format!("{}:/{file}", self.dev.persona.filesystem)
                };
                if let Some(k) = &c.boot_kickstart {
                    t.push_str(&format!("boot kickstart {} sup-1\n", nx(k)));
                }
                if let Some(b) = c.boot_system.first() {
                    t.push_str(&format!("boot system {} sup-1\n", nx(b)));
                }
                return t;
            }
            for b in &c.boot_system {
                t.push_str(&format!("boot nxos {b}\n"));
            }
            return t;
        }
        let major = version.split('(').next().unwrap_or(version);
        let mut t = String::new();
        t.push_str("!\n");
        t.push_str(&format!("version {major}\n"));
        t.push_str("no service pad\nservice timestamps debug datetime msec\nservice timestamps log datetime msec\nno service password-encryption\n!\n");
        t.push_str(&format!("hostname {}\n!\n", c.hostname));
        t.push_str("boot-start-marker\n");
        if self.dev.persona.boot_system_immediate {
            if !c.boot_system.is_empty() {
                t.push_str(&format!("boot system {}\n", c.boot_system.join(";")));
            }
        } else {
            for b in &c.boot_system {
                t.push_str(&format!("boot system {b}\n"));
            }
        }
        t.push_str("boot-end-marker\n!\n");
        t.push_str("enable secret 5 $1$lab0$M2yGbZcrD0sbMVNpbNlpN/\n!\n");
        t.push_str(&format!(
            "username {} privilege 1 secret 5 $1$lab1$Kd1Yq6gF0m2o8y1Hn0W3p/\n",
            self.lab.username
        ));
        t.push_str("no aaa new-model\nsystem mtu routing 1500\n!\n");
        if c.file_prompt != "alert" {
            t.push_str(&format!("file prompt {}\n", c.file_prompt));
        }
        if let Some(b) = c.tftp_blocksize {
            t.push_str(&format!("ip tftp blocksize {b}\n"));
        }
        if let Some(u) = &c.ftp_username {
            t.push_str(&format!("ip ftp username {u}\n"));
        }
        if let Some(p) = &c.ftp_password {
            t.push_str(&format!("ip ftp password {p}\n"));
        }
        if !c.ftp_passive {
            t.push_str("no ip ftp passive\n");
        }
        for l in &c.lines {
            t.push_str(&format!("{l}\n"));
        }
        t.push_str("ip ssh version 2\n!\n");
        t.push_str(&self.interface_sections(c));
        t.push_str(&format!(
            "interface {}\n ip address {} 255.255.255.0\n!\n",
            self.dev.persona.mgmt_interface, self.dev.ip
        ));
        if c.config_register != "0xF" {
            t.push_str(&format!("config-register {}\n!\n", c.config_register));
        }
        t.push_str("line con 0\nline vty 0 4\n login local\n transport input ssh\nline vty 5 15\n login local\n transport input ssh\n!\nend\n");
        t
    }

    /// `write memory` and `copy running-config startup-config`: startup becomes running, and
    /// `config.text` is written to flash as a Catalyst does.
    async fn save_config(&mut self) -> Result<(), ()> {
        self.write("Building configuration...\r\n").await?;
        self.store_config();
        Ok(())
    }

    fn store_config(&self) {
        let s = self.dev.state();
        let text = self.config_text(&s.running, &s.version);
        // A Catalyst keeps its startup configuration in flash as config.text.
        if !self.nxos()
            && let Err(e) = std::fs::write(self.dev.flash_path("config.text"), text)
        {
            tracing::warn!(device = %self.dev.name, error = %e, "cannot write config.text");
        }
        self.dev.update(|s| s.startup = s.running.clone());
    }

    async fn reload(&mut self) -> Result<Flow, ()> {
        if self.nxos() {
            let s = self.dev.state();
            if s.running != s.startup {
                self.write("!!!WARNING! there is unsaved configuration!!!\r\n")
                    .await?;
            }
            if !self
                .nxos_yes("This command will reboot the system. (y/n)?  [n] ")
                .await?
            {
                return Ok(Flow::Continue);
            }
            self.dev.update(|s| {
                s.reload_count += 1;
                s.last_upgrade_issu = false;
            });
            self.dev.request_reload().await;
            return Ok(Flow::Drop);
        }
        let s = self.dev.state();
        if s.running != s.startup {
            loop {
                self.write("\r\nSystem configuration has been modified. Save? [yes/no]: ")
                    .await?;
                let answer = self
                    .read_text(true)
                    .await
                    .ok_or(())?
                    .trim()
                    .to_ascii_lowercase();
                match answer.as_str() {
                    "y" | "ye" | "yes" => {
                        self.save_config().await?;
                        // IOS prints the confirm prompt straight after [OK].
                        self.write("[OK]").await?;
                        break;
                    }
                    "n" | "no" => break,
                    "\u{3}" => return Ok(Flow::Continue),
                    _ => self.write("% Please answer 'yes' or 'no'.").await?,
                }
            }
        }
        self.write("Proceed with reload? [confirm]").await?;
        if !self.confirm().await.ok_or(())? {
            return Ok(Flow::Continue);
        }
        let when = jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%b %e %H:%M:%S%.3f")
            .to_string();
        self.write(&format!(
            "\r\n*{when}: %SYS-5-RELOAD: Reload requested by {} on vty0 ({}). Reload Reason: Reload Command.\r\n",
            self.user, self.peer
        ))
        .await?;
        self.dev.update(|s| {
            s.reload_count += 1;
            s.last_upgrade_issu = false;
        });
        self.dev.request_reload().await;
        Ok(Flow::Drop)
    }

    fn nxos(&self) -> bool {
        self.dev.persona.platform == crate::inventory::Platform::Nxos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names() {
        assert!(is_running("run"));
        assert!(is_running("running-config"));
        assert!(is_running("system:running-config"));
        assert!(!is_running("ru"));
        assert!(is_startup("start"));
        assert!(is_startup("nvram:startup-config"));
        assert!(!is_startup("flash:"));
    }

    #[test]
    fn filters() {
        let f = Filter {
            kind: FilterKind::Include,
            pattern: Some(regex::Regex::new("bytes").unwrap()),
        };
        assert_eq!(
            f.apply("Directory of flash:/\n\n10 bytes total (5 bytes free)\n"),
            "10 bytes total (5 bytes free)\n"
        );
        let f = Filter {
            kind: FilterKind::Begin,
            pattern: Some(regex::Regex::new("^b").unwrap()),
        };
        assert_eq!(f.apply("a\nb\nc"), "b\nc\n");
    }

    #[test]
    fn exec_syntax_needs_privilege_for_configure() {
        let user: Vec<Syntax<Cmd>> = EXEC
            .iter()
            .filter(|(l, _)| *l <= 1)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            parse("conf t", &user).unwrap_err(),
            ParseError::Invalid { at: 0 }
        );
        let all: Vec<Syntax<Cmd>> = EXEC.iter().map(|(_, s)| *s).collect();
        assert_eq!(parse("conf t", &all).unwrap().cmd, Cmd::Configure);
        assert_eq!(parse("wr", &all).unwrap().cmd, Cmd::Write);
        assert_eq!(parse("sh ver", &all).unwrap().cmd, Cmd::ShowVersion);
        assert_eq!(parse("sh flash:", &all).unwrap().cmd, Cmd::ShowFlash);
        assert_eq!(parse("sh boot", &all).unwrap().cmd, Cmd::ShowBoot);
        assert_eq!(parse("term len 0", &all).unwrap().cmd, Cmd::TermLength);
        assert_eq!(
            parse("copy run start", &all).unwrap().args,
            vec!["run", "start"]
        );
    }

    #[test]
    fn config_syntax() {
        assert_eq!(
            parse("boot system flash:x.bin", CONFIG).unwrap().cmd,
            Cmd::BootSystem
        );
        assert_eq!(parse("no boot sys", CONFIG).unwrap().cmd, Cmd::NoBootSystem);
        assert_eq!(
            parse("no ip ftp passive", CONFIG).unwrap().cmd,
            Cmd::NoFtpPassive
        );
        assert_eq!(
            parse("ip tftp blocksize 8192", CONFIG).unwrap().cmd,
            Cmd::TftpBlocksize
        );
        assert_eq!(parse("do wr", CONFIG).unwrap().cmd, Cmd::Do);
    }
}
