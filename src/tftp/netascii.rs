//! Netascii (RFC 764 line endings as TFTP uses them): LF travels as CR LF, a bare CR as CR NUL.

use std::io::{self, Read};

/// Converts a local file to netascii while it is read.
pub(crate) struct NetasciiEncoder<R> {
    inner: R,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: Read> NetasciiEncoder<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            raw: vec![0; 8192],
            out: Vec::with_capacity(16384),
            pos: 0,
        }
    }
}

impl<R: Read> Read for NetasciiEncoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            for &b in &self.raw[..n] {
                match b {
                    b'\n' => self.out.extend_from_slice(b"\r\n"),
                    b'\r' => self.out.extend_from_slice(b"\r\0"),
                    other => self.out.push(other),
                }
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Converts received netascii back to local line endings. A CR at the end of one block is
/// resolved by the first byte of the next, so the decoder keeps that one byte of state.
#[derive(Debug, Default)]
pub(crate) struct NetasciiDecoder {
    pending_cr: bool,
}

impl NetasciiDecoder {
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                match b {
                    b'\n' => {
                        out.push(b'\n');
                        continue;
                    }
                    0 => {
                        out.push(b'\r');
                        continue;
                    }
                    _ => out.push(b'\r'),
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_line_endings() {
        let text = b"line one\nbare\rcr\r\n\n".to_vec();
        let mut enc = NetasciiEncoder::new(&text[..]);
        let mut wire = Vec::new();
        enc.read_to_end(&mut wire).unwrap();
        assert_eq!(wire, b"line one\r\nbare\r\0cr\r\0\r\n\r\n".to_vec());
        // Split the wire form at every position: the decoder must carry a CR across blocks.
        for split in 0..wire.len() {
            let mut dec = NetasciiDecoder::default();
            let mut back = Vec::new();
            dec.decode(&wire[..split], &mut back);
            dec.decode(&wire[split..], &mut back);
            dec.finish(&mut back);
            assert_eq!(back, text, "split at {split}");
        }
    }
}
