//! The terminal line discipline of a vty: echo, backspace, CR/LF handling, Ctrl-C and Ctrl-Z.
//! Pure: bytes in, echo bytes and completed lines out; the SSH layer moves the bytes.
//!
//! Bytes are consumed only up to the end of the line being read, so that type-ahead (a client
//! sending `enable\nsecret\n` in one packet) is echoed according to the mode of the prompt that
//! actually reads it: the password after `Password:` is never echoed.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Line {
    Text(String),
    /// Ctrl-C: abandon the line (and leave configuration mode).
    Interrupt,
    /// Ctrl-Z: end of configuration mode.
    End,
}

#[derive(Debug, Default)]
pub(super) struct LineEditor {
    pending: VecDeque<u8>,
    current: Vec<u8>,
    /// A CR ended the last line: a directly following LF belongs to it.
    after_cr: bool,
    /// Inside an escape sequence (arrow keys): ignored.
    escape: u8,
}

impl LineEditor {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.pending.extend(bytes);
    }

    pub(super) fn peek_key(&self) -> Option<u8> {
        self.pending.front().copied()
    }

    /// Take one raw byte (a `[confirm]` or `--More--` answer), honouring CR LF pairs.
    pub(super) fn next_key(&mut self) -> Option<u8> {
        loop {
            let b = self.pending.pop_front()?;
            if b == b'\n' && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = b == b'\r';
            return Some(b);
        }
    }

    /// Process buffered input until a line is complete. `echo` is appended to with what the
    /// terminal shows; nothing of a hidden line is shown, only the final newline.
    pub(super) fn next_line(&mut self, show: bool, echo: &mut Vec<u8>) -> Option<Line> {
        while let Some(b) = self.pending.pop_front() {
            if self.escape > 0 {
                // ESC [ X: two more bytes after ESC; anything else ends the sequence early.
                self.escape -= 1;
                if self.escape == 1 && b != b'[' {
                    self.escape = 0;
                }
                continue;
            }
            if b == b'\n' && self.after_cr {
                self.after_cr = false;
                continue;
            }
            self.after_cr = false;
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    echo.extend_from_slice(b"\r\n");
                    let text = String::from_utf8_lossy(&self.current).into_owned();
                    self.current.clear();
                    return Some(Line::Text(text));
                }
                0x03 => {
                    self.current.clear();
                    echo.extend_from_slice(b"\r\n");
                    return Some(Line::Interrupt);
                }
                0x1a => {
                    self.current.clear();
                    echo.extend_from_slice(b"^Z\r\n");
                    return Some(Line::End);
                }
                0x08 | 0x7f if self.current.pop().is_some() && show => {
                    echo.extend_from_slice(b"\x08 \x08");
                }
                0x15 => {
                    // Ctrl-U: erase the line.
                    if show {
                        for _ in 0..self.current.len() {
                            echo.extend_from_slice(b"\x08 \x08");
                        }
                    }
                    self.current.clear();
                }
                0x1b => self.escape = 2,
                b'\t' => {
                    self.current.push(b' ');
                    if show {
                        echo.push(b' ');
                    }
                }
                0x20..=0x7e if self.current.len() < 4096 => {
                    self.current.push(b);
                    if show {
                        echo.push(b);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(editor: &mut LineEditor, show: bool) -> (Vec<Line>, String) {
        let mut echo = Vec::new();
        let mut out = Vec::new();
        while let Some(l) = editor.next_line(show, &mut echo) {
            out.push(l);
        }
        (out, String::from_utf8(echo).unwrap())
    }

    #[test]
    fn crlf_is_one_line_and_echoed() {
        let mut e = LineEditor::new();
        e.push(b"show ver\r\nterm len 0\r");
        let (l, echo) = lines(&mut e, true);
        assert_eq!(
            l,
            vec![
                Line::Text("show ver".into()),
                Line::Text("term len 0".into())
            ]
        );
        assert_eq!(echo, "show ver\r\nterm len 0\r\n");
        e.push(b"\nx\n");
        let (l, _) = lines(&mut e, true);
        assert_eq!(l, vec![Line::Text("x".into())]);
    }

    #[test]
    fn hidden_lines_are_not_echoed_and_type_ahead_waits() {
        let mut e = LineEditor::new();
        e.push(b"enable\nsecret\n");
        let mut echo = Vec::new();
        assert_eq!(
            e.next_line(true, &mut echo),
            Some(Line::Text("enable".into()))
        );
        assert_eq!(e.peek_key(), Some(b's'));
        assert_eq!(
            e.next_line(false, &mut echo),
            Some(Line::Text("secret".into()))
        );
        assert_eq!(String::from_utf8(echo).unwrap(), "enable\r\n\r\n");
    }

    #[test]
    fn backspace_control_keys_and_arrows() {
        let mut e = LineEditor::new();
        e.push(b"shoz\x7fw\x1b[Aver\x03conf t\x1a");
        let (l, echo) = lines(&mut e, true);
        assert_eq!(
            l,
            vec![Line::Interrupt, Line::End],
            "ctrl-c abandons 'show ver', ctrl-z ends 'conf t'"
        );
        assert!(echo.starts_with("shoz\x08 \x08wver\r\n"), "{echo:?}");
    }

    #[test]
    fn keys_for_confirm_prompts() {
        let mut e = LineEditor::new();
        e.push(b"\r\ny");
        assert_eq!(e.next_key(), Some(b'\r'));
        assert_eq!(e.next_key(), Some(b'y'));
        assert_eq!(e.next_key(), None);
    }
}
