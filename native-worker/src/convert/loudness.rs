//! EBU R128 loudness normalization in two passes with ffmpeg's `loudnorm` filter: the first
//! measures the clip (its integrated loudness, true peak, loudness range and gate threshold),
//! the second applies one gain computed from those figures (`linear=true`), so the whole clip
//! lands on the target rather than drifting around it as the one-pass (dynamic) mode does.
//! loudnorm keeps to linear gain unless that gain would push the true peak past the limit; it
//! then compresses (its dynamic mode), as any one-pass normalizer must.

use std::collections::BTreeMap;

/// The true-peak ceiling, dBTP: headroom for the MP3 encoder's own overshoot.
pub const TRUE_PEAK: f64 = -1.5;
/// The loudness range target, LU: loudnorm's default, wide enough for speech and most music.
pub const RANGE: f64 = 11.0;
/// Integrated loudness below this (LUFS) is silence as far as EBU R128 goes (its absolute gate
/// is -70): nothing to normalize.
const SILENT: f64 = -70.0;

/// What the first pass measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Integrated loudness, LUFS.
    pub integrated: f64,
    /// True peak, dBTP.
    pub true_peak: f64,
    /// Loudness range, LU.
    pub range: f64,
    /// The relative gate's threshold, LUFS.
    pub threshold: f64,
    /// loudnorm's own correction for its second pass, LU.
    pub offset: f64,
}

fn target_args(target: i8) -> String {
    format!("loudnorm=I={target}:TP={TRUE_PEAK}:LRA={RANGE}")
}

/// The first pass's filter: measure, and print the figures as JSON (at the info level).
pub fn measure_filter(target: i8) -> String {
    format!("{}:print_format=json", target_args(target))
}

/// The second pass's filter, or `None` when the clip is silent (nothing to bring up).
pub fn apply_filter(target: i8, measured: &Measured) -> Option<String> {
    if !measured.integrated.is_finite() || measured.integrated < SILENT {
        return None;
    }
    // loudnorm refuses figures outside these ranges; only freak inputs come near them.
    Some(format!(
        "{}:measured_I={:.2}:measured_TP={:.2}:measured_LRA={:.2}:measured_thresh={:.2}:\
         offset={:.2}:linear=true:print_format=none",
        target_args(target),
        measured.integrated.clamp(-99.0, 0.0),
        clamp_finite(measured.true_peak, -99.0, 99.0),
        clamp_finite(measured.range, 0.0, 99.0),
        clamp_finite(measured.threshold, -99.0, 0.0),
        clamp_finite(measured.offset, -99.0, 99.0),
    ))
}

fn clamp_finite(value: f64, min: f64, max: f64) -> f64 {
    if value.is_nan() {
        0.0f64.clamp(min, max)
    } else {
        value.clamp(min, max)
    }
}

/// The figures of the last loudnorm JSON block in ffmpeg's log.
pub fn parse(log: &str) -> Option<Measured> {
    let start = log.rfind("\n{")? + 1;
    let end = start + log[start..].find('}')? + 1;
    let figures: BTreeMap<String, String> = serde_json::from_str(&log[start..end]).ok()?;
    // "-inf" for silence: f64's parser reads it.
    let figure = |key: &str| figures.get(key)?.trim().parse::<f64>().ok();
    Some(Measured {
        integrated: figure("input_i")?,
        true_peak: figure("input_tp")?,
        range: figure("input_lra")?,
        threshold: figure("input_thresh")?,
        offset: figure("target_offset")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[info] size=N/A time=00:00:05.01 bitrate=N/A speed=38.3x\n\
        [Parsed_loudnorm_0 @ 0x55b831236240] [info] \n{\n\t\"input_i\" : \"-51.80\",\n\
        \t\"input_tp\" : \"-47.51\",\n\t\"input_lra\" : \"0.10\",\n\t\"input_thresh\" : \"-61.80\",\n\
        \t\"output_i\" : \"-16.01\",\n\t\"output_tp\" : \"-11.71\",\n\t\"output_lra\" : \"0.00\",\n\
        \t\"output_thresh\" : \"-26.01\",\n\t\"normalization_type\" : \"dynamic\",\n\
        \t\"target_offset\" : \"0.01\"\n}\n";

    #[test]
    fn the_first_pass_figures_feed_the_second() {
        assert_eq!(
            measure_filter(-16),
            "loudnorm=I=-16:TP=-1.5:LRA=11:print_format=json"
        );
        let measured = parse(LOG).unwrap();
        assert_eq!(
            measured,
            Measured {
                integrated: -51.8,
                true_peak: -47.51,
                range: 0.1,
                threshold: -61.8,
                offset: 0.01
            }
        );
        assert_eq!(
            apply_filter(-23, &measured).unwrap(),
            "loudnorm=I=-23:TP=-1.5:LRA=11:measured_I=-51.80:measured_TP=-47.51:\
             measured_LRA=0.10:measured_thresh=-61.80:offset=0.01:linear=true:print_format=none"
        );
    }

    #[test]
    fn silence_is_left_alone_and_freak_figures_clamped() {
        let silent = LOG
            .replace("\"-51.80\"", "\"-inf\"")
            .replace("\"0.01\"", "\"inf\"");
        let measured = parse(&silent).unwrap();
        assert_eq!(measured.integrated, f64::NEG_INFINITY);
        assert_eq!(apply_filter(-16, &measured), None);
        let whisper = Measured {
            integrated: -75.0,
            ..parse(LOG).unwrap()
        };
        assert_eq!(apply_filter(-16, &whisper), None);
        let loud = Measured {
            integrated: 2.5,
            true_peak: 120.0,
            range: f64::NAN,
            threshold: -7.5,
            offset: f64::INFINITY,
        };
        assert_eq!(
            apply_filter(-14, &loud).unwrap(),
            "loudnorm=I=-14:TP=-1.5:LRA=11:measured_I=0.00:measured_TP=99.00:\
             measured_LRA=0.00:measured_thresh=-7.50:offset=99.00:linear=true:print_format=none"
        );
    }

    #[test]
    fn no_figures_no_measure() {
        assert_eq!(parse("[error] something broke\n"), None);
        assert_eq!(parse("\n{\n\t\"input_i\" : \"-5\"\n}\n"), None);
        assert_eq!(parse("\n{ not json }"), None);
    }
}
