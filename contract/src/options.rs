//! Conversion options: what a job makes of its video beyond the bitrate (a clip, loudness,
//! tags, cover art, chapters, channels, sample rate, a saved preset), read and checked by one
//! rule whatever carries them: multipart text fields, query parameters or a JSON object.
//!
//! Every value is text to [`Options::set`] (a JSON number or boolean is read as its text), so
//! `start=90`, `"start": 90` and `"start": "00:01:30"` mean the same. What depends on the
//! source (a clip past its end) is checked by the converter, which alone has the file.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::job::{Bitrate, InvalidBitrate};

/// Longest `title`, `artist` or `album`, in characters.
pub const MAX_TAG_CHARS: usize = 256;
/// Longest `comment`, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;
/// Longest preset name, in characters.
pub const MAX_PRESET_NAME_CHARS: usize = 64;
/// Latest `start`, `end` or `cover` time accepted: 100 hours, in milliseconds.
pub const MAX_MILLIS: u64 = 100 * 3600 * 1000;
/// Shortest clip, in milliseconds: one MP3 frame is 26 ms, a clip must hold a few.
pub const MIN_CLIP_MILLIS: u64 = 100;
/// Longest text value of any field, in bytes, before its own rules apply: what a form reader
/// holds of a text field at most.
pub const MAX_FIELD_BYTES: usize = 4 * MAX_COMMENT_CHARS;

/// The field names, in the order the documentation lists them.
pub const FIELDS: [&str; 14] = [
    "bitrate",
    "start",
    "end",
    "normalize",
    "title",
    "artist",
    "album",
    "year",
    "comment",
    "cover",
    "channels",
    "sample_rate",
    "split",
    "preset",
];

/// A time in the source, to the millisecond: written `90`, `90.5`, `1:30` or `00:01:30.500`;
/// serialized as seconds (`90.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    millis: u64,
}

impl Position {
    /// The position `millis` milliseconds in.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// Milliseconds from the start.
    pub const fn millis(self) -> u64 {
        self.millis
    }

    /// Seconds from the start.
    pub fn seconds(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// Reads seconds (`90`, `90.25`) or a clock time (`1:30`, `01:01:30.250`): at most three
    /// decimals, at most [`MAX_MILLIS`].
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (clock, fraction) = match text.split_once('.') {
            Some((clock, fraction)) => (clock, Some(fraction)),
            None => (text, None),
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
        let parts: Vec<&str> = clock.split(':').collect();
        if parts.len() > 3 || !parts.iter().all(|p| digits(p)) {
            return None;
        }
        let numbers: Vec<u64> = parts
            .iter()
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        // In a clock time, every part after the first is below 60 and written with two digits.
        if numbers.len() > 1
            && parts[1..]
                .iter()
                .zip(&numbers[1..])
                .any(|(p, n)| p.len() != 2 || *n >= 60)
        {
            return None;
        }
        let seconds = numbers.iter().fold(0u64, |total, n| total * 60 + n);
        let millis = match fraction {
            None => 0,
            Some(f) if digits(f) && f.len() <= 3 => {
                f.parse::<u64>().ok()? * 10u64.pow(3 - f.len() as u32)
            }
            Some(_) => return None,
        };
        let total = seconds.checked_mul(1000)?.checked_add(millis)?;
        (total <= MAX_MILLIS).then_some(Self { millis: total })
    }
}

impl fmt::Display for Position {
    /// `HH:MM:SS.mmm`, as ffmpeg reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    }
}

impl Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.seconds())
    }
}

/// EBU R128 loudness normalization: off, or an integrated loudness target in LUFS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Leave the loudness as it is (also overrides a preset that normalizes).
    Off,
    /// Normalize to this many LUFS: -14 (music streaming), -16 (speech, podcasts), -23
    /// (broadcast, EBU R128).
    Target(i8),
}

