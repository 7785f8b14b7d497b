//! What a request's headers ask for: which encoding of a file (`Accept-Encoding`) and whether `/`
//! is wanted as JSON rather than the page (`Accept`); whether the client's copy is still current
//! is `mp3conv_contract::http::none_match`. Lenient parsers: a malformed element counts as
//! refused (q=0), a malformed list as absent.

use crate::assets::{Asset, Variant};

/// A q-value in thousandths (`q=0.5` is 500), 1000 when absent, 0 when malformed.
type Quality = u16;

/// The variant of `asset` to send for `accept_encoding` (every `Accept-Encoding` value, joined
/// by commas; `None` without the header): of the variants the client accepts (q above 0) and
/// the asset has, the one with the highest q, brotli before gzip before identity at equal q.
/// Without the header, or when the client refuses every variant the asset has, the file as it
/// is: every client reads that.
pub fn variant<'a>(asset: &'a Asset, accept_encoding: Option<&str>) -> &'a Variant {
    let Some(accept_encoding) = accept_encoding else {
        return &asset.identity;
    };
    let elements = weighted(accept_encoding);
    [
        asset.brotli.as_ref().map(|v| (v, "br")),
        asset.gzip.as_ref().map(|v| (v, "gzip")),
        Some((&asset.identity, "identity")),
    ]
    .into_iter()
    .flatten()
    .map(|(variant, coding)| (variant, coding_quality(&elements, coding)))
    .filter(|(_, quality)| *quality > 0)
    // `max_by_key` keeps the last of equals: reversed, so the first in preference wins.
    .rev()
    .max_by_key(|(_, quality)| *quality)
    .map_or(&asset.identity, |(variant, _)| variant)
}

/// The q of `coding` (lower-case): its own element's, else `*`'s; else 0, except identity,
/// which is acceptable unless refused (RFC 9110, 12.5.3).
fn coding_quality(elements: &[(String, Quality)], coding: &str) -> Quality {
    let of = |name: &str| {
        elements
            .iter()
            .find(|(element, _)| element == name)
            .map(|(_, q)| *q)
    };
    of(coding)
        .or_else(|| of("*"))
        .unwrap_or(if coding == "identity" { 1000 } else { 0 })
}

/// Whether `accept` (every `Accept` value, joined by commas) ranks `application/json` above
/// `text/html`: each takes the q of the most specific range that matches it (`type/subtype`,
/// then `type/*`, then `*/*`), 0 when none does. Without the header, or at equal q, the page.
pub fn prefers_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let elements = weighted(accept);
    let quality = |kind: &str, subtype: &str| {
        let of = |range: &str| {
            elements
                .iter()
                .find(|(element, _)| element == range)
                .map(|(_, q)| *q)
        };
        of(&format!("{kind}/{subtype}"))
            .or_else(|| of(&format!("{kind}/*")))
            .or_else(|| of("*/*"))
            .unwrap_or(0)
    };
    quality("application", "json") > quality("text", "html")
}

/// A list's elements, lower-cased and without parameters other than `q`, each with its q.
fn weighted(list: &str) -> Vec<(String, Quality)> {
    list.split(',')
        .filter_map(|element| {
            let mut parts = element.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            if name.is_empty() {
                return None;
            }
            let quality = parts
                .filter_map(|parameter| parameter.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .map_or(1000, |(_, value)| quality(value.trim()).unwrap_or(0));
            Some((name, quality))
        })
        .collect()
}

/// A q-value: `0` to `1` with at most three decimals (RFC 9110, 12.4.2).
fn quality(text: &str) -> Option<Quality> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: Quality = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BR: Variant = Variant {
        encoding: Some("br"),
        bytes: b"b",
        etag: "\"b\"",
    };
    const GZIP: Variant = Variant {
        encoding: Some("gzip"),
        bytes: b"g",
        etag: "\"g\"",
    };
    const IDENTITY: Variant = Variant {
        encoding: None,
        bytes: b"identity",
        etag: "\"i\"",
    };

    fn asset(gzip: bool, brotli: bool) -> Asset {
        Asset {
            path: "app.js",
            content_type: "text/javascript; charset=utf-8",
            identity: IDENTITY,
            gzip: gzip.then_some(GZIP),
            brotli: brotli.then_some(BR),
        }
    }

    #[test]
    fn encodings_by_q_then_brotli_then_gzip() {
        let both = asset(true, true);
        let chosen = |accept: Option<&str>| variant(&both, accept).encoding;
        for (accept, expected) in [
            (None, None),
            (Some(""), None),
            (Some("br, gzip"), Some("br")),
            (Some("gzip, deflate, br, zstd"), Some("br")),
            (Some("GZIP"), Some("gzip")),
            (Some("gzip;q=1, br;q=0.5"), Some("gzip")),
            (Some("br;q=0, gzip"), Some("gzip")),
            (Some("br;q=0, gzip;q=0"), None),
            (Some("*"), Some("br")),
            (Some("*;q=0.5, gzip"), Some("gzip")),
            (Some("*;q=0"), None),
            (Some("br;q=0.001"), None),
            (Some("br;q=0.001, identity;q=0"), Some("br")),
            (Some("br;q=1.5, gzip"), Some("gzip")),
            (Some("br;q=x, gzip"), Some("gzip")),
            (Some("br;level=1;q=0.9, identity;q=0.8"), Some("br")),
            (Some("identity;q=1, gzip;q=0.9"), None),
            (Some("deflate"), None),
            (Some(" , ;q=1"), None),
        ] {
            assert_eq!(chosen(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn only_the_variants_an_asset_has() {
        let gzip_only = asset(true, false);
        assert_eq!(variant(&gzip_only, Some("br, gzip")).encoding, Some("gzip"));
        let none = asset(false, false);
        assert_eq!(variant(&none, Some("br, gzip")).encoding, None);
        assert_eq!(
            variant(&none, Some("identity;q=0, br")).encoding,
            None,
            "nothing acceptable: the file as it is"
        );
    }

    #[test]
    fn json_only_when_ranked_above_html() {
        for (accept, json) in [
            (None, false),
            (Some("application/json"), true),
            (Some("Application/JSON; charset=utf-8"), true),
            (Some("application/*"), true),
            (Some("*/*"), false),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), false),
            (Some("application/json, text/html"), false),
            (Some("application/json, text/html;q=0.9"), true),
            (Some("text/html;q=0, */*"), true),
            (Some("text/*;q=0.5, application/json;q=0.6"), true),
            (Some("application/json;q=0"), false),
            (Some("text/plain"), false),
        ] {
            assert_eq!(prefers_json(accept), json, "{accept:?}");
        }
    }

    #[test]
    fn q_values() {
        for (text, expected) in [
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.125", Some(125)),
            ("0.", Some(0)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            ("", None),
            ("-0.5", None),
            ("0.+5", None),
        ] {
            assert_eq!(quality(text), expected, "{text:?}");
        }
    }
}
