//! What a conversion will do, worked out from the source's probe and the job's options before
//! ffmpeg runs: the clip (checked against the source), the tags, the chapters and tracks, the
//! cover, the channels and sample rate; and the argument lists of ffmpeg's runs, as plain
//! functions of those.

use std::ffi::OsString;
use std::path::Path;

use mp3conv_contract::options::{Channels, Cover, MIN_CLIP_MILLIS, Options, Position, Split};

use super::chapters::{self, MAX_ID3_CHAPTERS, Span};
use super::cover::{self, CoverFrom};
use super::probe::{MediaInfo, SourceTags};
use super::{ConvertError, Input, Read, confined_input, text};
use crate::job::{Bitrate, MAX_TRACKS};

/// How far past the source's end an `end` may be and still mean "to the end": a source's
/// duration is known to a few milliseconds, a user's idea of it less well.
pub const END_SLACK_MILLIS: u64 = 50;

/// The part of the source converted, in milliseconds of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clip {
    /// Where it begins.
    pub start: u64,
    /// Where it ends.
    pub end: u64,
    /// ffmpeg's `-to`: `None` reads to the source's end.
    pub to: Option<u64>,
}

impl Clip {
    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1000.0
    }
}

fn shown(millis: u64) -> Position {
    Position::from_millis(millis)
}

fn past_the_end(field: &'static str, at: u64, length: u64) -> ConvertError {
    ConvertError::Option {
        field,
        message: format!(
            "`{field}` ({}) is past the end of the source ({})",
            shown(at),
            shown(length)
        ),
    }
}

/// The clip `options` ask for, checked against the source's audio of `length` ms: `start`
/// must leave at least [`MIN_CLIP_MILLIS`] of it, `end` may pass its end by
/// [`END_SLACK_MILLIS`] at most. Without either (or from 0), the clip is the whole source,
/// however short.
pub fn clip(options: &Options, length: u64) -> Result<Clip, ConvertError> {
    let start = options.start.map_or(0, Position::millis);
    if start > 0 && start >= length {
        return Err(past_the_end("start", start, length));
    }
    if start > 0 && start + MIN_CLIP_MILLIS > length {
        return Err(ConvertError::Option {
            field: "start",
            message: format!(
                "`start` ({}) leaves less than {MIN_CLIP_MILLIS} ms of the source ({})",
                shown(start),
                shown(length)
            ),
        });
    }
    match options.end.map(Position::millis) {
        Some(end) if end > length + END_SLACK_MILLIS => Err(past_the_end("end", end, length)),
        // `Options::check` saw to it that an end comes MIN_CLIP_MILLIS after the start.
        Some(end) if end < length => Ok(Clip {
            start,
            end,
            to: Some(end),
        }),
        _ => Ok(Clip {
            start,
            end: length,
            to: None,
        }),
    }
}

/// The MP3's tags. `None` leaves a tag out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
    /// Four digits.
    pub year: Option<String>,
    pub comment: Option<String>,
}

impl Tags {
    /// The tags as `-metadata` pairs for ffmpeg's mp3 muxer (ID3v2 text frames: TIT2, TPE1,
    /// TALB, TYER). The comment is not among them: the muxer would write it as a
    /// user-defined text frame (`TXXX:comment`) that players do not show, so it is added as a
    /// real comment frame afterwards ([`super::id3`]).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        [
            ("title", &self.title),
            ("artist", &self.artist),
            ("album", &self.album),
            ("date", &self.year),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key, v)))
        .collect()
    }
}

/// A year from a date tag (`2019`, `2019-05-04`, `2019-05-04T10:00:00Z`).
fn year(date: &str) -> Option<String> {
    let digits: String = date.trim().chars().take(4).collect();
    let after = date.trim().chars().nth(4);
    (digits.len() == 4
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
        && after.is_none_or(|c| !c.is_ascii_digit()))
    .then_some(digits)
}

