//! The conversion options as command-line flags (`--start 1:30 --title Talk`): each flag is
//! the API field of the same name (`--sample-rate` is `sample_rate`), read by the contract's
//! one rule ([`Options::set`]) before anything is sent, so that a typo fails at once rather
//! than after an upload.

use clap::Args;
use mp3conv_contract::options::{FIELDS, Options};
use serde_json::Value;

use super::Failure;

/// The option flags `mp3conv convert` and `mp3conv presets save` share (a preset cannot name
/// another preset, so `--preset` is `convert`'s alone).
#[derive(Debug, Default, Clone, Args)]
pub struct OptionArgs {
    /// 128, 192, 256, 320 (kbit/s) or v0..v9 (VBR quality).
    #[arg(long)]
    pub bitrate: Option<String>,
    /// Where the clip begins in the source: seconds (90, 90.5) or [HH:]MM:SS[.mmm].
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Where the clip ends in the source, written as --start.
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// Normalize the loudness (EBU R128, two passes) to TARGET LUFS: -14 (music), -16
    /// (speech and podcasts, the target when none is given) or -23 (broadcast); `off` undoes
    /// a preset's. A bare --normalize takes the next word as its target: write it after the
    /// input, or as --normalize=-14.
    #[arg(
        long,
        value_name = "TARGET",
        num_args = 0..=1,
        default_missing_value = "-16",
        allow_negative_numbers = true
    )]
    pub normalize: Option<String>,
    /// The MP3's title tag [default: the source's, else its name]; "" leaves it out.
    #[arg(long)]
    pub title: Option<String>,
    /// The artist tag [default: the source's]; "" leaves it out.
    #[arg(long)]
    pub artist: Option<String>,
    /// The album tag [default: the source's]; "" leaves it out.
    #[arg(long)]
    pub album: Option<String>,
    /// The year tag, four digits [default: the source's].
    #[arg(long)]
    pub year: Option<String>,
    /// The comment tag [default: the source's]; "" leaves it out.
    #[arg(long)]
    pub comment: Option<String>,
    /// Cover art: `auto` (the source's picture, else a representative frame; the default),
    /// `none`, or the video's frame at TIME.
    #[arg(long, value_name = "auto|none|TIME")]
    pub cover: Option<String>,
    /// Channels [default: the source's, at most stereo].
    #[arg(long, value_name = "mono|stereo")]
    pub channels: Option<String>,
    /// Sample rate in Hz [default: 44100].
    #[arg(long, value_name = "44100|48000")]
    pub sample_rate: Option<String>,
    /// `chapters`: one MP3 per chapter of the source besides the whole one; once done, the
    /// tracks are saved next to the MP3 as `<name> - NN - <chapter>.mp3`.
    #[arg(long, value_name = "chapters")]
    pub split: Option<String>,
}

impl OptionArgs {
    /// The flags given, as (field, text), with `preset` (convert's own flag) if given.
    fn given<'a>(&'a self, preset: Option<&'a str>) -> Vec<(&'static str, &'a str)> {
        let values = [
            &self.bitrate,
            &self.start,
            &self.end,
            &self.normalize,
            &self.title,
            &self.artist,
            &self.album,
            &self.year,
            &self.comment,
            &self.cover,
            &self.channels,
            &self.sample_rate,
            &self.split,
        ];
        let mut given: Vec<(&'static str, &'a str)> = FIELDS
            .iter()
            .zip(values)
            .filter_map(|(field, value)| value.as_deref().map(|text| (*field, text)))
            .collect();
        if let Some(name) = preset {
            given.push(("preset", name));
        }
        given
    }

    /// The options these flags (and `preset`) ask for, checked as the server checks them: a
    /// usage failure naming the flag otherwise.
    pub fn options(&self, preset: Option<&str>) -> Result<Options, Failure> {
        let mut options = Options::default();
        for (field, text) in self.given(preset) {
            options
                .set(field, text)
                .map_err(|err| Failure::Usage(format!("{}: {}", flag(&err.field), err)))?;
        }
        options
            .check()
            .map_err(|err| Failure::Usage(format!("{}: {}", flag(&err.field), err)))?;
        Ok(options)
    }
}

