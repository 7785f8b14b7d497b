//! The MP3's cover art: the source's own picture, a representative frame of its video or the
//! frame at a chosen time, as a JPEG that fits in [`MAX_SIDE`] x [`MAX_SIDE`] (never scaled
//! up), written to a file by its own ffmpeg run and embedded by the encoding runs as an ID3
//! APIC frame (front cover). One extraction serves the whole MP3 and every track.
//!
//! A cover costs memory in proportion to the source's frames, not the cover's: the decoder
//! holds a few whole frames, so a picture or video larger than [`MAX_SOURCE_PIXELS`] gives no
//! cover (the probe says how large it is; `-max_pixels`, on every run's source, makes the
//! decoder refuse what the probe did not see), the decoder runs on one thread (each thread
//! holds frames of its own: an 8K 4:4:4 10-bit video took 1.05 GB with ffmpeg's automatic
//! threads on 2 cores, 530 MB on one), and the frames are scaled down before the `thumbnail`
//! filter compares [`THUMBNAIL_FRAMES`] of them.

use std::ffi::OsString;
use std::path::Path;

use mp3conv_contract::options::Cover;

use super::plan::Clip;
use super::probe::{MediaInfo, Visual};
use super::{Input, MAX_SOURCE_PIXELS, Read, confined_input};

/// Longest side of the cover, in pixels: what players show, at a few tens of kilobytes.
pub const MAX_SIDE: u32 = 600;
/// Frames the `thumbnail` filter compares to pick the most representative one.
const THUMBNAIL_FRAMES: u32 = 50;
/// JPEG quality (ffmpeg's `-q:v`, 2 best to 31 worst).
const QUALITY: &str = "3";

/// Whether a cover may be taken from `visual`: its size is unknown (the decoder's
/// `-max_pixels` then guards) or at most [`MAX_SOURCE_PIXELS`].
pub fn fits(visual: &Visual) -> bool {
    visual.pixels().is_none_or(|p| p <= MAX_SOURCE_PIXELS)
}

/// Where the cover comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoverFrom {
    /// The source's attached picture (stream index).
    Picture { stream: u32 },
    /// The video's (stream index) frame at `at` seconds of the source.
    Frame { stream: u32, at: f64 },
    /// The most representative of the video's frames from `around` seconds on.
    Thumbnail { stream: u32, around: f64 },
    /// The video page's own image (its thumbnail), fetched into a file of its own.
    Image,
}

/// The cover asked for, as the source allows: `auto` takes the source's picture, else the
/// video page's `image` when there is one, else a representative frame a third into the clip;
/// a time takes the video's frame there (the picture of a source that has no video); audio
/// without a picture has no cover, and neither has a source whose pictures are too large
/// ([`fits`]).
pub fn choose(cover: Cover, source: &MediaInfo, clip: &Clip, image: bool) -> Option<CoverFrom> {
    let picture = source
        .picture
        .filter(fits)
        .map(|p| CoverFrom::Picture { stream: p.index });
    let video = source.video.filter(fits).map(|v| v.index);
    match cover {
        Cover::None => None,
        Cover::Auto => picture.or(image.then_some(CoverFrom::Image)).or_else(|| {
            video.map(|stream| CoverFrom::Thumbnail {
                stream,
                around: (clip.start as f64 + (clip.end - clip.start) as f64 / 3.0) / 1000.0,
            })
        }),
        Cover::At(at) => video
            .map(|stream| CoverFrom::Frame {
                stream,
                at: at.seconds(),
            })
            .or(picture),
    }
}

/// The scaling: fit in the box keeping the shape, never larger than the frame; square pixels;
/// the full-range YUV the JPEG encoder takes.
fn scale() -> String {
    format!(
        "scale=w='min({MAX_SIDE},iw)':h='min({MAX_SIDE},ih)':force_original_aspect_ratio=decrease,\
         setsar=1,format=yuvj420p"
    )
}

