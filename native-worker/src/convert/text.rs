//! Text taken from a source file (its tags, its chapter titles) before it goes into an MP3: the
//! same bounds as the options' tags (`mp3conv_contract::options`), enforced by trimming rather
//! than refusing, since the file is the uploader's and not a request to answer.

pub use mp3conv_contract::options::{MAX_COMMENT_CHARS, MAX_TAG_CHARS};

/// `value` without control characters (line breaks and tabs become spaces, unless
/// `keep_breaks`, for a comment), trimmed, at most `max` characters.
pub fn tag(value: &str, max: usize, keep_breaks: bool) -> String {
    let value = value.replace("\r\n", "\n");
    let cleaned: String = value
        .chars()
        .filter_map(|c| match c {
            '\n' | '\t' if keep_breaks => Some(c),
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    cleaned
        .trim()
        .chars()
        .take(max)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_text_is_bounded_and_printable() {
        assert_eq!(tag("  a\u{0}b\nc\td  ", 100, false), "ab c d");
        assert_eq!(tag("a\r\nb\tc", 100, true), "a\nb\tc");
        assert_eq!(tag("abcdef", 3, false), "abc");
        assert_eq!(tag("ab cdef", 3, false), "ab");
        assert_eq!(tag("\u{7}", 3, false), "");
        assert_eq!(tag("ünï", 2, false), "ün");
    }
}
