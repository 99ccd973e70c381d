//! What automation tools and pre/post checks send besides the upgrade itself: the show commands
//! of `sim::show`, the setup lines of pyATS/unicon (`no logging console`, `line vty 0 4` /
//! `exec-timeout 0`, `terminal session-timeout 0`), `interface X` and `line …` submodes, and
//! global lines kept as typed (`logging …`, `ip tftp source-interface …`).

use super::*;
use crate::sim::show::{self, Ports};

/// Exec commands of every platform (the keyword is `interfaces` on IOS, `interface` on NX-OS).
pub(super) const IOS_CHECKS: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("ip"), Kw("interface"), Kw("brief")],
            cmd: Cmd::ShowIpIntBrief,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("interfaces"), Kw("status")],
            cmd: Cmd::ShowIntStatus,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("cdp"), Kw("neighbors")],
            cmd: Cmd::ShowCdp,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("cdp"), Kw("neighbors"), Kw("detail")],
            cmd: Cmd::ShowCdpDetail,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("lldp"), Kw("neighbors")],
            cmd: Cmd::ShowLldp,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("ip"), Kw("route"), Kw("summary")],
            cmd: Cmd::ShowIpRouteSummary,
        },
    ),
];

pub(super) const NXOS_CHECKS: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("ip"), Kw("interface"), Kw("brief")],
            cmd: Cmd::ShowIpIntBrief,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("interface"), Kw("status")],
            cmd: Cmd::ShowIntStatus,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("cdp"), Kw("neighbors")],
            cmd: Cmd::ShowCdp,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("cdp"), Kw("neighbors"), Kw("detail")],
            cmd: Cmd::ShowCdpDetail,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("lldp"), Kw("neighbors")],
            cmd: Cmd::ShowLldp,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("ip"), Kw("route"), Kw("summary")],
            cmd: Cmd::ShowIpRouteSummary,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("interface"), Kw("brief")],
            cmd: Cmd::ShowIntBrief,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("terminal"), Kw("session-timeout"), Arg],
            cmd: Cmd::TermSessionTimeout,
        },
    ),
    (
        15,
        Syntax {
            toks: &[
                Kw("show"),
                Kw("install"),
                Kw("all"),
                Kw("impact"),
                Kw("nxos"),
                Arg,
                Rest,
            ],
            cmd: Cmd::ShowInstallAllImpact,
        },
    ),
];

/// IOS-XE install mode: the active and committed package sets.
pub(super) const INSTALL_CHECKS: &[(u8, Syntax<Cmd>)] = &[
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("install"), Kw("active")],
            cmd: Cmd::ShowInstallActive,
        },
    ),
    (
        1,
        Syntax {
            toks: &[Kw("show"), Kw("install"), Kw("committed")],
            cmd: Cmd::ShowInstallCommitted,
        },
    ),
];

/// Global configuration lines besides the upgrade's own.
pub(super) const CONFIG_CHECKS: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("interface"), Arg, OptArg],
        cmd: Cmd::Interface,
    },
    Syntax {
        toks: &[Kw("line"), Arg, Rest],
        cmd: Cmd::LineMode,
    },
    Syntax {
        toks: &[Kw("logging"), Arg, Rest],
        cmd: Cmd::Logging,
    },
    Syntax {
        toks: &[Kw("no"), Kw("logging"), Arg, Rest],
        cmd: Cmd::NoLogging,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("tftp"), Kw("source-interface"), Arg, OptArg],
        cmd: Cmd::SourceInterface,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("ftp"), Kw("source-interface"), Arg, OptArg],
        cmd: Cmd::SourceInterface,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("ssh"), Kw("source-interface"), Arg, OptArg],
        cmd: Cmd::SourceInterface,
    },
    Syntax {
        toks: &[
            Kw("ip"),
            Kw("http"),
            Kw("client"),
            Kw("source-interface"),
            Arg,
            OptArg,
        ],
        cmd: Cmd::SourceInterface,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("tftp"), Kw("source-interface"), Rest],
        cmd: Cmd::NoSourceInterface,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("ftp"), Kw("source-interface"), Rest],
        cmd: Cmd::NoSourceInterface,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("ssh"), Kw("source-interface"), Rest],
        cmd: Cmd::NoSourceInterface,
    },
    Syntax {
        toks: &[Kw("ip"), Kw("scp"), Kw("server"), Kw("enable")],
        cmd: Cmd::ScpServer,
    },
    Syntax {
        toks: &[Kw("snmp-server"), Kw("community"), Arg, Rest],
        cmd: Cmd::SnmpCommunity,
    },
    Syntax {
        toks: &[Kw("no"), Kw("snmp-server"), Kw("community"), Arg, Rest],
        cmd: Cmd::NoSnmpCommunity,
    },
    Syntax {
        toks: &[Kw("no"), Kw("ip"), Kw("scp"), Kw("server"), Kw("enable")],
        cmd: Cmd::NoScpServer,
    },
    Syntax {
        toks: &[
            Kw("no"),
            Kw("ip"),
            Kw("http"),
            Kw("client"),
            Kw("source-interface"),
            Rest,
        ],
        cmd: Cmd::NoSourceInterface,
    },
];

