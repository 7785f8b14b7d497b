//! HTTP as every part speaks it: conditional requests (`If-None-Match`, read by the web app's
//! files and the worker's MP3s) and download names (`Content-Disposition`, given by the
//! gateway and the worker, and the names the CLI saves under).

/// Most bytes of a name's stem: room is left for a number, a ` (2)` and the extension within
/// the 255 bytes file systems allow.
pub const MAX_STEM_BYTES: usize = 200;

/// Names Windows keeps for devices, whatever the extension (`CON.mp3` is the console).
const DEVICE_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// `text` cut to at most `max` bytes, at a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` made safe as a file name's stem on any system and hard to mislead with: path
/// separators and the characters Windows refuses become `_`; control, invisible and
/// bidirectional formatting characters go, as do leading dots and spaces (no hidden files, no
/// `..`) and trailing dots and spaces; a name Windows keeps for a device gains a `_`; it is
/// cut to [`MAX_STEM_BYTES`] at a character. May be empty.
pub fn file_stem(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|&c| !c.is_control() && !is_hidden(c))
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c => c,
        })
        .collect();
    let edge = |c: char| c == '.' || c.is_whitespace();
    let stem = cut(cleaned.trim_start_matches(edge), MAX_STEM_BYTES).trim_end_matches(edge);
    let device = stem.split('.').next().unwrap_or_default().trim_end();
    if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(device)) {
        format!("_{stem}")
    } else {
        stem.to_owned()
    }
}

/// A file name: `stem` made safe ([`file_stem`], `fallback` if nothing is left) and
/// `.extension`, which a long stem never cuts off.
pub fn file_name(stem: &str, extension: &str, fallback: &str) -> String {
    match file_stem(stem) {
        stem if stem.is_empty() => format!("{fallback}.{extension}"),
        stem => format!("{stem}.{extension}"),
    }
}

/// The stem of track `number`'s file name, the number zero-padded to `width`: `NN - <title>`
/// with the title made safe ([`file_stem`]), or `NN` when nothing of it is left. The one rule
/// for a track downloaded alone and for its entry in the ZIP of all tracks.
pub fn track_stem(number: u32, width: usize, title: &str) -> String {
    match file_stem(title) {
        title if title.is_empty() => format!("{number:0width$}"),
        title => format!("{number:0width$} - {title}"),
    }
}

/// Whether `c` is an invisible character that reorders or hides text (bidirectional marks,
/// overrides and isolates, zero-width characters, line and paragraph separators, the BOM), or
/// one a name could hide text with: the soft hyphen, the Mongolian vowel separator, the
/// interlinear annotation marks and the tag characters.
pub fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// `Content-Disposition` of a download saved as `name` (from [`file_name`]): a plain ASCII
/// fallback and the name as RFC 8187 UTF-8.
pub fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' ' => c,
            '"' | '\\' | ';' | '%' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Whether `if_none_match` (every `If-None-Match` value, joined by commas) names `etag`, by
/// weak comparison (`W/"x"` matches `"x"`), or is `*`: the client's copy is current (304).
pub fn none_match(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(list) = if_none_match else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    let wanted = etag.trim_start_matches("W/");
    entity_tags(list).any(|tag| tag == wanted)
}

/// The quoted tags of an `If-None-Match` list (`"a", W/"b"`), without their `W/`; parsing
/// stops at the first malformed element.
fn entity_tags(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = list;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let end = tag.strip_prefix('"')?.find('"')? + 2;
        rest = &tag[end..];
        Some(&tag[..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_keep_their_extension() {
        for (text, stem) in [
            ("Intro", "Intro"),
            ("Q/A: why?", "Q_A_ why_"),
            ("../../etc", "_.._etc"),
            ("  ..hidden. . ", "hidden"),
            (". .bashrc", "bashrc"),
            ("nul", "_nul"),
            ("Com1.tar ", "_Com1.tar"),
            ("console", "console"),
            ("a\u{061C}b\u{2028}c\u{2066}d", "abcd"),
            ("a\nb\u{7}", "ab"),
            ("right\u{202E}4pm.exe", "right4pm.exe"),
            (
                "in\u{00AD}voice\u{180E}.pdf\u{FFF9}x\u{FFFB}",
                "invoice.pdfx",
            ),
            ("flag\u{E0067}\u{E0062}\u{E007F}", "flag"),
            ("AC/DC <live> | \"x\"", "AC_DC _live_ _ _x_"),
            (" \u{0} ", ""),
        ] {
            assert_eq!(file_stem(text), stem, "{text:?}");
        }
        let long = "é".repeat(150);
        let name = file_name(&long, "mp3", "audio");
        assert!(name.ends_with("é.mp3"), "{name}");
        assert_eq!(name.len(), MAX_STEM_BYTES + 4);
        assert_eq!(file_name(" .. ", "zip", "tracks"), "tracks.zip");
    }

    #[test]
    fn attachments_fall_back_to_ascii() {
        assert_eq!(
            attachment(&file_name("Café \"live\"; 1/2 100%", "zip", "tracks")),
            "attachment; filename=\"Caf_ _live__ 1_2 100_.zip\"; \
             filename*=UTF-8''Caf%C3%A9%20_live_%3B%201_2%20100%25.zip"
        );
    }

    #[test]
    fn if_none_match_lists_stars_and_weak_tags() {
        let etag = "\"abc\"";
        for (header, matches) in [
            (None, false),
            (Some("\"abc\""), true),
            (Some("W/\"abc\""), true),
            (Some("\"x\", \"abc\""), true),
            (Some("\"x\",W/\"abc\""), true),
            (Some(" * "), true),
            (Some("\"ab\""), false),
            (Some("abc"), false),
            (Some("\"abc"), false),
            (Some("\"x\", junk, \"abc\""), false),
            (Some(""), false),
        ] {
            assert_eq!(none_match(header, etag), matches, "{header:?}");
        }
        assert!(none_match(Some("\"abc\""), "W/\"abc\""));
    }
}