impl Normalize {
    /// The target when normalization is asked for without one: speech and podcasts.
    pub const DEFAULT_TARGET: i8 = -16;
    /// The targets offered.
    pub const TARGETS: [i8; 3] = [-14, -16, -23];

    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let number = text.strip_suffix("lufs").unwrap_or(&text).trim();
        match number {
            "true" | "on" | "yes" => Some(Self::Target(Self::DEFAULT_TARGET)),
            "false" | "off" | "no" | "none" => Some(Self::Off),
            _ => number
                .parse::<i8>()
                .ok()
                .filter(|t| Self::TARGETS.contains(t))
                .map(Self::Target),
        }
    }

    /// The target, if normalizing.
    pub fn target(self) -> Option<i8> {
        match self {
            Self::Off => None,
            Self::Target(t) => Some(t),
        }
    }
}

impl Serialize for Normalize {
    /// `false`, or the target (`-16`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_bool(false),
            Self::Target(t) => s.serialize_i8(*t),
        }
    }
}

/// The MP3's cover art.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// The source's own picture if it has one, else a representative frame of the video
    /// (none for audio without a picture). The default.
    Auto,
    /// No picture.
    None,
    /// The video's frame at this time (of the source, not of the clip).
    At(Position),
}

impl Cover {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "true" => Some(Self::Auto),
            "none" | "false" | "off" => Some(Self::None),
            other => Position::parse(other).map(Self::At),
        }
    }
}

impl Serialize for Cover {
    /// `"auto"`, `"none"`, or the time in seconds.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::None => s.serialize_str("none"),
            Self::At(at) => at.serialize(s),
        }
    }
}

/// The MP3's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channels {
    Mono,
    Stereo,
}

impl Channels {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "mono" | "1" => Some(Self::Mono),
            "stereo" | "2" => Some(Self::Stereo),
            _ => None,
        }
    }

    /// How many.
    pub fn count(self) -> u8 {
        match self {
            Self::Mono => 1,
            Self::Stereo => 2,
        }
    }
}

/// The MP3's sample rate in Hz: 44100 (the default) or 48000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SampleRate(u32);

impl SampleRate {
    /// CD rate, what every player plays.
    pub const CD: Self = Self(44_100);
    /// Video rate.
    pub const VIDEO: Self = Self(48_000);

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "44100" | "44.1k" | "44.1khz" => Some(Self::CD),
            "48000" | "48k" | "48khz" => Some(Self::VIDEO),
            _ => None,
        }
    }

    /// In Hz.
    pub fn hz(self) -> u32 {
        self.0
    }
}

impl Default for SampleRate {
    fn default() -> Self {
        Self::CD
    }
}

/// Whether the result is one MP3 or one per chapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// One MP3, the source's chapters as ID3 chapter frames. The default.
    #[default]
    None,
    /// One MP3 per chapter of the source (a source without chapters gives one).
    Chapters,
}

impl Split {
    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "false" | "off" => Some(Self::None),
            "chapters" => Some(Self::Chapters),
            _ => None,
        }
    }
}

/// What a job is asked for. Every field is optional: absent means the default, or the preset's
/// value when a preset is named. A tag set to `""` is left out of the MP3 rather than taken
/// from the source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Options {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<Bitrate>,
    /// Where the clip begins in the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Position>,
    /// Where the clip ends in the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalize: Option<Normalize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub album: Option<String>,
    /// A year, 1000-9999; absent takes the source's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover: Option<Cover>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Channels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<SampleRate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// A saved preset of the owner's, applied under the other fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