/// NX-OS takes `terminal` settings in configuration mode too (unicon sends `terminal width 511`
/// there).
pub(super) const NXOS_CONFIG_CHECKS: &[Syntax<Cmd>] = &[Syntax {
    toks: &[Kw("terminal"), Kw("width"), Arg],
    cmd: Cmd::TermWidth,
}];

/// `interface X` submode.
pub(super) const INTERFACE_MODE: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("description"), Arg, Rest],
        cmd: Cmd::Description,
    },
    Syntax {
        toks: &[Kw("no"), Kw("description"), Rest],
        cmd: Cmd::NoDescription,
    },
    Syntax {
        toks: &[Kw("shutdown")],
        cmd: Cmd::Shutdown,
    },
    Syntax {
        toks: &[Kw("no"), Kw("shutdown")],
        cmd: Cmd::NoShutdown,
    },
    Syntax {
        toks: &[Kw("exit")],
        cmd: Cmd::ExitSub,
    },
    Syntax {
        toks: &[Kw("end")],
        cmd: Cmd::End,
    },
    Syntax {
        toks: &[Kw("do"), Arg, Rest],
        cmd: Cmd::Do,
    },
];

/// `line vty 0 4` / `line console 0` submode: accepted, not kept.
pub(super) const LINE_MODE: &[Syntax<Cmd>] = &[
    Syntax {
        toks: &[Kw("exec-timeout"), Arg, OptArg],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("logging"), Kw("synchronous")],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("transport"), Kw("input"), Rest],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("login"), OptArg],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("length"), Arg],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("width"), Arg],
        cmd: Cmd::LineSetting,
    },
    Syntax {
        toks: &[Kw("exit")],
        cmd: Cmd::ExitSub,
    },
    Syntax {
        toks: &[Kw("end")],
        cmd: Cmd::End,
    },
    Syntax {
        toks: &[Kw("do"), Arg, Rest],
        cmd: Cmd::Do,
    },
];

/// The spelled-out head of a `ip PROTOCOL … source-interface` line, from its protocol word as
/// typed (`tf`, `ftp`, `http`, `ssh`).
fn source_interface_head(protocol: Option<&str>) -> &'static str {
    let p = protocol.unwrap_or_default().to_ascii_lowercase();
    let is = |full: &str| !p.is_empty() && full.starts_with(&p);
    if is("http") {
        "ip http client source-interface"
    } else if is("ssh") {
        "ip ssh source-interface"
    } else if is("ftp") {
        "ip ftp source-interface"
    } else {
        "ip tftp source-interface"
    }
}

