//! IOS command matching: keywords may be abbreviated to any unique prefix (`sh ver`, `conf t`,
//! `wr`), and a refused line gets the same answer a real device gives (`% Invalid input detected
//! at '^' marker.` with the caret under the first character that matched nothing,
//! `% Ambiguous command:  "s"`, `% Incomplete command.`). Pure: no I/O.

/// One element of a command's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    Kw(&'static str),
    /// One required word, kept as typed.
    Arg,
    /// One optional word at the end.
    OptArg,
    /// Any number of words (possibly none) at the end.
    Rest,
}

/// What a device can do in one mode.
#[derive(Debug, Clone, Copy)]
pub(super) struct Syntax<C: Copy> {
    pub toks: &'static [Tok],
    pub cmd: C,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Parsed<C> {
    pub cmd: C,
    /// The words at `Arg`/`OptArg`/`Rest` positions, in order.
    pub args: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Byte offset (in the typed line) of the character the caret points at.
    Invalid {
        at: usize,
    },
    Ambiguous {
        typed: String,
    },
    Incomplete,
}

impl ParseError {
    /// The text a device prints, given the length of the prompt in front of the typed line.
    pub(super) fn render(&self, prompt_len: usize) -> String {
        match self {
            ParseError::Invalid { at } => format!(
                "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
                " ".repeat(prompt_len + at)
            ),
            ParseError::Ambiguous { typed } => format!("% Ambiguous command:  \"{typed}\"\r\n"),
            ParseError::Incomplete => "% Incomplete command.\r\n\r\n".to_string(),
        }
    }

    /// The same, in the words of NX-OS.
    pub(super) fn render_nxos(&self, prompt_len: usize) -> String {
        match self {
            ParseError::Invalid { at } => format!(
                "{}^\r\n% Invalid command at '^' marker.\r\n",
                " ".repeat(prompt_len + at)
            ),
            ParseError::Ambiguous { .. } => "% Ambiguous command at '^' marker.\r\n".to_string(),
            ParseError::Incomplete => "% Incomplete command at '^' marker.\r\n".to_string(),
        }
    }

    pub(super) fn render_as(&self, nxos: bool, prompt_len: usize) -> String {
        if nxos {
            self.render_nxos(prompt_len)
        } else {
            self.render(prompt_len)
        }
    }
}

/// Split a line into words with their byte offsets.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes()
        .zip(b.bytes())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count()
}

