//! The job: one video on its way to becoming an MP3. Its shape is the contract's
//! ([`mp3conv_contract::job`]), shared with the gateway, the notifier and the client; what
//! only the worker needs of it is here.

pub use mp3conv_contract::job::{
    Audio, Bitrate, InvalidBitrate, Job, JobError, JobId, JobPage, LinkRequest, MediaLimits,
    Source, Status, Track,
};

/// Most tracks a job split by chapters makes: a source with more chapters is refused.
pub const MAX_TRACKS: u32 = 100;

/// Blob id of track `number` (1-based) of job `id` in the MP3 store.
pub fn track_blob_id(id: JobId, number: u32) -> String {
    format!("{id}.t{number:03}")
}

/// ffmpeg arguments selecting `bitrate`.
pub fn ffmpeg_args(bitrate: Bitrate) -> [String; 2] {
    match bitrate {
        Bitrate::Constant(kbps) => ["-b:a".into(), format!("{kbps}k")],
        Bitrate::Variable(q) => ["-q:a".into(), q.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_become_lame_settings() {
        assert_eq!(ffmpeg_args(Bitrate::Constant(320)), ["-b:a", "320k"]);
        assert_eq!(ffmpeg_args(Bitrate::Variable(2)), ["-q:a", "2"]);
    }
}