/// The key under which a kept global line replaces an earlier one: `logging console` for
/// `[no] logging console informational`, `ip tftp source-interface` for its line.
fn line_key(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let words = match words.first() {
        Some(w) if w.eq_ignore_ascii_case("no") => &words[1..],
        _ => &words[..],
    };
    let keep = match words.first().map(|w| w.to_ascii_lowercase()) {
        Some(w) if w == "logging" => 2,
        Some(w) if w == "snmp-server" => 3,
        _ => words
            .iter()
            .position(|w| w.to_ascii_lowercase().contains("source-interface"))
            .map_or(words.len(), |p| p + 1),
    };
    words[..keep.min(words.len())]
        .join(" ")
        .to_ascii_lowercase()
}

/// Keyword words of a typed line spelled out (`logg cons` -> `logging console`) where the
/// syntax fixed them; the rest as typed.
fn spelled(words: &[&str], full: &[&str]) -> String {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| full.get(i).copied().unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

impl<O: Output> Cli<O> {
    fn ports_text(&self, f: impl FnOnce(&Ports<'_>) -> String) -> String {
        let s = self.dev.state();
        f(&Ports::new(&self.dev.persona, &s, self.dev.ip))
    }

    /// The commands of this file; `Ok(None)` when `cmd` is not one of them.
    pub(super) async fn check_command(
        &mut self,
        cmd: Cmd,
        command: &str,
        args: &[String],
        filter: Option<&Filter>,
        prompt_len: usize,
    ) -> Result<Option<Flow>, ()> {
        let nxos = self.nxos();
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
        match cmd {
            Cmd::ShowIpIntBrief => {
                let t = self.ports_text(|p| p.ip_interface_brief());
                self.show(&t, filter).await?;
            }
            Cmd::ShowIntStatus => {
                let t = self.ports_text(|p| p.interfaces_status());
                self.show(&t, filter).await?;
            }
            Cmd::ShowCdp => {
                let t = self.ports_text(|p| p.cdp_neighbors());
                self.show(&t, filter).await?;
            }
            Cmd::ShowCdpDetail => {
                let t = self.ports_text(|p| p.cdp_neighbors_detail());
                self.show(&t, filter).await?;
            }
            Cmd::ShowLldp => {
                let t = self.ports_text(|p| p.lldp_neighbors());
                self.show(&t, filter).await?;
            }
            Cmd::ShowIpRouteSummary => {
                let t = self.ports_text(|p| p.ip_route_summary());
                self.show(&t, filter).await?;
            }
            Cmd::ShowIntBrief => {
                let t = self.ports_text(|p| p.nxos_interface_brief());
                self.show(&t, filter).await?;
            }
            Cmd::ShowInstallActive => {
                let t = self.install_table("Active", false);
                self.show(&t, filter).await?;
            }
            Cmd::ShowInstallCommitted => {
                let t = self.install_table("Committed", false);
                self.show(&t, filter).await?;
            }
            Cmd::ShowInstallAllImpact => {
                let non_disruptive = args
                    .get(1)
                    .is_some_and(|w| w.eq_ignore_ascii_case("non-disruptive"));
                self.install_all_impact(arg(0), non_disruptive).await?
            }
            Cmd::TermSessionTimeout => {
                if arg(0).parse::<u32>().is_err() {
                    let at = command.rfind(arg(0)).unwrap_or(0);
                    self.write(&ParseError::Invalid { at }.render_as(nxos, prompt_len))
                        .await?;
                }
            }
            Cmd::Interface => {
                let typed = args.join("");
                match show::find_interface(&self.dev.persona, &typed) {
                    Some(name) => {
                        self.sub_interface = Some(name.to_string());
                        self.mode = Mode::ConfigIf;
                    }
                    None => {
                        let at = command.find(arg(0)).unwrap_or(0);
                        self.write(&ParseError::Invalid { at }.render_as(nxos, prompt_len))
                            .await?;
                    }
                }
            }
            Cmd::LineMode => {
                let kind = arg(0).to_ascii_lowercase();
                let console = "console".starts_with(&kind) && kind.len() >= 2;
                let vty = "vty".starts_with(&kind);
                // IOS needs the line numbers; NX-OS has one console and one vty section.
                let numbers_ok = if nxos {
                    args.len() == 1
                } else {
                    args.len() >= 2 && args[1..].iter().all(|a| a.parse::<u16>().is_ok())
                };
                if !(console || vty) || !numbers_ok {
                    let bad = if console || vty {
                        args.get(1).map(String::as_str).unwrap_or(arg(0))
                    } else {
                        arg(0)
                    };
                    if (console || vty) && args.len() == 1 && !nxos {
                        self.write(&ParseError::Incomplete.render_as(nxos, prompt_len))
                            .await?;
                    } else {
                        let at = command.rfind(bad).unwrap_or(0);
                        self.write(&ParseError::Invalid { at }.render_as(nxos, prompt_len))
                            .await?;
                    }
                } else {
                    self.line_prompt = if nxos && console {
                        "config-console"
                    } else {
                        "config-line"
                    };
                    self.mode = Mode::ConfigLine;
                }
            }
            Cmd::Logging => {
                let line = spelled(
                    &command.split_whitespace().collect::<Vec<_>>(),
                    &["logging"],
                );
                self.keep_line(line);
            }
            Cmd::NoLogging => {
                let words: Vec<&str> = command.split_whitespace().collect();
                let line = spelled(&words, &["no", "logging"]);
                self.keep_line(line);
            }
            Cmd::SourceInterface => {
                let typed = args.join("");
                match show::find_interface(&self.dev.persona, &typed) {
                    Some(name) => {
                        let words: Vec<&str> = command.split_whitespace().collect();
                        let head = source_interface_head(words.get(1).copied());
                        self.keep_line(format!("{head} {name}"));
                    }
                    None => {
                        let at = command.rfind(arg(0)).unwrap_or(0);
                        self.write(&ParseError::Invalid { at }.render_as(nxos, prompt_len))
                            .await?;
                    }
                }
            }
            Cmd::NoSourceInterface => {
                let words: Vec<&str> = command.split_whitespace().collect();
                let key = source_interface_head(words.get(2).copied());
                self.dev
                    .update(|s| s.running.lines.retain(|l| line_key(l) != key));
            }
            Cmd::ScpServer => self.keep_line(crate::sim::scp_sink::ENABLE_LINE.to_string()),
            // A community is a secret of the configuration: the lab keeps it like any line.
            Cmd::SnmpCommunity => {
                let words: Vec<&str> = command.split_whitespace().collect();
                self.keep_line(spelled(&words, &["snmp-server", "community"]));
            }
            Cmd::NoSnmpCommunity => {
                let words: Vec<&str> = command.split_whitespace().collect();
                let key = line_key(&spelled(&words, &["no", "snmp-server", "community"]));
                self.dev
                    .update(|s| s.running.lines.retain(|l| line_key(l) != key));
            }
            Cmd::NoScpServer => {
                let key = line_key(crate::sim::scp_sink::ENABLE_LINE);
                self.dev
                    .update(|s| s.running.lines.retain(|l| line_key(l) != key));
            }
            Cmd::Description => {
                let text = command
                    .trim_start()
                    .split_once(char::is_whitespace)
                    .map(|(_, rest)| rest.trim().to_string())
                    .unwrap_or_default();
                self.set_interface(|c| c.description = Some(text));
            }
            Cmd::NoDescription => self.set_interface(|c| c.description = Some(String::new())),
            Cmd::Shutdown => self.set_interface(|c| c.shutdown = true),
            Cmd::NoShutdown => self.set_interface(|c| c.shutdown = false),
            Cmd::LineSetting => {}
            Cmd::ExitSub => {
                self.mode = Mode::Config;
                self.sub_interface = None;
            }
            _ => return Ok(None),
        }
        Ok(Some(Flow::Continue))
    }

    /// Keep a global line in the running configuration, replacing the one with its key.
    fn keep_line(&self, line: String) {
        let key = line_key(&line);
        self.dev.update(|s| {
            s.running.lines.retain(|l| line_key(l) != key);
            // `logging on` style defaults are not printed; their `no` form is.
            s.running.lines.push(line);
        });
    }

    fn set_interface(&self, f: impl FnOnce(&mut crate::sim::device::InterfaceConfig)) {
        let Some(name) = self.sub_interface.clone() else {
            return;
        };
        self.dev.update(|s| {
            let c = s.running.interfaces.entry(name).or_default();
            f(c);
        });
    }

    /// The interface sections of the running configuration.
    pub(super) fn interface_sections(&self, c: &ConfigBits) -> String {
        let indent = if self.nxos() { "  " } else { " " };
        let mut t = String::new();
        for i in &self.dev.persona.interfaces {
            let cfg = c.interfaces.get(&i.name).cloned().unwrap_or_default();
            let description = cfg.description.unwrap_or_else(|| i.description.clone());
            t.push_str(&format!("interface {}\n", i.name));
            if !description.is_empty() {
                t.push_str(&format!("{indent}description {description}\n"));
            }
            if let Some(ip) = &i.ip {
                if self.nxos() {
                    t.push_str(&format!(
                        "{indent}no switchport\n{indent}ip address {ip}/30\n"
                    ));
                } else {
                    t.push_str(&format!("{indent}ip address {ip} 255.255.255.252\n"));
                }
            } else if i.vlan == "trunk" {
                t.push_str(&format!("{indent}switchport mode trunk\n"));
            } else if i.vlan != "1" && i.vlan != "routed" {
                t.push_str(&format!("{indent}switchport access vlan {}\n", i.vlan));
            }
            if cfg.shutdown {
                t.push_str(&format!("{indent}shutdown\n"));
            } else if self.nxos() {
                t.push_str(&format!("{indent}no shutdown\n"));
            }
            t.push_str(if self.nxos() { "\n" } else { "!\n" });
        }
        t
    }

    /// NX-OS `show version | json`.
    pub(super) fn version_json(&self) -> String {
        let vars = self.dev.template_vars();
        let s = self.dev.state();
        let up = (crate::sim::device::now_unix() - s.booted_at).max(0);
        let ctime = jiff::Timestamp::from_second(s.booted_at)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%a %b %e %H:%M:%S %Y")
            .to_string();
        show::nxos_version_json(&vars, &self.dev.persona.model, &ctime, up)
    }

    /// NX-OS `show install all impact nxos bootflash:FILE [non-disruptive]`: the checks and
    /// the upgrade table of `install all`, without installing.
    async fn install_all_impact(&mut self, path: &str, non_disruptive: bool) -> Result<(), ()> {
        let head = "Installer will perform impact only check. Please wait.\r\n";
        match self.nxos_compat_check(head, path, non_disruptive) {
            Ok((text, _, _)) | Err(text) => self.write(&text).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_lines_replace_their_own_kind() {
        assert_eq!(line_key("no logging console"), "logging console");
        assert_eq!(line_key("logging console informational"), "logging console");
        assert_eq!(
            line_key("ip tftp source-interface Vlan1"),
            "ip tftp source-interface"
        );
        assert_eq!(
            line_key("ip http client source-interface GigabitEthernet0/0"),
            "ip http client source-interface"
        );
        assert_eq!(
            spelled(&["logg", "cons"], &["logging"]),
            "logging cons".to_string()
        );
    }

    #[test]
    fn setup_lines_parse() {
        let config: Vec<Syntax<Cmd>> = CONFIG.iter().chain(CONFIG_CHECKS).copied().collect();
        assert_eq!(
            parse("no logging console", &config).unwrap().cmd,
            Cmd::NoLogging
        );
        assert_eq!(parse("line vty 0 4", &config).unwrap().cmd, Cmd::LineMode);
        assert_eq!(parse("int gi1/0/1", &config).unwrap().cmd, Cmd::Interface);
        assert_eq!(
            parse("ip tftp source-interface Vlan1", &config)
                .unwrap()
                .cmd,
            Cmd::SourceInterface
        );
        assert_eq!(
            parse("exec-timeout 0", LINE_MODE).unwrap().cmd,
            Cmd::LineSetting
        );
        assert_eq!(parse("shut", INTERFACE_MODE).unwrap().cmd, Cmd::Shutdown);
    }
}
