//! Text from a reducer is untrusted input: its error messages, its log lines, the
//! fields of its `info`, the names in a trap's backtrace. Before any of it is kept or
//! shown it goes through [`shown`]: cut to a bound (saying how long the original
//! was) and with every control character escaped, so a reducer can neither flood a
//! log nor repaint a terminal or forge a line of the host's output.

use std::fmt::Write as _;

/// How much of a reducer's message (error, trap, log line) is kept, in bytes.
pub const MESSAGE_BYTES: usize = 4096;

/// `s`, cut to about `max` bytes and escaped: control characters (C0, DEL, C1), and
/// the Unicode controls that reorder or hide text (bidi overrides and isolates,
/// zero-width joiners, the line and paragraph separators), become `\u{…}`; a cut
/// text ends with `… [cut: N bytes in all]`. The result is at most `max` bytes plus
/// that note.
pub fn shown(s: &str, max: usize) -> String {
    let raw = cut(s, max);
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if needs_escape(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    let cut_short = out.len() > max || raw.len() < s.len();
    if cut_short {
        let keep = cut(&out, max).len();
        out.truncate(keep);
        let _ = write!(out, "… [cut: {} bytes in all]", s.len());
    }
    out
}

/// Whether `c` may not reach a terminal or a log line as it is.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
        )
}

/// Whether `s` holds any character [`shown`] would escape.
pub fn has_controls(s: &str) -> bool {
    s.chars().any(needs_escape)
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn escapes_what_could_repaint_a_terminal_or_forge_a_line() {
        assert_eq!(shown("plain text", 100), "plain text");
        assert_eq!(
            shown("a\x1b[2Jb\nc\rd\u{7}", 100),
            "a\\u{1b}[2Jb\\u{a}c\\u{d}d\\u{7}"
        );
        assert_eq!(shown("x\u{202e}y\u{9b}z", 100), "x\\u{202e}y\\u{9b}z");
        assert!(!has_controls("héllo wörld"));
        assert!(has_controls("bell\u{7}"));
    }

    #[test]
    fn bounds_long_text_and_says_how_long_it_was() {
        let long = "x".repeat(10_000);
        let s = shown(&long, 100);
        assert!(s.starts_with(&"x".repeat(100)), "{s}");
        assert!(s.ends_with("… [cut: 10000 bytes in all]"), "{s}");
        assert!(s.len() < 140, "{}", s.len());
        // Escaping can grow a text past the bound: it is cut again.
        let controls = "\x1b".repeat(100);
        let s = shown(&controls, 60);
        assert!(s.ends_with("… [cut: 100 bytes in all]"), "{s}");
        assert!(s.len() <= 60 + "… [cut: 100 bytes in all]".len(), "{s}");
    }
}
