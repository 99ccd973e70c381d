//! `Range: bytes=…` (RFC 9110 §14) against a file's length (pure).
//!
//! One range is served as 206. A list of ranges is answered with the whole file (200): a
//! server may ignore `Range`, devices and download tools ask for one range only, and a
//! multipart body could not go out with sendfile alone. A malformed field, or a unit other than
//! `bytes`, is ignored the same way.

/// What a `Range` field asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The whole file (no range, or one the server ignores).
    Whole,
    /// `len` bytes from `offset`; never empty, never past the end.
    Part { offset: u64, len: u64 },
    /// A single range that starts beyond the end: 416.
    Unsatisfiable,
}

/// Resolve `field` (the `Range` value) against `size`.
pub(crate) fn resolve(field: Option<&str>, size: u64) -> Wanted {
    let Some(field) = field else {
        return Wanted::Whole;
    };
    let Some((unit, spec)) = field.split_once('=') else {
        return Wanted::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Digits too many for u64 still name a position past any file.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            None => Wanted::Whole,
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if size == 0 => Wanted::Unsatisfiable,
            Some(n) => {
                let len = n.min(size);
                Wanted::Part {
                    offset: size - len,
                    len,
                }
            }
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            None => Wanted::Whole,
            Some(a) if a >= size => Wanted::Unsatisfiable,
            Some(a) => Wanted::Part {
                offset: a,
                len: size - a,
            },
        },
        // `a-b`, both inclusive.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    Wanted::Unsatisfiable
                } else {
                    Wanted::Part {
                        offset: a,
                        len: b.min(size - 1) - a + 1,
                    }
                }
            }
            _ => Wanted::Whole,
        },
        (true, true) => Wanted::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        let part = |offset, len| Wanted::Part { offset, len };
        assert_eq!(resolve(None, 100), Wanted::Whole);
        assert_eq!(resolve(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(resolve(Some("bytes=90-200"), 100), part(90, 10));
        assert_eq!(resolve(Some("bytes=99-99"), 100), part(99, 1));
        assert_eq!(resolve(Some("bytes=40-"), 100), part(40, 60));
        assert_eq!(resolve(Some("bytes=-10"), 100), part(90, 10));
        assert_eq!(resolve(Some("bytes=-1000"), 100), part(0, 100));
        assert_eq!(resolve(Some("Bytes = 1 - 2"), 100), part(1, 2));
        assert_eq!(
            resolve(Some("bytes=5-99999999999999999999999"), 100),
            part(5, 95)
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        // wget -c on a file it already has asks for `size-`.
        assert_eq!(resolve(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=100-200"), 100), Wanted::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
        assert_eq!(
            resolve(Some("bytes=99999999999999999999999-"), 100),
            Wanted::Unsatisfiable
        );
    }

    #[test]
    fn ignored_ranges_give_the_whole_file() {
        for field in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "items=0-1",
            "bytes 0-1",
            "bytes=1",
            "",
        ] {
            assert_eq!(resolve(Some(field), 100), Wanted::Whole, "{field:?}");
        }
    }
}