/// Why an option was refused: the field, a stable code, a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The field as the client named it.
    pub field: String,
    /// `invalid_option`, `invalid_bitrate`, `unknown_field`, `field_too_large`,
    /// `unknown_preset`, `duplicate_field`.
    pub code: &'static str,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl OptionError {
    fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.chars().take(64).collect(),
            code,
            message: message.into(),
        }
    }

    fn invalid(field: &str, accepted: &str) -> Self {
        Self::new(
            field,
            "invalid_option",
            format!("`{field}` must be {accepted}"),
        )
    }

    /// An unknown field.
    pub fn unknown(field: &str) -> Self {
        let shown: String = field.chars().take(64).collect();
        Self::new(
            field,
            "unknown_field",
            format!(
                "`{shown}` is not an option; the options are {}",
                FIELDS.join(", ")
            ),
        )
    }

    /// A text value longer than [`MAX_FIELD_BYTES`] (or the route's own bound).
    pub fn too_large(field: &str, limit: usize) -> Self {
        let shown: String = field.chars().take(64).collect();
        Self::new(
            field,
            "field_too_large",
            format!("the field `{shown}` is longer than {limit} bytes"),
        )
    }

    /// A field given more than once: which one was meant is not ours to guess.
    pub fn duplicate(field: &str) -> Self {
        let shown: String = field.chars().take(64).collect();
        Self::new(
            field,
            "duplicate_field",
            format!("`{shown}` is given more than once"),
        )
    }

    /// A preset the owner has not saved.
    pub fn unknown_preset(name: &str) -> Self {
        Self::new(
            "preset",
            "unknown_preset",
            format!("you have no preset named `{name}`"),
        )
    }
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadJson {
    /// A field is unknown, given twice or has a bad value.
    Option(OptionError),
    /// Not JSON of the request's shape.
    Json(String),
}

impl BadJson {
    /// The error code clients get.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Option(err) => err.code,
            Self::Json(_) => "invalid_json",
        }
    }

    /// The field at fault, if one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Option(err) => Some(&err.field),
            Self::Json(_) => None,
        }
    }
}

impl fmt::Display for BadJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Option(err) => err.fmt(f),
            Self::Json(message) => f.write_str(message),
        }
    }
}

/// A JSON body that must be an object. A member named twice in any of its objects is refused
/// (`duplicate_field`): serde_json would keep the last one, and which was meant is not ours to
/// guess.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, BadJson> {
    let object = serde_json::from_slice(body).map_err(|e| BadJson::Json(e.to_string()))?;
    if let Ok(FirstDuplicate(Some(name))) = serde_json::from_slice(body) {
        return Err(BadJson::Option(OptionError::duplicate(&name)));
    }
    Ok(object)
}

/// The first member name found twice in one object of a JSON value, at any depth.
struct FirstDuplicate(Option<String>);

impl<'de> Deserialize<'de> for FirstDuplicate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};

        struct Finder;

        impl<'de> Visitor<'de> for Finder {
            type Value = FirstDuplicate;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut first = None;
                while let Some(name) = map.next_key::<String>()? {
                    let FirstDuplicate(inner) = map.next_value()?;
                    if first.is_none() && !seen.insert(name.clone()) {
                        first = Some(name);
                    }
                    first = first.or(inner);
                }
                Ok(FirstDuplicate(first))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut first = None;
                while let Some(FirstDuplicate(inner)) = seq.next_element()? {
                    first = first.or(inner);
                }
                Ok(FirstDuplicate(first))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(FirstDuplicate(None))
            }
        }

        d.deserialize_any(Finder)
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionError {}

impl Options {
    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether `name` is an option field.
    pub fn is_field(name: &str) -> bool {
        FIELDS.contains(&name)
    }

