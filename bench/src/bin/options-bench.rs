//! What each conversion option costs: the worker's upload complete -> MP3 ready with the option,
//! against bare ffmpeg doing the same work on the same file in the same run (interleaved runs,
//! medians). Normalization's two passes are compared with ffmpeg's own two `loudnorm` passes
//! (target: within 1.15x).
//!
//! Usage: `options-bench <mp3conv-worker binary>`; the input (10 minutes, 360p H.264/AAC, three
//! chapters) is generated once and kept in ~/.cache/mp3conv/bench.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use mp3conv_bench::median;
use mp3conv_bench::worker::{Worker, cache_dir, generate};

const RUNS: usize = 3;
/// The input's length and its chapters' bounds, in seconds.
const SECONDS: u32 = 600;
const CHAPTERS: [(u32, u32); 3] = [(0, 200), (200, 400), (400, 600)];

/// One option: its query, and the bare ffmpeg runs doing the same work.
struct Case {
    name: &'static str,
    query: &'static str,
    bare: fn(&Path, &Path) -> anyhow::Result<()>,
    target: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: options-bench <mp3conv-worker>")?,
    );
    let input = with_chapters(&generate(
        &cache_dir()?,
        "ten-minutes-360p.mp4",
        SECONDS,
        "640x360",
        "800k",
    )?)?;
    println!(
        "input: {} (600 s, 640x360 H.264 + 48 kHz AAC, 3 chapters)",
        input.display()
    );
    println!();
    let cases = [
        Case {
            name: "none (192 kbit/s, 44.1 kHz, no cover)",
            query: "bitrate=192&cover=none",
            bare: |input, out| ffmpeg(&[input_args(input, None), encode(out, CD)].concat()),
            target: "",
        },
        Case {
            name: "clip 60-180 s",
            query: "bitrate=192&start=60&end=180&cover=none",
            bare: |input, out| {
                ffmpeg(&[input_args(input, Some(("60", "180"))), encode(out, CD)].concat())
            },
            target: "",
        },
        Case {
            name: "normalize -16 LUFS (two passes)",
            query: "bitrate=192&normalize=-16&cover=none",
            bare: normalize,
            target: "<= 1.15",
        },
        Case {
            name: "cover (representative frame)",
            query: "bitrate=192&cover=auto",
            bare: cover,
            target: "",
        },
        Case {
            name: "tags, mono, 48 kHz",
            query: "bitrate=192&title=Bench&artist=Ada&channels=mono&sample_rate=48000&cover=none",
            bare: |input, out| {
                let mut args = input_args(input, None);
                args.extend(strings(&[
                    "-metadata",
                    "title=Bench",
                    "-metadata",
                    "artist=Ada",
                ]));
                args.extend(encode(out, &["-ac", "1", "-ar", "48000"]));
                ffmpeg(&args)
            },
            target: "",
        },
        Case {
            name: "split by chapters (3 tracks + the whole)",
            query: "bitrate=192&split=chapters&cover=none",
            bare: split,
            target: "",
        },
    ];
    let work = tempfile::tempdir()?;
    let worker = Worker::start(&binary, &work.path().join("worker"), 1)?;
    println!("| option | worker | bare ffmpeg, same work (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    for case in &cases {
        let mut bare = Vec::new();
        let mut converted = Vec::new();
        for run in 0..RUNS {
            let out = work.path().join(format!("bare-{run}.mp3"));
            let started = Instant::now();
            (case.bare)(&input, &out).with_context(|| format!("bare ffmpeg: {}", case.name))?;
            bare.push(started.elapsed());
            let (elapsed, _) = worker.convert_with(&input, case.query).await?;
            converted.push(elapsed);
        }
        let (bare, converted) = (median(&mut bare), median(&mut converted));
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2} | {} |",
            case.name,
            converted.as_secs_f64(),
            bare.as_secs_f64(),
            converted.as_secs_f64() / bare.as_secs_f64(),
            case.target
        );
    }
    worker.stop();
    println!();
    println!(
        "Medians of {RUNS} interleaved runs, one conversion slot, embedded storage; the worker's \
         time includes its ffprobe passes and storing the MP3."
    );
    Ok(())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// The input, optionally a clip of it.
fn input_args(input: &Path, clip: Option<(&str, &str)>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some((start, end)) = clip {
        args.extend(strings(&["-ss", start, "-to", end]));
    }
    args.extend(strings(&["-i", &input.to_string_lossy()]));
    args
}

/// The default output rate.
const CD: &[&str] = &["-ar", "44100"];

/// The first audio stream to a 192 kbit/s MP3 at `out`, with `format` (rate, channels).
fn encode(out: &Path, format: &[&str]) -> Vec<String> {
    let mut args = strings(&["-map", "0:a:0", "-c:a", "libmp3lame", "-b:a", "192k"]);
    args.extend(strings(format));
    args.extend(strings(&["-f", "mp3", "-y", &out.to_string_lossy()]));
    args
}

