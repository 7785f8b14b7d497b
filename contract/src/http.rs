//! Conditional requests, as every part that answers them reads `If-None-Match`: the web
//! app's files and the worker's MP3s.

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