/// ffmpeg's arguments to write the cover from `input` to `output` (one JPEG).
pub(crate) fn args(input: Read<'_>, from: CoverFrom, output: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .map(OsString::from)
        .to_vec();
    let (stream, seek, filter) = match from {
        CoverFrom::Picture { stream } => (stream, None, scale()),
        CoverFrom::Image => (0, None, scale()),
        CoverFrom::Frame { stream, at } => (stream, Some(at), scale()),
        CoverFrom::Thumbnail { stream, around } => (
            stream,
            Some(around),
            format!("{},thumbnail={THUMBNAIL_FRAMES}", scale()),
        ),
    };
    if let Some(at) = seek {
        args.extend(["-ss".into(), format!("{at:.3}").into()]);
    }
    // Before `-i`: the decoder's threads.
    args.extend(["-threads".into(), "1".into()]);
    let kind = match from {
        CoverFrom::Image => Input::Image,
        _ => Input::Source,
    };
    args.extend(confined_input(input, kind));
    args.extend(
        [
            "-map".to_owned(),
            format!("0:{stream}"),
            "-vf".into(),
            filter,
            "-frames:v".into(),
            "1".into(),
            "-c:v".into(),
            "mjpeg".into(),
            "-q:v".into(),
            QUALITY.into(),
            // The encoder's threads, for the same reason as the decoder's.
            "-threads".into(),
            "1".into(),
            "-f".into(),
            "mjpeg".into(),
            "-y".into(),
        ]
        .map(OsString::from),
    );
    args.push(output.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use mp3conv_contract::options::Position;

    fn source(video: Option<u32>, picture: Option<u32>) -> MediaInfo {
        let visual = |index| Visual {
            index,
            size: Some((1280, 720)),
        };
        MediaInfo {
            video: video.map(visual),
            picture: picture.map(visual),
            ..MediaInfo::default()
        }
    }

    #[test]
    fn no_cover_from_pictures_too_large_to_decode_cheaply() {
        let clip = Clip {
            start: 0,
            end: 6000,
            to: None,
        };
        let sized = |index, size| Visual {
            index,
            size: Some(size),
        };
        let huge = sized(0, (8192, 8192));
        let eight_k = sized(0, (8192, 4320));
        let unknown = Visual {
            index: 0,
            size: None,
        };
        let at = Cover::At(Position::from_millis(1500));
        let with = |video, picture| MediaInfo {
            video,
            picture,
            ..MediaInfo::default()
        };
        let table = [
            (Cover::Auto, with(Some(huge), None), None),
            (
                Cover::Auto,
                with(Some(eight_k), None),
                Some(CoverFrom::Thumbnail {
                    stream: 0,
                    around: 2.0,
                }),
            ),
            (
                Cover::Auto,
                with(Some(unknown), None),
                Some(CoverFrom::Thumbnail {
                    stream: 0,
                    around: 2.0,
                }),
            ),
            // A huge picture gives way to the video's frames, and the other way round.
            (
                Cover::Auto,
                with(Some(eight_k), Some(sized(1, (16000, 16000)))),
                Some(CoverFrom::Thumbnail {
                    stream: 0,
                    around: 2.0,
                }),
            ),
            (
                at,
                with(Some(huge), Some(sized(1, (600, 600)))),
                Some(CoverFrom::Picture { stream: 1 }),
            ),
            (at, with(Some(huge), None), None),
        ];
        for (cover, media, expected) in table {
            assert_eq!(
                choose(cover, &media, &clip, false),
                expected,
                "{cover:?} {media:?}"
            );
        }
    }

    #[test]
    fn the_cover_comes_from_what_the_source_has() {
        let clip = Clip {
            start: 3000,
            end: 9000,
            to: Some(9000),
        };
        let at = Cover::At(Position::from_millis(1500));
        let table = [
            (
                Cover::Auto,
                source(Some(0), None),
                Some(CoverFrom::Thumbnail {
                    stream: 0,
                    around: 5.0,
                }),
            ),
            (
                Cover::Auto,
                source(Some(0), Some(3)),
                Some(CoverFrom::Picture { stream: 3 }),
            ),
            (
                Cover::Auto,
                source(None, Some(1)),
                Some(CoverFrom::Picture { stream: 1 }),
            ),
            (Cover::Auto, source(None, None), None),
            (Cover::None, source(Some(0), Some(3)), None),
            (
                at,
                source(Some(0), Some(3)),
                Some(CoverFrom::Frame { stream: 0, at: 1.5 }),
            ),
            (
                at,
                source(None, Some(1)),
                Some(CoverFrom::Picture { stream: 1 }),
            ),
            (at, source(None, None), None),
        ];
        for (cover, media, expected) in table {
            assert_eq!(
                choose(cover, &media, &clip, false),
                expected,
                "{cover:?} {media:?}"
            );
        }
    }

    #[test]
    fn cover_arguments() {
        let scale = "scale=w='min(600,iw)':h='min(600,ih)':force_original_aspect_ratio=decrease,\
                     setsar=1,format=yuvj420p";
        let table = [
            (
                CoverFrom::Picture { stream: 2 },
                vec![],
                "0:2",
                scale.to_owned(),
            ),
            (
                CoverFrom::Frame { stream: 0, at: 1.5 },
                vec!["-ss", "1.500"],
                "0:0",
                scale.to_owned(),
            ),
            (
                CoverFrom::Thumbnail {
                    stream: 1,
                    around: 2.0,
                },
                vec!["-ss", "2.000"],
                "0:1",
                format!("{scale},thumbnail=50"),
            ),
        ];
        for (from, seek, map, filter) in table {
            let args: Vec<String> = args(
                Path::new("/w/video").into(),
                from,
                Path::new("/w/cover.jpg"),
            )
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
            let mut expected: Vec<String> =
                ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
                    .map(str::to_owned)
                    .to_vec();
            expected.extend(seek.iter().map(|s| s.to_string()));
            expected.extend(["-threads".to_owned(), "1".to_owned()]);
            expected.extend(
                confined_input(Path::new("/w/video"), Input::Source)
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned()),
            );
            expected.extend(
                [
                    "-map",
                    map,
                    "-vf",
                    &filter,
                    "-frames:v",
                    "1",
                    "-c:v",
                    "mjpeg",
                    "-q:v",
                    "3",
                    "-threads",
                    "1",
                    "-f",
                    "mjpeg",
                    "-y",
                    "/w/cover.jpg",
                ]
                .map(str::to_owned),
            );
            assert_eq!(args, expected, "{from:?}");
        }
    }
}
