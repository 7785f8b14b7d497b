//! The messages on the `video` and `mp3` queues: the worker writes them, the converter and the
//! notifier (through the eventing source) read them.

use serde::{Deserialize, Serialize};

use crate::job::{Audio, Job, JobError, JobId, Status};

/// AMQP `type` of a job waiting for conversion.
pub const VIDEO_TYPE: &str = "mp3conv.video.queued";
/// AMQP `type` of an announcement: the job is done or failed.
pub const MP3_TYPE: &str = "mp3conv.mp3.ready";

/// The body of a message on the `video` and `mp3` queues.
///
/// It keeps the original system's fields (`video_fid`, `mp3_fid`, `username`) so existing
/// consumers keep working, and adds the job's identity and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Blob id of the video.
    pub video_fid: String,
    /// Blob id of the MP3, once there is one.
    pub mp3_fid: Option<String>,
    /// The owner (the original system's name for it).
    pub username: String,
    /// The job.
    pub job_id: JobId,
    /// The owner's user id.
    pub owner: String,
    /// 1 for the first attempt, then 2, 3...
    pub attempt: u32,
    /// Job state when the message was sent.
    pub status: Status,
    /// The MP3, in announcements of done jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Audio>,
    /// The reason, in announcements of failed jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
}

impl JobMessage {
    /// The message describing `job` at `attempt`.
    pub fn for_job(job: &Job, attempt: u32) -> Self {
        Self {
            video_fid: job.video_id.clone(),
            mp3_fid: job.audio.as_ref().map(|a| a.id.clone()),
            username: job.owner.clone(),
            job_id: job.id,
            owner: job.owner.clone(),
            attempt,
            status: job.status,
            audio: job.audio.clone(),
            error: job.error.clone(),
        }
    }

    /// The AMQP `message_id`: it depends only on the job (and, for an announcement, its final
    /// state), so it stays the same across redeliveries and retries, and the event source
    /// turns it into the CloudEvent's id.
    pub fn message_id(&self, announcement: bool) -> String {
        if announcement {
            format!("{}.{}", self.job_id, self.status)
        } else {
            self.job_id.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Source;

    #[test]
    fn messages_keep_the_original_fields_and_stable_ids() {
        let mut job = Job::new(
            "alice".into(),
            Source::link("http://example.com/a.mp4"),
            Default::default(),
        );
        let first = JobMessage::for_job(&job, 1);
        let body = serde_json::to_value(&first).unwrap();
        for field in [
            "video_fid",
            "mp3_fid",
            "username",
            "job_id",
            "owner",
            "attempt",
            "status",
        ] {
            assert!(body.get(field).is_some(), "{field} missing from {body}");
        }
        assert!(body.get("audio").is_none() && body.get("error").is_none());
        assert_eq!(
            first.message_id(false),
            JobMessage::for_job(&job, 2).message_id(false)
        );
        job.fail("no_audio", "no sound");
        let failed = JobMessage::for_job(&job, 2);
        assert_eq!(failed.message_id(true), format!("{}.failed", job.id));
        let read: JobMessage =
            serde_json::from_slice(&serde_json::to_vec(&failed).unwrap()).unwrap();
        assert_eq!(read, failed);
    }
}