/// Match a typed line against a mode's syntax. An empty line never reaches here.
pub(super) fn parse<C: Copy>(line: &str, syntax: &[Syntax<C>]) -> Result<Parsed<C>, ParseError> {
    let ws = words(line);
    // Each candidate keeps its position in its token list and the args gathered so far.
    let mut cands: Vec<(usize, usize, Vec<String>)> =
        (0..syntax.len()).map(|i| (i, 0, Vec::new())).collect();
    for (offset, word) in &ws {
        let lower = word.to_ascii_lowercase();
        // Keywords the word could mean at this position.
        let mut kws: Vec<&'static str> = Vec::new();
        let mut best_prefix = 0;
        let mut any_arg = false;
        for (si, pos, _) in &cands {
            match syntax[*si].toks.get(*pos) {
                Some(Tok::Kw(k)) => {
                    if k.starts_with(lower.as_str()) {
                        if !kws.contains(k) {
                            kws.push(k);
                        }
                    } else {
                        best_prefix = best_prefix.max(common_prefix(k, &lower));
                    }
                }
                Some(Tok::Arg | Tok::OptArg | Tok::Rest) => any_arg = true,
                None => {}
            }
        }
        let exact = kws.iter().find(|k| **k == lower).copied();
        let chosen: Option<&'static str> = match (exact, kws.len()) {
            (Some(k), _) => Some(k),
            (None, 1) => Some(kws[0]),
            (None, 0) => None,
            (None, _) => {
                if any_arg {
                    None
                } else {
                    return Err(ParseError::Ambiguous {
                        typed: line.trim().to_string(),
                    });
                }
            }
        };
        let mut next = Vec::new();
        for (si, pos, mut args) in cands {
            match syntax[si].toks.get(pos) {
                Some(Tok::Kw(k)) if Some(*k) == chosen => next.push((si, pos + 1, args)),
                Some(Tok::Arg | Tok::OptArg) if chosen.is_none() => {
                    args.push(word.to_string());
                    next.push((si, pos + 1, args));
                }
                Some(Tok::Rest) if chosen.is_none() => {
                    args.push(word.to_string());
                    next.push((si, pos, args));
                }
                _ => {}
            }
        }
        if next.is_empty() {
            let at = offset + best_prefix.min(word.len().saturating_sub(1));
            return Err(ParseError::Invalid { at });
        }
        cands = next;
    }
    for (si, pos, args) in cands {
        let rest = &syntax[si].toks[pos..];
        if rest.iter().all(|t| matches!(t, Tok::OptArg | Tok::Rest)) {
            return Ok(Parsed {
                cmd: syntax[si].cmd,
                args,
            });
        }
    }
    Err(ParseError::Incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Tok::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum C {
        ShowVersion,
        ShowRun,
        Copy,
        Conf,
        Verify,
        Set,
    }

    const SYN: &[Syntax<C>] = &[
        Syntax {
            toks: &[Kw("show"), Kw("version")],
            cmd: C::ShowVersion,
        },
        Syntax {
            toks: &[Kw("show"), Kw("running-config")],
            cmd: C::ShowRun,
        },
        Syntax {
            toks: &[Kw("copy"), Arg, Arg],
            cmd: C::Copy,
        },
        Syntax {
            toks: &[Kw("configure"), Kw("terminal")],
            cmd: C::Conf,
        },
        Syntax {
            toks: &[Kw("verify"), Kw("/md5"), Arg, OptArg],
            cmd: C::Verify,
        },
        Syntax {
            toks: &[Kw("set"), Rest],
            cmd: C::Set,
        },
        Syntax {
            toks: &[Kw("setup")],
            cmd: C::Set,
        },
    ];

    #[test]
    fn abbreviations() {
        assert_eq!(parse("sh ver", SYN).unwrap().cmd, C::ShowVersion);
        assert_eq!(parse("  show   run ", SYN).unwrap().cmd, C::ShowRun);
        assert_eq!(parse("conf t", SYN).unwrap().cmd, C::Conf);
        let p = parse("copy tftp://1.2.3.4/x flash:", SYN).unwrap();
        assert_eq!(p.args, vec!["tftp://1.2.3.4/x", "flash:"]);
        let p = parse("verify /md5 flash:x", SYN).unwrap();
        assert_eq!(p.args, vec!["flash:x"]);
        let p = parse("set a b c", SYN).unwrap();
        assert_eq!((p.cmd, p.args.len()), (C::Set, 3));
    }

    #[test]
    fn caret_points_at_first_unmatched_character() {
        let err = parse("show verr", SYN).unwrap_err();
        assert_eq!(err, ParseError::Invalid { at: 8 });
        assert_eq!(
            err.render(7),
            format!(
                "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
                " ".repeat(15)
            )
        );
        assert_eq!(
            parse("bogus", SYN).unwrap_err(),
            ParseError::Invalid { at: 0 }
        );
        assert_eq!(
            parse("show version extra", SYN).unwrap_err(),
            ParseError::Invalid { at: 13 }
        );
    }

    #[test]
    fn ambiguous_and_incomplete() {
        assert_eq!(
            parse("s", SYN).unwrap_err(),
            ParseError::Ambiguous { typed: "s".into() }
        );
        assert_eq!(parse("show", SYN).unwrap_err(), ParseError::Incomplete);
        assert_eq!(parse("copy a", SYN).unwrap_err(), ParseError::Incomplete);
        assert_eq!(
            ParseError::Ambiguous { typed: "s".into() }.render(0),
            "% Ambiguous command:  \"s\"\r\n"
        );
    }
}