/// What the job knows of its source apart from the file: the name it goes by, and what a
/// video page said of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naming<'a> {
    /// The file's or link's name: the title when nothing better is known.
    pub name: &'a str,
    /// The page's title: before the file's own (a downloaded file's tags are often a
    /// site's internals, the page's title is what its user saw).
    pub title: Option<&'a str>,
    /// The page's uploader: the artist when the file names none.
    pub artist: Option<&'a str>,
    /// The page's image (its thumbnail), fetched: the cover when the source has no picture of
    /// its own.
    pub image: Option<&'a Path>,
}

impl<'a> From<&'a str> for Naming<'a> {
    fn from(name: &'a str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }
}

/// The MP3's tags: each option's value, else the page's title (for the title), else the
/// source's own tag, else the page's uploader (for the artist) or the name (for the title); an
/// option set to `""` leaves its tag out. Only these tags: a container's internals
/// (`major_brand`, `compatible_brands`, `encoder`...) never reach the MP3.
pub fn tags<'a>(options: &Options, source: &SourceTags, naming: impl Into<Naming<'a>>) -> Tags {
    let naming = naming.into();
    let known = |value: Option<&str>| {
        value
            .map(|v| text::tag(v, text::MAX_TAG_CHARS, false))
            .filter(|v| !v.is_empty())
    };
    let from_source = |keys: &[&str], max: usize, breaks: bool| {
        keys.iter()
            .find_map(|key| source.get(key))
            .map(|value| text::tag(value, max, breaks))
            .filter(|value| !value.is_empty())
    };
    let pick = |option: &Option<String>, source: Option<String>| match option {
        Some(value) if value.is_empty() => None,
        Some(value) => Some(value.clone()),
        None => source,
    };
    Tags {
        title: pick(
            &options.title,
            known(naming.title)
                .or_else(|| from_source(&["title"], text::MAX_TAG_CHARS, false))
                .or_else(|| known(Some(naming.name))),
        ),
        artist: pick(
            &options.artist,
            from_source(&["artist", "album_artist"], text::MAX_TAG_CHARS, false)
                .or_else(|| known(naming.artist)),
        ),
        album: pick(
            &options.album,
            from_source(&["album"], text::MAX_TAG_CHARS, false),
        ),
        year: options
            .year
            .map(|y| y.to_string())
            .or_else(|| ["date", "year"].iter().find_map(|k| year(source.get(k)?))),
        comment: pick(
            &options.comment,
            from_source(&["comment", "description"], text::MAX_COMMENT_CHARS, true),
        ),
    }
}

/// The channel layout to convert to, if any: the one asked for, else stereo for a source with
/// more than two channels (MP3 holds at most two), else the source's own.
pub fn layout(asked: Option<Channels>, source_channels: Option<u32>) -> Option<&'static str> {
    match asked {
        Some(Channels::Mono) => Some("mono"),
        Some(Channels::Stereo) => Some("stereo"),
        None if source_channels.is_some_and(|c| c > 2) => Some("stereo"),
        None => None,
    }
}

/// The audio filter chain: the channel conversion first (the loudness is that of what is
/// encoded: a downmix changes it), then `loudness` (a loudnorm filter).
pub fn filters(layout: Option<&str>, loudness: Option<String>) -> Option<String> {
    let chain: Vec<String> = layout
        .map(|l| format!("aformat=channel_layouts={l}"))
        .into_iter()
        .chain(loudness)
        .collect();
    (!chain.is_empty()).then(|| chain.join(","))
}

/// Everything a conversion does, before it does it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub clip: Clip,
    pub tags: Tags,
    /// The MP3's chapters (its CHAP frames).
    pub chapters: Vec<Span>,
    /// One per track when split by chapters; empty otherwise.
    pub tracks: Vec<Span>,
    pub cover: Option<CoverFrom>,
    /// The channel layout to convert to.
    pub layout: Option<&'static str>,
    /// The MP3's sample rate, Hz.
    pub sample_rate: u32,
    /// The loudness target, LUFS, when normalizing.
    pub loudness: Option<i8>,
}

