//! Per-user quotas: the limits a user's jobs are held to, and what `GET /v1/me` shows of them.
//!
//! The operator sets defaults for everyone (the worker's `quota` config) and may override any
//! of them for one user (`mp3conv users limit`, kept in the users database). The gateway reads
//! a caller's overrides with the check that their account exists and hands them to the worker
//! in one header, [`LIMITS_HEADER`]; the worker applies them over its defaults
//! ([`Limits::over`]) and enforces the result.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The header carrying a caller's overrides from the gateway to the worker (only the limits
/// that differ from the defaults): `storage_bytes=5368709120, jobs_per_hour=30`, with
/// `unlimited` for a limit lifted.
pub const LIMITS_HEADER: &str = "x-mp3conv-limits";

/// An override that lifts a limit. As large as a signed 64-bit column holds, so that it
/// survives the users database.
pub const UNLIMITED: u64 = i64::MAX as u64;

/// How long the window of [`Limits::jobs_per_hour`] is.
pub const RATE_WINDOW_SECS: u64 = 3600;

/// One of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Bytes kept for the user: videos not yet converted (or kept by the operator), MP3s and
    /// their tracks.
    StorageBytes,
    /// Jobs queued, downloading or converting at once.
    ConcurrentJobs,
    /// Jobs created in the last hour (deleting one does not give it back).
    JobsPerHour,
    /// Bytes of one upload or downloaded link.
    MaxUploadBytes,
    /// Seconds of one video.
    MaxDurationSecs,
}

impl Limit {
    /// Every limit, in the order they are shown.
    pub const ALL: [Limit; 5] = [
        Limit::StorageBytes,
        Limit::ConcurrentJobs,
        Limit::JobsPerHour,
        Limit::MaxUploadBytes,
        Limit::MaxDurationSecs,
    ];

    /// Its name in JSON, in [`LIMITS_HEADER`] and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StorageBytes => "storage_bytes",
            Self::ConcurrentJobs => "concurrent_jobs",
            Self::JobsPerHour => "jobs_per_hour",
            Self::MaxUploadBytes => "max_upload_bytes",
            Self::MaxDurationSecs => "max_duration_secs",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|limit| limit.as_str() == name)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value per limit. As a user's effective limits, `None` is no limit; as overrides, `None`
/// is "the default" and [`UNLIMITED`] lifts the limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub storage_bytes: Option<u64>,
    pub concurrent_jobs: Option<u64>,
    pub jobs_per_hour: Option<u64>,
    pub max_upload_bytes: Option<u64>,
    pub max_duration_secs: Option<u64>,
}

impl Limits {
    /// The value of `limit`.
    pub fn get(&self, limit: Limit) -> Option<u64> {
        *self.slot(limit)
    }

    /// Sets the value of `limit`.
    pub fn set(&mut self, limit: Limit, value: Option<u64>) {
        *self.slot_mut(limit) = value;
    }

    fn slot(&self, limit: Limit) -> &Option<u64> {
        match limit {
            Limit::StorageBytes => &self.storage_bytes,
            Limit::ConcurrentJobs => &self.concurrent_jobs,
            Limit::JobsPerHour => &self.jobs_per_hour,
            Limit::MaxUploadBytes => &self.max_upload_bytes,
            Limit::MaxDurationSecs => &self.max_duration_secs,
        }
    }

    fn slot_mut(&mut self, limit: Limit) -> &mut Option<u64> {
        match limit {
            Limit::StorageBytes => &mut self.storage_bytes,
            Limit::ConcurrentJobs => &mut self.concurrent_jobs,
            Limit::JobsPerHour => &mut self.jobs_per_hour,
            Limit::MaxUploadBytes => &mut self.max_upload_bytes,
            Limit::MaxDurationSecs => &mut self.max_duration_secs,
        }
    }

    /// Whether no value is set (as overrides: the user has the defaults).
    pub fn is_empty(&self) -> bool {
        Limit::ALL
            .into_iter()
            .all(|limit| self.get(limit).is_none())
    }

    /// These limits (the defaults) with a user's `overrides` applied: an override replaces its
    /// default, [`UNLIMITED`] lifts it.
    pub fn over(self, overrides: &Limits) -> Limits {
        let mut out = self;
        for limit in Limit::ALL {
            match overrides.get(limit) {
                Some(UNLIMITED) => out.set(limit, None),
                Some(value) => out.set(limit, Some(value)),
                None => {}
            }
        }
        out
    }

