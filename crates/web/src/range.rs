//! The `Range` header (RFC 9110 §14): one byte range of a blob of known
//! size. Several ranges in one request are answered with the whole blob,
//! which the RFC allows.

use std::ops::Range;

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The whole blob (no header, several ranges, or a header this does
    /// not understand: the RFC says to ignore it).
    All,
    /// These bytes (non-empty, inside the blob).
    Part(Range<u64>),
    /// No byte of the range is in the blob (416).
    Unsatisfiable,
}

/// Parses `header` for a blob of `size` bytes.
pub(crate) fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::All;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if size == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part(size.saturating_sub(n)..size),
            None => Wanted::All,
        },
        // bytes=A-: from A on.
        (false, true) => match parse(first) {
            Some(a) if a < size => Wanted::Part(a..size),
            Some(_) => Wanted::Unsatisfiable,
            None => Wanted::All,
        },
        // bytes=A-B, B inclusive.
        (false, false) => match (parse(first), parse(last)) {
            (Some(a), Some(b)) if a > b => Wanted::All,
            (Some(a), Some(_)) if a >= size => Wanted::Unsatisfiable,
            (Some(a), Some(b)) => Wanted::Part(a..b.saturating_add(1).min(size)),
            _ => Wanted::All,
        },
        (true, true) => Wanted::All,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_the_rfc_reads_them() {
        let w = |h: &str| wanted(Some(h), 1000);
        assert_eq!(wanted(None, 1000), Wanted::All);
        assert_eq!(w("bytes=0-499"), Wanted::Part(0..500));
        assert_eq!(w("bytes=500-"), Wanted::Part(500..1000));
        assert_eq!(w("bytes=-100"), Wanted::Part(900..1000));
        assert_eq!(w("bytes=-5000"), Wanted::Part(0..1000));
        assert_eq!(w("bytes=900-5000"), Wanted::Part(900..1000));
        assert_eq!(w("bytes=999-999"), Wanted::Part(999..1000));
        assert_eq!(w("bytes=1000-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=1000-1001"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=5-1"), Wanted::All);
        assert_eq!(w("bytes=0-1,5-6"), Wanted::All);
        assert_eq!(w("items=0-1"), Wanted::All);
        assert_eq!(w("bytes=x-1"), Wanted::All);
        assert_eq!(w("bytes=-"), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-3"), 0), Wanted::Unsatisfiable);
        assert_eq!(
            w("bytes=18446744073709551615-18446744073709551615"),
            Wanted::Unsatisfiable
        );
    }
}