impl Plan {
    /// Works out a conversion of `source` for `options`, its tags' defaults from `naming`
    /// (see [`tags`]). Fails (naming the option) when the options do not fit the source.
    pub fn new<'a>(
        source: &MediaInfo,
        options: &Options,
        naming: impl Into<Naming<'a>>,
    ) -> Result<Self, ConvertError> {
        let naming = naming.into();
        let length = source
            .audio_seconds()
            .ok_or_else(|| ConvertError::NotMedia("the audio has no known duration".into()))?;
        let length = (length * 1000.0).round() as u64;
        let clip = clip(options, length)?;
        let cover = options.cover.unwrap_or(Cover::Auto);
        if let Cover::At(at) = cover {
            let video = source
                .seconds()
                .map_or(length, |s| (s * 1000.0).round() as u64);
            if at.millis() >= video {
                return Err(past_the_end("cover", at.millis(), video));
            }
            if let Some((width, height)) = source
                .video
                .filter(|v| !cover::fits(v))
                .and_then(|v| v.size)
            {
                return Err(ConvertError::Option {
                    field: "cover",
                    message: format!(
                        "the video's frames ({width}x{height}) are too large to take a cover \
                         from (at most {} pixels): use `cover=auto` or `cover=none`",
                        super::MAX_SOURCE_PIXELS
                    ),
                });
            }
        }
        let tags = tags(options, &source.tags, naming);
        let mut chapters = chapters::cut(&source.chapters, clip.start, clip.end);
        let tracks = match options.split.unwrap_or_default() {
            Split::None => Vec::new(),
            Split::Chapters if chapters.len() > MAX_TRACKS as usize => {
                return Err(ConvertError::TooManyChapters {
                    count: chapters.len(),
                });
            }
            Split::Chapters if chapters.is_empty() => vec![Span {
                start: 0,
                end: clip.end - clip.start,
                title: tags.title.clone().unwrap_or_else(|| "Chapter 1".into()),
            }],
            Split::Chapters => chapters.clone(),
        };
        if chapters.len() > MAX_ID3_CHAPTERS {
            tracing::warn!(
                chapters = chapters.len(),
                "more chapters than an ID3 table of contents holds; leaving them out"
            );
            chapters.clear();
        }
        Ok(Self {
            cover: cover::choose(cover, source, &clip, naming.image.is_some()),
            layout: layout(
                options.channels,
                source.audio.as_ref().and_then(|a| a.channels),
            ),
            sample_rate: options.sample_rate.unwrap_or_default().hz(),
            loudness: options.loudness_target(),
            clip,
            tags,
            chapters,
            tracks,
        })
    }

    /// Seconds of media ffmpeg goes through: the clip once to encode it, once more to measure
    /// its loudness, once more for its tracks.
    pub fn work_seconds(&self) -> f64 {
        let passes = 1 + u32::from(self.loudness.is_some()) + u32::from(!self.tracks.is_empty());
        self.clip.seconds() * f64::from(passes)
    }
}

/// The source as an input: where the part read begins and ends (accurate seeking: `-ss` and
/// `-to` before `-i`), confined to its file.
fn source_input(
    input: Read<'_>,
    read_rate: Option<f64>,
    from: u64,
    to: Option<u64>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(rate) = read_rate {
        args.extend(["-readrate".into(), rate.to_string().into()]);
    }
    if from > 0 {
        args.extend(["-ss".into(), shown(from).to_string().into()]);
    }
    if let Some(to) = to {
        args.extend(["-to".into(), shown(to).to_string().into()]);
    }
    args.extend(confined_input(input, Input::Source));
    args
}

