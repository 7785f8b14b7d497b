//! The source's chapters, cut to the clip: the MP3's ID3 chapter frames (CHAP/CTOC) and, split
//! by chapters, its tracks.
//!
//! ffmpeg copies chapters itself, but not as the MP3 needs them: with `-ss` it shifts them and
//! drops the part before the clip, yet with an input `-to` it keeps chapters (and chapter ends)
//! past the clip's end, and `-map_metadata -1` strips their titles (the CHAP frames then carry
//! none). So the converter computes the chapters here and hands them to ffmpeg as an
//! `ffmetadata` input (`-map_chapters`).

use super::probe::Chapter;
use super::text;

/// Chapters shorter than this, once cut to the clip, are dropped (merged into their neighbour):
/// a track must hold a few MP3 frames.
pub const MIN_CHAPTER_MILLIS: u64 = mp3conv_contract::options::MIN_CLIP_MILLIS;
/// Most chapters an ID3 table of contents lists: its entry count is one byte.
pub const MAX_ID3_CHAPTERS: usize = 255;

/// A chapter of the MP3, in milliseconds of the clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// Where it begins.
    pub start: u64,
    /// Where it ends.
    pub end: u64,
    /// Its title: the source chapter's, else `Chapter N`.
    pub title: String,
}

impl Span {
    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        (self.end - self.start) as f64 / 1000.0
    }
}

fn millis(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

/// The source's `chapters` within the clip `[start, end)` (milliseconds of the source), shifted
/// to the clip: pieces shorter than [`MIN_CHAPTER_MILLIS`] dropped, and the rest made to tile
/// the clip (the first begins at 0, each ends where the next begins, the last at the clip's
/// end) so that every moment of the clip is in exactly one chapter, as a track.
pub fn cut(chapters: &[Chapter], start: u64, end: u64) -> Vec<Span> {
    let mut pieces: Vec<(u64, u64, Option<String>)> = chapters
        .iter()
        .filter_map(|c| {
            let from = millis(c.start).max(start);
            let to = millis(c.end).min(end);
            (to >= from + MIN_CHAPTER_MILLIS).then(|| {
                // Without trailing backslashes, which ffmpeg cannot read back (see
                // [`ffmetadata`]), so that tracks, file names and CHAP frames agree.
                let title = c
                    .title
                    .as_deref()
                    .map(|t| text::tag(t, text::MAX_TAG_CHARS, false))
                    .map(|t| t.trim_end_matches('\\').trim_end().to_owned())
                    .filter(|t| !t.is_empty());
                (from - start, to - start, title)
            })
        })
        .collect();
    pieces.sort_by_key(|(from, to, _)| (*from, *to));
    // Pieces that begin within MIN_CHAPTER_MILLIS of the previous one (overlapping chapters)
    // would make a track too short once tiled: the first one stays.
    pieces.dedup_by(|later, earlier| later.0 < earlier.0 + MIN_CHAPTER_MILLIS);
    let length = end - start;
    let starts: Vec<u64> = pieces.iter().map(|p| p.0).collect();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, title))| Span {
            start: if i == 0 { 0 } else { starts[i] },
            end: starts.get(i + 1).copied().unwrap_or(length),
            title: title.unwrap_or_else(|| format!("Chapter {}", i + 1)),
        })
        .collect()
}

/// An `ffmetadata` file listing `spans` as chapters (and no global tags: the MP3's tags are
/// given on ffmpeg's command line).
pub fn ffmetadata(spans: &[Span]) -> String {
    let mut text = String::from(";FFMETADATA1\n");
    for span in spans {
        text.push_str(&format!(
            "\n[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle={}\n",
            span.start,
            span.end,
            escape(&span.title)
        ));
    }
    text
}

/// A value as `ffmetadata` reads it: `=`, `;`, `#`, `\` and line breaks escaped with `\`.
/// Trailing backslashes are left out: ffmpeg 5.1 reads an escaped one at the end of a line as
/// a backslash and a line break.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.trim_end_matches('\\').chars() {
        if matches!(c, '=' | ';' | '#' | '\\' | '\n') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapter(start: f64, end: f64, title: Option<&str>) -> Chapter {
        Chapter {
            start,
            end,
            title: title.map(str::to_owned),
        }
    }

    fn span(start: u64, end: u64, title: &str) -> Span {
        Span {
            start,
            end,
            title: title.into(),
        }
    }

    #[test]
    fn chapters_are_cut_and_shifted_to_the_clip() {
        let three = [
            chapter(0.0, 2.0, Some("One")),
            chapter(2.0, 4.5, Some("Two")),
            chapter(4.5, 6.0, None),
        ];
        let table: [(u64, u64, Vec<Span>); 5] = [
            // The whole source.
            (
                0,
                6000,
                vec![
                    span(0, 2000, "One"),
                    span(2000, 4500, "Two"),
                    span(4500, 6000, "Chapter 3"),
                ],
            ),
            // A clip from 1 s to 5 s: the first and last are cut (ffmpeg's own copy keeps
            // the third's end at 5000, past the clip).
            (
                1000,
                5000,
                vec![
                    span(0, 1000, "One"),
                    span(1000, 3500, "Two"),
                    span(3500, 4000, "Chapter 3"),
                ],
            ),
            // Within one chapter.
            (2500, 4000, vec![span(0, 1500, "Two")]),
            // 50 ms of the first chapter is too short to keep: the next one takes it.
            (
                1950,
                6000,
                vec![span(0, 2550, "Two"), span(2550, 4050, "Chapter 2")],
            ),
            // A clip ending 50 ms into the third.
            (0, 4550, vec![span(0, 2000, "One"), span(2000, 4550, "Two")]),
        ];
        for (start, end, expected) in table {
            assert_eq!(cut(&three, start, end), expected, "{start}..{end}");
        }
    }

    #[test]
    fn gaps_and_overlaps_become_a_tiling() {
        let odd = [
            chapter(1.0, 2.0, Some("Late start")),
            chapter(3.0, 4.0, Some("After a gap")),
            chapter(3.05, 3.5, Some("Overlapping")),
            chapter(5.0, 5.0, Some("Empty")),
        ];
        assert_eq!(
            cut(&odd, 0, 6000),
            vec![span(0, 3000, "Late start"), span(3000, 6000, "After a gap")]
        );
        assert_eq!(cut(&[], 0, 6000), vec![]);
    }

    #[test]
    fn titles_are_tidied_and_escaped() {
        let spans = cut(
            &[
                chapter(0.0, 1.0, Some(" A=b;c#d\\e\nf\u{1} ")),
                chapter(1.0, 2.0, Some("")),
                chapter(2.0, 3.0, Some("\\\\")),
                chapter(3.0, 4.0, Some("Q&A \\")),
            ],
            0,
            4000,
        );
        assert_eq!(spans[0].title, "A=b;c#d\\e f");
        assert_eq!(spans[1].title, "Chapter 2");
        assert_eq!(spans[2].title, "Chapter 3");
        assert_eq!(spans[3].title, "Q&A");
        let spans = &spans[..2];
        assert_eq!(
            ffmetadata(spans),
            ";FFMETADATA1\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\n\
             title=A\\=b\\;c\\#d\\\\e f\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\n\
             title=Chapter 2\n"
        );
        assert_eq!(ffmetadata(&[]), ";FFMETADATA1\n");
        assert!(
            ffmetadata(&[span(0, 1000, "a\\b\\\\")]).ends_with("\ntitle=a\\\\b\n"),
            "a trailing backslash would become a line break"
        );
    }
}
