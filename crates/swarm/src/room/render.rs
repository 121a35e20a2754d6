//! How chat text and member names are shown: what a peer wrote made safe
//! for a terminal, and names that cannot pass for another member's.
//!
//! Every place that shows a member's words goes through here: the lines
//! of `chat.log` (rendered once, in [`super::view`]), `p2pfs chat`
//! ([`super::transcript`]), and the names in `room status` and `room list`.
//!
//! **Escaping** ([`clean`]). These characters never reach a terminal raw;
//! each is shown as `\xNN` (below U+0080) or `\u{N}` (lowercase hex, as
//! Rust writes them), so `ESC [ 2 J` shows as `\x1b[2J`:
//! - controls: C0 except tab (U+0000–U+0008, U+000A–U+001F), DEL, C1
//!   (U+0080–U+009F): escape sequences, BEL, cursor movement, CSI/OSC;
//! - bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069),
//!   which reorder what follows them;
//! - the line and paragraph separators U+2028, U+2029, which some viewers
//!   break lines at (a forged line start);
//! - characters that show as nothing and make two texts look alike: the
//!   other format characters (Unicode category Cf: soft hyphen, zero-width
//!   space, word joiner, invisible operators, BOM, tags, …) and the blank
//!   Hangul fillers. Zero-width (non-)joiners (U+200C, U+200D) stay raw
//!   between two visible non-ASCII characters, where they shape emoji
//!   (👩‍💻) and Persian or Indic text; anywhere else they are escaped.
//!
//! A literal backslash is not escaped, so `C:\tmp` and `¯\_(ツ)_/¯` read as
//! written. A member can therefore type `\x1b` as text and it looks like an
//! escaped ESC; that is harmless (neither does anything to a terminal), and
//! for names, where looking alike matters, two names are compared by what
//! is shown ([`name_key`]), so a typed `\u{200b}` and a real U+200B count
//! as the same name.
//!
//! **Names** ([`label`]). A member is shown by its display name, escaped
//! as above and with `:` shown as `\x3a` (the first `: ` of a line always
//! ends the name). The short node id follows in parentheses,
//! `alice (5kq3zx2hdd)`, when another author has ever taken a name with the
//! same key (case-insensitive, blanks and invisible joiners ignored; see
//! [`name_key`]), or when the name could pass for a label: one that has the
//! form of a short node id (how members without a name are shown), ends
//! with `)` (as a qualified label does), or is blank. Members without a
//! name are shown by their short id.

use std::borrow::Cow;

use p2pfs_proto::NodeId;