/// The loudness measuring pass: the clip through `filters` into nothing, at the info log
/// level with each line's level marked (`[info]`, `[error]`), since loudnorm prints its
/// figures at the info level.
pub(crate) fn measure_args(
    input: Read<'_>,
    read_rate: Option<f64>,
    clip: &Clip,
    filters: &str,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+info",
    ]
    .map(OsString::from)
    .to_vec();
    args.extend(source_input(input, read_rate, clip.start, clip.to));
    args.extend(
        [
            "-map",
            "0:a:0",
            "-vn",
            "-sn",
            "-dn",
            "-af",
            filters,
            "-progress",
            "pipe:1",
            "-f",
            "null",
            "-",
        ]
        .map(OsString::from),
    );
    args
}

/// One encoding run: the source's audio from `from` to `to` (ms of the source) into an MP3.
#[derive(Debug, Clone)]
pub struct Encode<'a> {
    pub(crate) input: Read<'a>,
    pub read_rate: Option<f64>,
    pub from: u64,
    pub to: Option<u64>,
    /// An `ffmetadata` file with the MP3's chapters.
    pub chapters: Option<&'a Path>,
    pub filters: Option<String>,
    pub sample_rate: u32,
    pub bitrate: Bitrate,
    pub metadata: Vec<(&'static str, String)>,
    pub output: &'a Path,
}