/// The flag of an option field: `sample_rate` is `--sample-rate`.
pub fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// The options as form fields in the documented order, each the text the server reads back
/// into the same value (what the JSON form of them holds, numbers and booleans as their text).
pub fn form_fields(options: &Options) -> Vec<(String, String)> {
    let Ok(Value::Object(mut object)) = serde_json::to_value(options) else {
        unreachable!("options serialize as an object")
    };
    FIELDS
        .iter()
        .filter_map(|field| {
            let text = match object.remove(*field)? {
                Value::String(text) => text,
                other => other.to_string(),
            };
            Some(((*field).to_owned(), text))
        })
        .collect()
}

/// The options in a line people read: `start 00:00:01.000, title "Talk", channels mono`.
pub fn describe(options: &Options) -> String {
    form_fields(options)
        .into_iter()
        .map(|(field, text)| match field.as_str() {
            "start" | "end" => match options_position(options, &field) {
                Some(at) => format!("{field} {at}"),
                None => format!("{field} {text}"),
            },
            "title" | "artist" | "album" | "comment" | "preset" => format!("{field} {text:?}"),
            "normalize" if text == "false" => "normalize off".to_owned(),
            "normalize" => format!("normalize {text} LUFS"),
            _ => format!("{} {text}", field.replace('_', " ")),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn options_position(options: &Options, field: &str) -> Option<String> {
    match field {
        "start" => options.start.map(|at| at.to_string()),
        "end" => options.end.map(|at| at.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use mp3conv_contract::options::{Channels, Normalize, Position};

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        input: Option<String>,
        #[command(flatten)]
        options: OptionArgs,
        #[arg(long)]
        preset: Option<String>,
    }

    fn parse(args: &[&str]) -> Result<Options, Failure> {
        let command =
            Command::try_parse_from(std::iter::once("mp3conv").chain(args.iter().copied()))
                .unwrap_or_else(|err| panic!("{args:?}: {err}"));
        command.options.options(command.preset.as_deref())
    }

    #[test]
    fn flags_become_the_options_of_the_same_name() {
        let options = parse(&[
            "v.mp4",
            "--start",
            "1:30",
            "--end",
            "95.5",
            "--title",
            " Talk ",
            "--channels",
            "mono",
            "--sample-rate",
            "48000",
            "--preset",
            "podcast",
        ])
        .unwrap();
        assert_eq!(options.start, Some(Position::from_millis(90_000)));
        assert_eq!(options.end, Some(Position::from_millis(95_500)));
        assert_eq!(options.title.as_deref(), Some("Talk"));
        assert_eq!(options.channels, Some(Channels::Mono));
        assert_eq!(options.preset.as_deref(), Some("podcast"));
        assert_eq!(
            form_fields(&options),
            [
                ("start", "90.0"),
                ("end", "95.5"),
                ("title", "Talk"),
                ("channels", "mono"),
                ("sample_rate", "48000"),
                ("preset", "podcast"),
            ]
            .map(|(f, t)| (f.to_owned(), t.to_owned()))
        );
        assert_eq!(
            describe(&options),
            "start 00:01:30.000, end 00:01:35.500, title \"Talk\", channels mono, \
             sample rate 48000, preset \"podcast\""
        );
    }

    #[test]
    fn normalize_takes_an_optional_negative_target() {
        for (args, expected) in [
            (&["v.mp4", "--normalize"][..], Normalize::Target(-16)),
            (&["--normalize", "-14", "v.mp4"], Normalize::Target(-14)),
            (&["v.mp4", "--normalize=-23"], Normalize::Target(-23)),
            (&["v.mp4", "--normalize", "off"], Normalize::Off),
        ] {
            assert_eq!(parse(args).unwrap().normalize, Some(expected), "{args:?}");
        }
        let bare = Command::try_parse_from(["mp3conv", "v.mp4", "--normalize"]).unwrap();
        assert_eq!(bare.input.as_deref(), Some("v.mp4"));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (args, flag) in [
            (&["--normalize", "-20"][..], "--normalize"),
            (&["--start", "soon"], "--start"),
            (&["--start", "20", "--end", "10"], "--end"),
            (&["--sample-rate", "22050"], "--sample-rate"),
            (&["--bitrate", "999"], "--bitrate"),
            (&["--year", "24"], "--year"),
            (&["--split", "silence"], "--split"),
            (&["--cover", "middle"], "--cover"),
            (&["--preset", "../x"], "--preset"),
        ] {
            let Err(Failure::Usage(message)) = parse(args) else {
                panic!("{args:?} accepted");
            };
            assert!(message.starts_with(&format!("{flag}: ")), "{message}");
        }
        assert!(parse(&["v.mp4"]).unwrap().is_empty());
    }
}