    /// Sets the field `name` from its text. A field given twice is refused: which one was
    /// meant is not ours to guess.
    pub fn set(&mut self, name: &str, text: &str) -> Result<(), OptionError> {
        if text.len() > MAX_FIELD_BYTES {
            return Err(OptionError::too_large(name, MAX_FIELD_BYTES));
        }
        macro_rules! put {
            ($slot:expr, $value:expr) => {{
                if $slot.is_some() {
                    return Err(OptionError::duplicate(name));
                }
                $slot = Some($value);
            }};
        }
        match name {
            "bitrate" => put!(
                self.bitrate,
                text.parse::<Bitrate>().map_err(|e: InvalidBitrate| {
                    OptionError::new(name, InvalidBitrate::CODE, e.to_string())
                })?
            ),
            "start" | "end" => {
                let at = Position::parse(text).ok_or_else(|| {
                    OptionError::invalid(
                        name,
                        "a time in the source: seconds (90, 90.5) or HH:MM:SS.mmm, at most 100 hours",
                    )
                })?;
                if name == "start" {
                    put!(self.start, at);
                } else {
                    put!(self.end, at);
                }
            }
            "normalize" => put!(
                self.normalize,
                Normalize::parse(text).ok_or_else(|| OptionError::invalid(
                    name,
                    "a loudness target in LUFS (-14, -16 or -23), true (-16) or false"
                ))?
            ),
            "title" => put!(self.title, tag(name, text, MAX_TAG_CHARS)?),
            "artist" => put!(self.artist, tag(name, text, MAX_TAG_CHARS)?),
            "album" => put!(self.album, tag(name, text, MAX_TAG_CHARS)?),
            "comment" => put!(self.comment, tag(name, text, MAX_COMMENT_CHARS)?),
            "year" => put!(
                self.year,
                text.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|y| (1000..=9999).contains(y) && text.trim().len() == 4)
                    .ok_or_else(|| OptionError::invalid(name, "a four-digit year"))?
            ),
            "cover" => put!(
                self.cover,
                Cover::parse(text).ok_or_else(|| OptionError::invalid(
                    name,
                    "auto, none, or a time in the video (seconds or HH:MM:SS.mmm)"
                ))?
            ),
            "channels" => put!(
                self.channels,
                Channels::parse(text)
                    .ok_or_else(|| OptionError::invalid(name, "mono or stereo"))?
            ),
            "sample_rate" => put!(
                self.sample_rate,
                SampleRate::parse(text)
                    .ok_or_else(|| OptionError::invalid(name, "44100 or 48000"))?
            ),
            "split" => put!(
                self.split,
                Split::parse(text).ok_or_else(|| OptionError::invalid(name, "none or chapters"))?
            ),
            "preset" => put!(self.preset, preset_name(text)?),
            other => return Err(OptionError::unknown(other)),
        }
        Ok(())
    }

    /// Sets a field from a JSON value: a string, or a number or boolean read as its text;
    /// `null` leaves the field unset.
    pub fn set_json(&mut self, name: &str, value: &serde_json::Value) -> Result<(), OptionError> {
        use serde_json::Value;
        let text = match value {
            Value::Null => return Ok(()),
            Value::String(s) => s.clone(),
            // JSON does not tell 5 from 5.0: a whole number is read as the integer it is.
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i.to_string(),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
                _ => n.to_string(),
            },
            Value::Bool(b) => b.to_string(),
            Value::Array(_) | Value::Object(_) => {
                if !Self::is_field(name) {
                    return Err(OptionError::unknown(name));
                }
                return Err(OptionError::new(
                    name,
                    if name == "bitrate" {
                        InvalidBitrate::CODE
                    } else {
                        "invalid_option"
                    },
                    format!("`{name}` must be a string, a number or a boolean"),
                ));
            }
        };
        self.set(name, &text)
    }

    /// Options from a JSON object's fields (all of them options).
    pub fn from_json(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, OptionError> {
        let mut options = Self::default();
        for (name, value) in object {
            options.set_json(name, value)?;
        }
        options.check()?;
        Ok(options)
    }

    /// What holds across fields: a clip ends after it starts (by [`MIN_CLIP_MILLIS`]).
    /// Against the source, the converter checks the rest.
    pub fn check(&self) -> Result<(), OptionError> {
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end.millis() < start.millis() + MIN_CLIP_MILLIS
        {
            return Err(OptionError::new(
                "end",
                "invalid_option",
                format!(
                    "`end` ({}) must be at least {MIN_CLIP_MILLIS} ms after `start` ({})",
                    end, start
                ),
            ));
        }
        if self.end.is_some_and(|end| end.millis() < MIN_CLIP_MILLIS) {
            return Err(OptionError::new(
                "end",
                "invalid_option",
                format!("`end` must be at least {MIN_CLIP_MILLIS} ms into the source"),
            ));
        }
        Ok(())
    }

    /// These options over `base` (a preset's): each field given here wins. The preset's name
    /// stays on the result, so that the job records which it used.
    pub fn over(self, base: Options) -> Result<Options, OptionError> {
        let merged = Options {
            bitrate: self.bitrate.or(base.bitrate),
            start: self.start.or(base.start),
            end: self.end.or(base.end),
            normalize: self.normalize.or(base.normalize),
            title: self.title.or(base.title),
            artist: self.artist.or(base.artist),
            album: self.album.or(base.album),
            year: self.year.or(base.year),
            comment: self.comment.or(base.comment),
            cover: self.cover.or(base.cover),
            channels: self.channels.or(base.channels),
            sample_rate: self.sample_rate.or(base.sample_rate),
            split: self.split.or(base.split),
            preset: self.preset.or(base.preset),
        };
        merged.check()?;
        Ok(merged)
    }

    /// The loudness target, if normalizing.
    pub fn loudness_target(&self) -> Option<i8> {
        self.normalize.and_then(Normalize::target)
    }
}