/// `text` with every character a terminal must not get raw escaped (see
/// the module doc); borrowed when there is none.
pub fn clean(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let escape_at = |i: usize| -> bool {
        let c = chars[i];
        if matches!(c, '\u{200c}' | '\u{200d}') {
            let visible = |c: Option<&char>| c.is_some_and(|c| !c.is_ascii() && !unsafe_char(*c));
            return !(i > 0 && visible(chars.get(i - 1)) && visible(chars.get(i + 1)));
        }
        unsafe_char(c)
    };
    if !(0..chars.len()).any(escape_at) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, &c) in chars.iter().enumerate() {
        if escape_at(i) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A display name as shown: [`clean`], and `:` as `\x3a`.
pub fn display_name(name: &str) -> String {
    let cleaned = clean(name);
    let mut out = String::with_capacity(cleaned.len());
    for c in cleaned.chars() {
        if c == ':' {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// The key under which two names count as the same: the name as shown
/// ([`display_name`]), lowercased, without the joiners and variation
/// selectors [`clean`] leaves raw (they show as nothing on their own), with
/// each run of blanks as one space and none at either end.
pub fn name_key(name: &str) -> String {
    let mut key = String::new();
    let mut blank = false;
    for c in display_name(name).chars().flat_map(char::to_lowercase) {
        if is_invisible_modifier(c) {
            continue;
        }
        if c.is_whitespace() {
            blank = true;
            continue;
        }
        if blank && !key.is_empty() {
            key.push(' ');
        }
        blank = false;
        key.push(c);
    }
    key
}

/// How `author` is shown: its short id without a `name`; else the name
/// as shown, followed by the short id when `shared` (another author has
/// taken a name with the same [`name_key`]) or when the name could pass
/// for a label (see the module doc).
pub fn label(name: Option<&str>, author: &NodeId, shared: bool) -> String {
    let Some(name) = name else {
        return author.fmt_short();
    };
    let shown = display_name(name);
    if shared || passes_for_label(&name_key(name)) {
        format!("{shown} ({})", author.fmt_short())
    } else {
        shown
    }
}

/// One chat line with its newline: `<time> <label>: <text>`, the time in
/// RFC 3339 UTC to the second, the text [`clean`]ed.
pub fn chat_line(time_ms: u64, label: &str, text: &str) -> String {
    format!("{} {label}: {}\n", rfc3339(time_ms), clean(text))
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time to the second.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Characters escaped wherever they are (the joiners U+200C and U+200D
/// are in the list and kept only where [`clean`] says).
fn unsafe_char(c: char) -> bool {
    matches!(c,
        // C0 but tab, DEL, C1.
        '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Soft hyphen, combining grapheme joiner.
        | '\u{ad}' | '\u{34f}'
        // Arabic and Syriac format characters, the Arabic letter mark.
        | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}'
        // Blank Hangul fillers, Khmer inherent vowels, Mongolian vowel
        // separator.
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
        | '\u{17b4}' | '\u{17b5}' | '\u{180e}'
        // Zero-width space, (non-)joiner, left-to-right and right-to-left marks.
        | '\u{200b}'..='\u{200f}'
        // Line and paragraph separators, bidi embeddings and overrides.
        | '\u{2028}'..='\u{202e}'
        // Word joiner, invisible operators, bidi isolates, deprecated format.
        | '\u{2060}'..='\u{206f}'
        // Byte order mark, interlinear annotations.
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        // Format characters of other scripts, tags.
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0000}'..='\u{e007f}'
    )
}

/// What [`clean`] may leave raw that shows as nothing on its own: the
/// joiners between visible characters and variation selectors.
fn is_invisible_modifier(c: char) -> bool {
    matches!(c,
        '\u{200c}' | '\u{200d}' | '\u{180b}'..='\u{180d}' | '\u{180f}'
        | '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}'
    )
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = if c.is_ascii() {
        write!(out, "\\x{:02x}", c as u32)
    } else {
        write!(out, "\\u{{{:x}}}", c as u32)
    };
}

/// Whether a name (by its [`name_key`]) could be taken for a label of
/// another member: blank, of the form of a short node id (10 characters of
/// the lowercase base32 alphabet), or ending with `)`.
fn passes_for_label(key: &str) -> bool {
    let short_id = key.chars().count() == 10
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c));
    key.is_empty() || short_id || key.ends_with(')')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_visibly() {
        let cases = [
            ("\x1b[2J", "\\x1b[2J"),
            ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
            ("bell\x07 del\x7f", "bell\\x07 del\\x7f"),
            ("\u{9b}31m csi", "\\u{9b}31m csi"),
            ("\u{85}nel", "\\u{85}nel"),
            ("a\u{202e}evil", "a\\u{202e}evil"),
            (
                "\u{2066}x\u{2069}\u{200e}\u{200f}\u{61c}",
                "\\u{2066}x\\u{2069}\\u{200e}\\u{200f}\\u{61c}",
            ),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
            ("line\u{2028}sep\u{2029}", "line\\u{2028}sep\\u{2029}"),
            (
                "\0nul \x0bvt \x0cff \x08bs",
                "\\x00nul \\x0bvt \\x0cff \\x08bs",
            ),
            ("tags\u{e0041}\u{e007f}", "tags\\u{e0041}\\u{e007f}"),
            ("\u{3164}", "\\u{3164}"),
        ];
        for (raw, shown) in cases {
            assert_eq!(clean(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "hello, world",
            "tab\tstays",
            "C:\\tmp and ¯\\_(ツ)_/¯",
            "naïve café, 日本語, עברית, العربية",
            "emoji 👩‍💻 ❤️‍🔥 👩🏽‍💻 ❤️ 1️⃣",
            "می‌خواهم",
            "",
        ] {
            assert!(
                matches!(clean(text), Cow::Borrowed(t) if t == text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn joiners_between_ascii_or_at_the_edges_are_escaped() {
        assert_eq!(clean("ali\u{200d}ce"), "ali\\u{200d}ce");
        assert_eq!(clean("\u{200c}é"), "\\u{200c}é");
        assert_eq!(clean("é\u{200d}"), "é\\u{200d}");
        assert_eq!(clean("é\u{200d}\u{200d}é"), "é\\u{200d}\\u{200d}é");
        assert_eq!(clean("é\u{200d}\u{202e}"), "é\\u{200d}\\u{202e}");
    }

    #[test]
    fn nothing_unsafe_survives_any_input() {
        // Every code point next to every kind of neighbour: what comes out
        // holds no character of the escaped set but kept joiners.
        let neighbours = ['a', 'é', '👩', '\u{200d}', '\u{202e}', ' '];
        let planes = (0..0x20000)
            .chain(0xe0000..0xe1000)
            .chain(0x10fff0..=0x10ffff);
        for c in planes.filter_map(char::from_u32) {
            for n in neighbours {
                let text: String = [n, c, n].iter().collect();
                let out = clean(&text);
                let chars: Vec<char> = out.chars().collect();
                for (i, &o) in chars.iter().enumerate() {
                    if matches!(o, '\u{200c}' | '\u{200d}') {
                        assert!(i > 0 && !chars[i - 1].is_ascii(), "{text:?} -> {out:?}");
                        assert!(chars.get(i + 1).is_some_and(|c| !c.is_ascii()));
                    } else {
                        assert!(!unsafe_char(o), "{text:?} -> {out:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn escaping_is_unambiguous_for_the_escaped_set() {
        // Two different raw texts that differ only in escaped characters
        // never clean to the same text unless one typed the escape.
        assert_ne!(clean("\x1b"), clean("\x07"));
        assert_ne!(clean("\u{9b}"), clean("\x1b["));
        assert_eq!(clean("\\x1b"), "\\x1b");
        // ... and a typed escape collides as a name, on purpose.
        assert_eq!(name_key("al\u{200b}ice"), name_key("al\\u{200b}ice"));
    }

    #[test]
    fn names_compare_case_blank_and_joiner_insensitively() {
        assert_eq!(name_key("Alice"), "alice");
        assert_eq!(name_key("  alice\u{a0} "), "alice");
        assert_eq!(name_key("Mary  Ann"), name_key("mary ann"));
        assert_eq!(name_key("alice\u{fe0f}"), name_key("alice"));
        assert_eq!(name_key("é\u{200d}é"), name_key("éé"));
        assert_ne!(name_key("alice"), name_key("alice2"));
        // The invisible characters are shown, so the names differ.
        assert_ne!(name_key("al\u{200b}ice"), name_key("alice"));
        assert_eq!(name_key("a:b"), "a\\x3ab");
    }

    #[test]
    fn labels_add_the_short_id_when_a_name_could_mislead() {
        let id = NodeId::from_bytes([7; 32]);
        let short = id.fmt_short();
        assert_eq!(label(None, &id, false), short);
        assert_eq!(label(Some("alice"), &id, false), "alice");
        assert_eq!(label(Some("alice"), &id, true), format!("alice ({short})"));
        // A name shaped like a short id, of this member or any other.
        let other = NodeId::from_bytes([9; 32]).fmt_short();
        assert_eq!(
            label(Some(&other), &id, false),
            format!("{other} ({short})")
        );
        assert_eq!(
            label(Some(&other.to_uppercase()), &id, false),
            format!("{} ({short})", other.to_uppercase())
        );
        // A name imitating a qualified label, a blank one, one with a colon.
        assert_eq!(
            label(Some("alice (5kq3zx2hdd)"), &id, false),
            format!("alice (5kq3zx2hdd) ({short})")
        );
        assert_eq!(label(Some(" "), &id, false), format!("  ({short})"));
        assert_eq!(label(Some("alice: hi"), &id, false), "alice\\x3a hi");
        // Controls in a name are escaped like in text.
        assert_eq!(label(Some("\u{202e}ecila"), &id, false), "\\u{202e}ecila");
    }

    #[test]
    fn chat_lines() {
        assert_eq!(
            chat_line(1_700_000_000_000, "ana", "hi\x1b[2J"),
            "2023-11-14T22:13:20Z ana: hi\\x1b[2J\n"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_219_199_000), "2026-11-20T23:59:59Z");
    }
}