    /// These overrides as the value of [`LIMITS_HEADER`] (empty when there are none).
    pub fn to_header(&self) -> String {
        Limit::ALL
            .into_iter()
            .filter_map(|limit| {
                self.get(limit).map(|value| match value {
                    UNLIMITED => format!("{limit}=unlimited"),
                    value => format!("{limit}={value}"),
                })
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Overrides read from [`LIMITS_HEADER`]. Strict: an unknown limit, a repeated one or a
    /// value that is not a number (or `unlimited`) is refused.
    pub fn from_header(value: &str) -> Result<Limits, LimitsError> {
        let mut limits = Limits::default();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| LimitsError(format!("`{part}` is not name=value")))?;
            let limit = Limit::from_name(name.trim())
                .ok_or_else(|| LimitsError(format!("unknown limit `{}`", name.trim())))?;
            if limits.get(limit).is_some() {
                return Err(LimitsError(format!("`{limit}` is given twice")));
            }
            let value = match value.trim() {
                "unlimited" => UNLIMITED,
                number => number
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= UNLIMITED)
                    .ok_or_else(|| LimitsError(format!("`{limit}` is not a number")))?,
            };
            limits.set(limit, Some(value));
        }
        Ok(limits)
    }
}

/// Why [`Limits::from_header`] refused a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsError(pub String);

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad limits: {}", self.0)
    }
}

impl std::error::Error for LimitsError {}

/// What a user uses of their limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes kept for them (see [`Limit::StorageBytes`]).
    pub storage_bytes: u64,
    /// Jobs queued, downloading or converting.
    pub concurrent_jobs: u64,
    /// Jobs created in the last hour.
    pub jobs_per_hour: u64,
}

/// A user's quota: their effective limits (`null`: none) and their usage. The worker's
/// `GET /internal/usage`; `quota` in `GET /v1/me`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub limits: Limits,
    pub usage: Usage,
}

/// `n` bytes for people: exact below a KiB, else with one decimal in binary units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({n} bytes)", UNITS[unit])
}

/// `secs` for people: `45s`, `12m 5s`, `2h 0m`.
pub fn seconds(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_or_lift_their_defaults() {
        let defaults = Limits {
            storage_bytes: Some(10),
            concurrent_jobs: Some(2),
            jobs_per_hour: Some(60),
            max_upload_bytes: None,
            max_duration_secs: Some(3600),
        };
        let overrides = Limits {
            storage_bytes: Some(UNLIMITED),
            jobs_per_hour: Some(0),
            max_upload_bytes: Some(5),
            ..Limits::default()
        };
        let effective = defaults.over(&overrides);
        assert_eq!(
            effective,
            Limits {
                storage_bytes: None,
                concurrent_jobs: Some(2),
                jobs_per_hour: Some(0),
                max_upload_bytes: Some(5),
                max_duration_secs: Some(3600),
            }
        );
        assert_eq!(defaults.over(&Limits::default()), defaults);
    }

    #[test]
    fn the_header_round_trips_and_is_strict() {
        let overrides = Limits {
            storage_bytes: Some(5 << 30),
            jobs_per_hour: Some(30),
            max_duration_secs: Some(UNLIMITED),
            ..Limits::default()
        };
        let header = overrides.to_header();
        assert_eq!(
            header,
            "storage_bytes=5368709120, jobs_per_hour=30, max_duration_secs=unlimited"
        );
        assert_eq!(Limits::from_header(&header).unwrap(), overrides);
        assert_eq!(Limits::from_header("").unwrap(), Limits::default());
        assert_eq!(Limits::default().to_header(), "");
        for bad in [
            "storage=5",
            "storage_bytes",
            "storage_bytes=-1",
            "storage_bytes=5GiB",
            "jobs_per_hour=1, jobs_per_hour=2",
            "concurrent_jobs=99999999999999999999",
            "concurrent_jobs=9223372036854775808",
        ] {
            assert!(Limits::from_header(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(10 << 30), "10.0 GiB (10737418240 bytes)");
        assert_eq!(seconds(45), "45s");
        assert_eq!(seconds(605), "10m 5s");
        assert_eq!(seconds(7260), "2h 1m");
    }

    #[test]
    fn a_quota_has_its_documented_shape() {
        let quota = Quota {
            limits: Limits {
                concurrent_jobs: Some(3),
                ..Limits::default()
            },
            usage: Usage {
                storage_bytes: 7,
                concurrent_jobs: 1,
                jobs_per_hour: 2,
            },
        };
        assert_eq!(
            serde_json::to_value(quota).unwrap(),
            serde_json::json!({
                "limits": {"storage_bytes": null, "concurrent_jobs": 3, "jobs_per_hour": null,
                           "max_upload_bytes": null, "max_duration_secs": null},
                "usage": {"storage_bytes": 7, "concurrent_jobs": 1, "jobs_per_hour": 2}
            })
        );
    }
}