impl<'de> Deserialize<'de> for Options {
    /// A JSON object read by [`Options::from_json`]: the one rule, wherever options are read.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        Self::from_json(&object).map_err(serde::de::Error::custom)
    }
}

/// A user's saved set of options (`/v1/presets`), applied to a job by its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// Its name (see [`preset_name`]), unique per user.
    pub name: String,
    /// What it asks for; never names another preset.
    pub options: Options,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// `GET /v1/presets`: a user's presets by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresetList {
    pub presets: Vec<Preset>,
}

/// A tag's text: trimmed, no control characters (a comment may hold line breaks and tabs),
/// at most `max` characters. Empty means "leave this tag out".
fn tag(name: &str, text: &str, max: usize) -> Result<String, OptionError> {
    let text = text.trim().replace("\r\n", "\n");
    let allowed = |c: char| !c.is_control() || (name == "comment" && matches!(c, '\n' | '\t'));
    if !text.chars().all(allowed) {
        return Err(OptionError::invalid(
            name,
            "text without control characters",
        ));
    }
    if text.chars().count() > max {
        return Err(OptionError::new(
            name,
            "field_too_large",
            format!("`{name}` is longer than {max} characters"),
        ));
    }
    Ok(text)
}

/// A preset's name: 1-64 letters, digits, spaces, `-`, `_` or `.`, not all spaces.
pub fn preset_name(text: &str) -> Result<String, OptionError> {
    let name = text.trim();
    let ok = !name.is_empty()
        && !name.chars().all(|c| c == '.')
        && name.chars().count() <= MAX_PRESET_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if !ok {
        return Err(OptionError::invalid(
            "preset",
            "a preset name: 1-64 letters, digits, spaces, `-`, `_` or `.`",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(pairs: &[(&str, &str)]) -> Result<Options, OptionError> {
        let mut options = Options::default();
        for (name, value) in pairs {
            options.set(name, value)?;
        }
        options.check()?;
        Ok(options)
    }

    #[test]
    fn positions_read_seconds_and_clock_times() {
        for (text, millis) in [
            ("0", 0),
            ("90", 90_000),
            ("90.5", 90_500),
            ("90.25", 90_250),
            ("0.001", 1),
            ("1:30", 90_000),
            ("01:30.5", 90_500),
            ("1:01:30.250", 3_690_250),
            (" 12 ", 12_000),
            ("100:00:00", MAX_MILLIS),
        ] {
            assert_eq!(
                Position::parse(text),
                Some(Position::from_millis(millis)),
                "{text}"
            );
        }
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1.2345",
            "1:60",
            "1:5",
            "1:2:3:4",
            "abc",
            "1e3",
            "NaN",
            "inf",
            "100:00:00.001",
            "99999999999",
            "1:-30",
            "+5",
            "٣",
        ] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
        assert_eq!(Position::from_millis(3_690_250).to_string(), "01:01:30.250");
        assert_eq!(
            serde_json::to_value(Position::from_millis(90_500)).unwrap(),
            json!(90.5)
        );
    }

    #[test]
    fn each_field_reads_its_values() {
        let o = options(&[
            ("bitrate", "v2"),
            ("start", "1:00"),
            ("end", "90.5"),
            ("normalize", "-23"),
            ("title", "  Talk  "),
            ("artist", "Ada"),
            ("album", ""),
            ("year", "2024"),
            ("comment", "line one\r\nline two"),
            ("cover", "12.5"),
            ("channels", "mono"),
            ("sample_rate", "48000"),
            ("split", "chapters"),
            ("preset", "my podcast"),
        ])
        .unwrap();
        assert_eq!(o.bitrate, Some(Bitrate::Variable(2)));
        assert_eq!(o.start, Some(Position::from_millis(60_000)));
        assert_eq!(o.end, Some(Position::from_millis(90_500)));
        assert_eq!(o.loudness_target(), Some(-23));
        assert_eq!(o.title.as_deref(), Some("Talk"));
        assert_eq!(o.album.as_deref(), Some(""));
        assert_eq!(o.year, Some(2024));
        assert_eq!(o.comment.as_deref(), Some("line one\nline two"));
        assert_eq!(o.cover, Some(Cover::At(Position::from_millis(12_500))));
        assert_eq!(o.channels, Some(Channels::Mono));
        assert_eq!(o.sample_rate, Some(SampleRate::VIDEO));
        assert_eq!(o.split, Some(Split::Chapters));
        assert_eq!(o.preset.as_deref(), Some("my podcast"));
        for (text, expected) in [
            ("true", Normalize::Target(-16)),
            ("-14 LUFS", Normalize::Target(-14)),
            ("off", Normalize::Off),
        ] {
            assert_eq!(
                options(&[("normalize", text)]).unwrap().normalize,
                Some(expected)
            );
        }
        assert_eq!(
            options(&[("cover", "none")]).unwrap().cover,
            Some(Cover::None)
        );
        assert_eq!(
            options(&[("channels", "2")]).unwrap().channels,
            Some(Channels::Stereo)
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let long = "x".repeat(MAX_TAG_CHARS + 1);
        let huge = "x".repeat(10 * 1024 * 1024);
        for (pairs, field, code) in [
            (vec![("bitrate", "999")], "bitrate", "invalid_bitrate"),
            (vec![("start", "soon")], "start", "invalid_option"),
            (
                vec![("start", "20"), ("end", "10")],
                "end",
                "invalid_option",
            ),
            (
                vec![("start", "10"), ("end", "10.05")],
                "end",
                "invalid_option",
            ),
            (vec![("end", "0")], "end", "invalid_option"),
            (vec![("normalize", "-20")], "normalize", "invalid_option"),
            (vec![("title", long.as_str())], "title", "field_too_large"),
            (vec![("title", huge.as_str())], "title", "field_too_large"),
            (vec![("title", "a\u{0}b")], "title", "invalid_option"),
            (vec![("artist", "a\nb")], "artist", "invalid_option"),
            (vec![("year", "24")], "year", "invalid_option"),
            (vec![("year", "+2024")], "year", "invalid_option"),
            (vec![("cover", "middle")], "cover", "invalid_option"),
            (vec![("channels", "5.1")], "channels", "invalid_option"),
            (
                vec![("sample_rate", "22050")],
                "sample_rate",
                "invalid_option",
            ),
            (vec![("split", "silence")], "split", "invalid_option"),
            (vec![("preset", "../x")], "preset", "invalid_option"),
            (vec![("preset", " ")], "preset", "invalid_option"),
            (vec![("preset", "..")], "preset", "invalid_option"),
            (vec![("speed", "2")], "speed", "unknown_field"),
            (
                vec![("title", "a"), ("title", "b")],
                "title",
                "duplicate_field",
            ),
        ] {
            let err = options(&pairs).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.code),
                (field, code),
                "{pairs:?}: {err}"
            );
            assert!(err.message.contains(field), "{err}");
        }
    }

    #[test]
    fn json_bodies_name_each_member_once() {
        let field = |body: &str| match json_object(body.as_bytes()) {
            Ok(object) => Ok(object.len()),
            Err(err) => Err((err.code(), err.field().map(str::to_owned))),
        };
        let duplicate = |name: &str| Err(("duplicate_field", Some(name.to_owned())));
        assert_eq!(field(r#"{"a": 1, "b": [{"a": 2}, {"a": 3}]}"#), Ok(2));
        assert_eq!(field(r#"{"title": "a", "title": "b"}"#), duplicate("title"));
        assert_eq!(
            field(r#"{"options": {"end": 5, "end": 9}, "name": "x"}"#),
            duplicate("end")
        );
        assert_eq!(
            field(r#"[{"x": {"y": 1, "y": 1}}]"#).unwrap_err().0,
            "invalid_json"
        );
        assert_eq!(field(r#"{"x": [{"y": 1, "y": 1}]}"#), duplicate("y"));
        assert_eq!(field("{\"a\": 1,"), Err(("invalid_json", None)));
        let err = json_object(br#"{"url": "u", "url": "v"}"#).unwrap_err();
        assert_eq!(err.to_string(), "`url` is given more than once");
    }

    #[test]
    fn json_reads_the_same_rule_and_writes_what_it_reads() {
        let read: Options = serde_json::from_value(json!({
            "bitrate": 320, "start": 90, "end": "00:02:00", "normalize": true,
            "title": "T", "year": 2020, "cover": "none", "channels": "stereo",
            "sample_rate": 44100, "split": "none", "artist": null
        }))
        .unwrap();
        assert_eq!(read.start, Some(Position::from_millis(90_000)));
        assert_eq!(read.loudness_target(), Some(-16));
        assert_eq!(read.artist, None);
        let written = serde_json::to_value(&read).unwrap();
        assert_eq!(
            written,
            json!({
                "bitrate": "320", "start": 90.0, "end": 120.0, "normalize": -16,
                "title": "T", "year": 2020, "cover": "none", "channels": "stereo",
                "sample_rate": 44100, "split": "none"
            })
        );
        assert_eq!(serde_json::from_value::<Options>(written).unwrap(), read);
        let whole: Options =
            serde_json::from_value(json!({"year": 2020.0, "bitrate": 320.0})).unwrap();
        assert_eq!(whole.year, Some(2020));
        assert_eq!(whole.bitrate, Some(Bitrate::Constant(320)));
        let off: Options = serde_json::from_value(json!({"normalize": false})).unwrap();
        assert_eq!(
            serde_json::to_value(off).unwrap(),
            json!({"normalize": false})
        );
        for bad in [
            json!({"start": [1]}),
            json!({"x": 1}),
            json!({"end": 1, "start": 2}),
        ] {
            assert!(serde_json::from_value::<Options>(bad).is_err());
        }
        assert_eq!(serde_json::to_value(Options::default()).unwrap(), json!({}));
    }

    #[test]
    fn a_request_overrides_its_preset_field_by_field() {
        let preset = options(&[
            ("bitrate", "128"),
            ("normalize", "-16"),
            ("artist", "Show"),
            ("start", "5"),
        ])
        .unwrap();
        let request = options(&[("normalize", "off"), ("preset", "p"), ("end", "30")]).unwrap();
        let merged = request.over(preset.clone()).unwrap();
        assert_eq!(merged.bitrate, Some(Bitrate::Constant(128)));
        assert_eq!(merged.normalize, Some(Normalize::Off));
        assert_eq!(merged.artist.as_deref(), Some("Show"));
        assert_eq!(merged.start, Some(Position::from_millis(5000)));
        assert_eq!(merged.end, Some(Position::from_millis(30_000)));
        assert_eq!(merged.preset.as_deref(), Some("p"));
        // A merge can make a bad clip: a request's end before the preset's start.
        let early = options(&[("end", "3")]).unwrap();
        assert_eq!(early.over(preset).unwrap_err().field, "end");
    }
}