/// ffmpeg's arguments for an encoding run.
///
/// Tags are written as ID3v2.3 (`-id3v2_version 3`), not 2.4: Windows' Explorer and Media
/// Player and many car and portable players read 2.3 only, and 2.3 holds everything written
/// here (text frames, CHAP/CTOC chapters, and the APIC picture added afterwards, see `id3`).
/// No tag is copied from the inputs (`-map_metadata` from the chapters file, which has none, or
/// `-1`), and `+bitexact` keeps ffmpeg from adding its own `encoder` tag.
pub fn encode_args(run: &Encode<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .map(OsString::from)
        .to_vec();
    args.extend(source_input(run.input, run.read_rate, run.from, run.to));
    // The chapters are the second input.
    let chapters = run.chapters.map(|path| {
        args.extend(confined_input(path, Input::Chapters));
        1
    });
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-map", "0:a:0"]);
    match chapters {
        Some(chapters) => push(&[
            "-map_metadata",
            &chapters.to_string(),
            "-map_chapters",
            &chapters.to_string(),
        ]),
        None => push(&["-map_metadata", "-1", "-map_chapters", "-1"]),
    }
    if let Some(filters) = &run.filters {
        push(&["-af", filters]);
    }
    push(&["-ar", &run.sample_rate.to_string(), "-c:a", "libmp3lame"]);
    let [rate_flag, rate] = crate::job::ffmpeg_args(run.bitrate);
    push(&[&rate_flag, &rate]);
    for (key, value) in &run.metadata {
        push(&["-metadata", &format!("{key}={value}")]);
    }
    push(&[
        "-fflags",
        "+bitexact",
        "-id3v2_version",
        "3",
        "-progress",
        "pipe:1",
        "-f",
        "mp3",
        "-y",
    ]);
    args.push(run.output.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::probe::{AudioStream, Chapter, Visual};
    use mp3conv_contract::options::SampleRate;

    fn options(pairs: &[(&str, &str)]) -> Options {
        let mut options = Options::default();
        for (name, value) in pairs {
            options.set(name, value).unwrap();
        }
        options
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn clips_are_checked_against_the_source() {
        let length = 192_345;
        let ok = |start: u64, end: u64, to: Option<u64>| Ok(Clip { start, end, to });
        /// Options, and the clip or the refusal's (field, message).
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Clip, (&'a str, &'a str)>);
        let table: [Case; 9] = [
            (&[], ok(0, length, None)),
            (&[("start", "5")], ok(5000, length, None)),
            (
                &[("start", "5"), ("end", "10.5")],
                ok(5000, 10_500, Some(10_500)),
            ),
            // An end at most 50 ms past the end reads to the end.
            (&[("end", "192.395")], ok(0, length, None)),
            (&[("end", "192.345")], ok(0, length, None)),
            (
                &[("end", "192.396")],
                Err((
                    "end",
                    "`end` (00:03:12.396) is past the end of the source (00:03:12.345)",
                )),
            ),
            (
                &[("start", "300")],
                Err((
                    "start",
                    "`start` (00:05:00.000) is past the end of the source (00:03:12.345)",
                )),
            ),
            (
                &[("start", "192.345")],
                Err((
                    "start",
                    "`start` (00:03:12.345) is past the end of the source (00:03:12.345)",
                )),
            ),
            (
                &[("start", "192.3")],
                Err((
                    "start",
                    "`start` (00:03:12.300) leaves less than 100 ms of the source (00:03:12.345)",
                )),
            ),
        ];
        for (pairs, expected) in table {
            let got = clip(&options(pairs), length).map_err(|e| match e {
                ConvertError::Option { field, message } => (field, message),
                other => panic!("{other}"),
            });
            let expected = expected.map_err(|(f, m)| (f, m.to_owned()));
            assert_eq!(got, expected, "{pairs:?}");
        }
        // A source shorter than a clip may be converts whole when no clip is asked for.
        let whole = Clip {
            start: 0,
            end: 40,
            to: None,
        };
        assert_eq!(clip(&options(&[]), 40).unwrap(), whole);
        assert_eq!(clip(&options(&[("start", "0")]), 40).unwrap(), whole);
        assert!(clip(&options(&[("start", "0.001")]), 40).is_err());
    }

    fn source_tags(pairs: &[(&str, &str)]) -> SourceTags {
        SourceTags::from_raw(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn tags_come_from_options_then_the_source_then_the_name() {
        let mp4 = source_tags(&[
            ("major_brand", "isom"),
            ("compatible_brands", "isomiso2avc1mp41"),
            ("encoder", "Lavf59.27.100"),
            ("title", "Source Title"),
            ("ARTIST", "Source Artist"),
            ("date", "2019-05-04"),
            ("comment", "line 1\nline 2\u{7}"),
        ]);
        let none = SourceTags::default();
        let tag = |s: &str| Some(s.to_owned());
        let table = [
            (
                options(&[]),
                &mp4,
                Tags {
                    title: tag("Source Title"),
                    artist: tag("Source Artist"),
                    album: None,
                    year: tag("2019"),
                    comment: tag("line 1\nline 2"),
                },
            ),
            (
                options(&[
                    ("title", "Mine"),
                    ("artist", ""),
                    ("year", "2024"),
                    ("album", "A"),
                ]),
                &mp4,
                Tags {
                    title: tag("Mine"),
                    artist: None,
                    album: tag("A"),
                    year: tag("2024"),
                    comment: tag("line 1\nline 2"),
                },
            ),
            (
                options(&[("comment", "")]),
                &none,
                Tags {
                    title: tag("Holiday clip"),
                    ..Tags::default()
                },
            ),
            (options(&[("title", "")]), &none, Tags::default()),
        ];
        for (options, source, expected) in table {
            assert_eq!(
                tags(&options, source, "Holiday clip"),
                expected,
                "{options:?}"
            );
        }
        let written = tags(&options(&[]), &mp4, "x").metadata();
        assert_eq!(
            written,
            [
                ("title", "Source Title".to_owned()),
                ("artist", "Source Artist".to_owned()),
                ("date", "2019".to_owned())
            ]
        );
    }

    #[test]
    fn years_are_four_digits_of_a_date() {
        for (date, expected) in [
            ("2019", Some("2019")),
            ("2019-05-04", Some("2019")),
            ("2019-05-04T10:00:00Z", Some("2019")),
            ("20190504", None),
            ("0999", None),
            ("May 2019", None),
            ("", None),
        ] {
            assert_eq!(year(date).as_deref(), expected, "{date}");
        }
    }

    #[test]
    fn channels_and_filters() {
        for (asked, source, expected) in [
            (None, Some(1), None),
            (None, Some(2), None),
            (None, Some(6), Some("stereo")),
            (None, None, None),
            (Some(Channels::Mono), Some(6), Some("mono")),
            (Some(Channels::Stereo), Some(1), Some("stereo")),
        ] {
            assert_eq!(layout(asked, source), expected, "{asked:?} {source:?}");
        }
        assert_eq!(filters(None, None), None);
        assert_eq!(
            filters(Some("mono"), None).as_deref(),
            Some("aformat=channel_layouts=mono")
        );
        assert_eq!(
            filters(Some("stereo"), Some("loudnorm=I=-16".into())).as_deref(),
            Some("aformat=channel_layouts=stereo,loudnorm=I=-16")
        );
    }

    /// A video of 6 s (or a second per chapter, if longer) with `chapters` equal chapters.
    fn video_source(chapters: usize) -> MediaInfo {
        let length = (chapters as f64).max(6.0);
        MediaInfo {
            format: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration: Some(length),
            audio: Some(AudioStream {
                duration: Some(length),
                sample_rate: Some(48_000),
                channels: Some(2),
            }),
            chapters: (0..chapters)
                .map(|i| Chapter {
                    start: i as f64 * length / chapters as f64,
                    end: (i + 1) as f64 * length / chapters as f64,
                    title: None,
                })
                .collect(),
            video: Some(Visual {
                index: 0,
                size: Some((1280, 720)),
            }),
            ..MediaInfo::default()
        }
    }

    #[test]
    fn a_plan_checks_the_cover_time_and_counts_tracks() {
        let source = video_source(3);
        let plan = Plan::new(&source, &options(&[]), "clip").unwrap();
        assert_eq!(plan.chapters.len(), 3);
        assert!(plan.tracks.is_empty());
        assert_eq!(plan.sample_rate, 44_100);
        assert_eq!(plan.work_seconds(), 6.0);
        assert_eq!(
            plan.cover,
            Some(CoverFrom::Thumbnail {
                stream: 0,
                around: 2.0
            })
        );

        let plan = Plan::new(
            &source,
            &options(&[
                ("split", "chapters"),
                ("normalize", "true"),
                ("sample_rate", "48000"),
                ("start", "3"),
            ]),
            "clip",
        )
        .unwrap();
        assert_eq!(plan.tracks.len(), 2);
        assert_eq!(plan.tracks, plan.chapters);
        assert_eq!(plan.loudness, Some(-16));
        assert_eq!(plan.sample_rate, SampleRate::VIDEO.hz());
        assert_eq!(plan.work_seconds(), 9.0);

        // A source without chapters splits into one track, the whole clip.
        let plan = Plan::new(&video_source(0), &options(&[("split", "chapters")]), "clip").unwrap();
        assert_eq!(
            plan.tracks,
            [Span {
                start: 0,
                end: 6000,
                title: "clip".into()
            }]
        );

        let err = Plan::new(&source, &options(&[("cover", "6")]), "clip").unwrap_err();
        assert_eq!(err.field(), Some("cover"));
        assert!(Plan::new(&source, &options(&[("cover", "5.9")]), "clip").is_ok());
        // Frames too large to take a cover from: none by default, an error when asked for one.
        let huge = MediaInfo {
            video: Some(Visual {
                index: 0,
                size: Some((8192, 8192)),
            }),
            ..source.clone()
        };
        assert_eq!(Plan::new(&huge, &options(&[]), "clip").unwrap().cover, None);
        let err = Plan::new(&huge, &options(&[("cover", "1")]), "clip").unwrap_err();
        assert_eq!(err.field(), Some("cover"));
        assert!(err.to_string().contains("8192x8192"), "{err}");

        let many = video_source(MAX_TRACKS as usize + 1);
        let err = Plan::new(&many, &options(&[("split", "chapters")]), "clip").unwrap_err();
        assert_eq!(
            (err.code(), err.field()),
            ("too_many_chapters", Some("split"))
        );
        assert!(err.is_permanent());
        // Not split, they are only chapters.
        assert_eq!(
            Plan::new(&many, &options(&[]), "clip")
                .unwrap()
                .chapters
                .len(),
            101
        );
    }

    #[test]
    fn measuring_arguments() {
        let clip = Clip {
            start: 1500,
            end: 4000,
            to: Some(4000),
        };
        let mut expected = strings(&[
            "-hide_banner".into(),
            "-nostdin".into(),
            "-nostats".into(),
            "-loglevel".into(),
            "level+info".into(),
            "-ss".into(),
            "00:00:01.500".into(),
            "-to".into(),
            "00:00:04.000".into(),
        ]);
        expected.extend(strings(&confined_input(Path::new("/w/v"), Input::Source)));
        expected.extend(
            [
                "-map",
                "0:a:0",
                "-vn",
                "-sn",
                "-dn",
                "-af",
                "loudnorm",
                "-progress",
                "pipe:1",
                "-f",
                "null",
                "-",
            ]
            .map(str::to_owned),
        );
        assert_eq!(
            strings(&measure_args(
                Path::new("/w/v").into(),
                None,
                &clip,
                "loudnorm"
            )),
            expected
        );
    }

    #[test]
    fn encoding_arguments() {
        let source = strings(&confined_input(Path::new("/w/v"), Input::Source));
        let chapters = strings(&confined_input(Path::new("/w/c"), Input::Chapters));
        let head = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"];
        let tail = [
            "-fflags",
            "+bitexact",
            "-id3v2_version",
            "3",
            "-progress",
            "pipe:1",
            "-f",
            "mp3",
            "-y",
            "/w/out.mp3",
        ];
        let base = Encode {
            input: Path::new("/w/v").into(),
            read_rate: None,
            from: 0,
            to: None,
            chapters: None,
            filters: None,
            sample_rate: 44_100,
            bitrate: Bitrate::Constant(192),
            metadata: vec![],
            output: Path::new("/w/out.mp3"),
        };
        let join = |parts: &[&[String]]| parts.concat();
        let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let audio = owned(&["-map", "0:a:0"]);
        let untagged = owned(&["-map_metadata", "-1", "-map_chapters", "-1"]);
        let default_encoding = owned(&["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "192k"]);
        let table: Vec<(Encode, Vec<String>)> = vec![
            // The plainest run: the whole source, no tags, no chapters.
            (
                base.clone(),
                join(&[
                    &owned(&head),
                    &source,
                    &audio,
                    &untagged,
                    &default_encoding,
                    &owned(&tail),
                ]),
            ),
            // Everything: a clip read slowly, chapters, filters, tags (the cover is added to
            // the tag afterwards: see `id3`).
            (
                Encode {
                    read_rate: Some(0.5),
                    from: 2000,
                    to: Some(4500),
                    chapters: Some(Path::new("/w/c")),
                    filters: Some("aformat=channel_layouts=mono".into()),
                    sample_rate: 48_000,
                    bitrate: Bitrate::Variable(2),
                    metadata: vec![("title", "T = x".into()), ("track", "2/3".into())],
                    ..base.clone()
                },
                join(&[
                    &owned(&head),
                    &owned(&[
                        "-readrate",
                        "0.5",
                        "-ss",
                        "00:00:02.000",
                        "-to",
                        "00:00:04.500",
                    ]),
                    &source,
                    &chapters,
                    &audio,
                    &owned(&[
                        "-map_metadata",
                        "1",
                        "-map_chapters",
                        "1",
                        "-af",
                        "aformat=channel_layouts=mono",
                        "-ar",
                        "48000",
                        "-c:a",
                        "libmp3lame",
                        "-q:a",
                        "2",
                        "-metadata",
                        "title=T = x",
                        "-metadata",
                        "track=2/3",
                    ]),
                    &owned(&tail),
                ]),
            ),
        ];
        for (run, expected) in table {
            assert_eq!(strings(&encode_args(&run)), expected, "{run:?}");
        }
    }
}