fn ffmpeg(args: &[String]) -> anyhow::Result<()> {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// ffmpeg's own two loudnorm passes: measure, then apply the measured values.
fn normalize(input: &Path, out: &Path) -> anyhow::Result<()> {
    let filter = "loudnorm=I=-16:TP=-1.5:LRA=11";
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(input)
        .args(["-map", "0:a:0", "-vn", "-af"])
        .arg(format!("{filter}:print_format=json"))
        .args(["-f", "null", "-"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json = stderr
        .rfind('{')
        .map(|at| &stderr[at..])
        .and_then(|rest| rest.find('}').map(|end| &rest[..=end]))
        .context("loudnorm printed no measurement")?;
    let measured: serde_json::Value = serde_json::from_str(json)?;
    let value = |key: &str| measured[key].as_str().unwrap_or("0").to_owned();
    let apply = format!(
        "{filter}:measured_I={}:measured_TP={}:measured_LRA={}:measured_thresh={}:offset={}:linear=true",
        value("input_i"),
        value("input_tp"),
        value("input_lra"),
        value("input_thresh"),
        value("target_offset"),
    );
    let mut args = input_args(input, None);
    args.extend(strings(&["-af", &apply]));
    args.extend(encode(out, CD));
    ffmpeg(&args)
}

/// A frame a third of the way in through the `thumbnail` filter, then the MP3 with it.
fn cover(input: &Path, out: &Path) -> anyhow::Result<()> {
    let picture = out.with_extension("jpg");
    let third = (SECONDS / 3).to_string();
    ffmpeg(&[
        strings(&["-ss", &third, "-i", &input.to_string_lossy()]),
        strings(&[
            "-map",
            "0:v:0",
            "-vf",
            "thumbnail=50,scale=w='min(600,iw)':h='min(600,ih)':force_original_aspect_ratio=decrease",
            "-frames:v",
            "1",
            "-q:v",
            "3",
            "-y",
            &picture.to_string_lossy(),
        ]),
    ]
    .concat())?;
    let mut args = input_args(input, None);
    args.extend(strings(&["-i", &picture.to_string_lossy()]));
    args.extend(strings(&[
        "-map",
        "1:v",
        "-c:v",
        "copy",
        "-disposition:v",
        "attached_pic",
        "-id3v2_version",
        "3",
    ]));
    args.extend(encode(out, CD));
    ffmpeg(&args)
}

/// The whole MP3 and one per chapter, in one ffmpeg run (one decode, four encodes).
fn split(input: &Path, out: &Path) -> anyhow::Result<()> {
    let mut graph = format!("[0:a:0]asplit={}[whole]", CHAPTERS.len() + 1);
    for n in 0..CHAPTERS.len() {
        graph.push_str(&format!("[s{n}]"));
    }
    for (n, (start, end)) in CHAPTERS.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{n}]atrim=start={start}:end={end},asetpts=PTS-STARTPTS[t{n}]"
        ));
    }
    let mut args = input_args(input, None);
    args.extend(strings(&["-filter_complex", &graph]));
    let mut output = |label: &str, path: PathBuf| {
        args.extend(strings(&[
            "-map",
            label,
            "-c:a",
            "libmp3lame",
            "-b:a",
            "192k",
            "-ar",
            "44100",
            "-y",
            &path.to_string_lossy(),
        ]));
    };
    output("[whole]", out.to_path_buf());
    for n in 0..CHAPTERS.len() {
        output(&format!("[t{n}]"), out.with_extension(format!("{n}.mp3")));
    }
    ffmpeg(&args)
}

/// `input` with the three chapters added (stream copy), once.
fn with_chapters(input: &Path) -> anyhow::Result<PathBuf> {
    let path = input.with_extension("chapters.mp4");
    if path.exists() {
        return Ok(path);
    }
    let metadata = input.with_extension("ffmetadata");
    let mut text = String::from(";FFMETADATA1\n");
    for (n, (start, end)) in CHAPTERS.iter().enumerate() {
        text.push_str(&format!(
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle=Part {}\n",
            start * 1000,
            end * 1000,
            n + 1
        ));
    }
    std::fs::write(&metadata, text)?;
    let partial = path.with_extension("partial.mp4");
    ffmpeg(
        &[
            strings(&["-i", &input.to_string_lossy()]),
            strings(&["-i", &metadata.to_string_lossy()]),
            strings(&[
                "-map",
                "0",
                "-map_chapters",
                "1",
                "-c",
                "copy",
                "-movflags",
                "+faststart",
                "-y",
                &partial.to_string_lossy(),
            ]),
        ]
        .concat(),
    )?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}
