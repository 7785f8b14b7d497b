//! `GET /v1/jobs/{id}/audio` and `GET /download?fid=`: the MP3; `GET /v1/jobs/{id}/tracks/{n}`
//! and `GET /v1/jobs/{id}/tracks.zip`: a chapter's MP3 and all of them in one ZIP (a job split
//! by chapters). Each is streamed from the worker as it arrives, with `Range` and
//! `If-None-Match` passed on and a download name.

use mp3conv_contract::http::{attachment, file_name};
use mp3conv_contract::job::{Job, JobId};

use crate::error::ApiError;
use crate::routes::{job_id, param, query_params};
use crate::upstream::{Download, Streamed, Worker};

/// Request headers passed on to the worker.
const FORWARDED: [&str; 2] = ["range", "if-none-match"];
/// Worker response headers passed on to the client.
const PASSED_BACK: [&str; 5] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
];

/// Opens what of job `id` is asked for: the worker's status, the headers the client may see
/// (with a `Content-Disposition`), and the body to stream.
pub async fn open<W: Worker>(
    worker: &W,
    owner: &str,
    id: JobId,
    what: Download,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Streamed<W::Audio>, ApiError> {
    let job = worker.job(owner, id).await?;
    let forwarded: Vec<(String, String)> = FORWARDED
        .into_iter()
        .filter_map(|name| header(name).map(|value| (name.to_owned(), value)))
        .collect();
    let audio = match worker.download(owner, id, what, &forwarded).await {
        // The job was there a moment ago: what the worker does not find is the track.
        Err(ApiError::JobNotFound) if matches!(what, Download::Track(_)) => {
            return Err(ApiError::TrackNotFound);
        }
        other => other?,
    };
    let mut headers: Vec<(String, String)> = audio
        .headers
        .into_iter()
        .filter(|(name, _)| PASSED_BACK.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    headers.push((
        "content-disposition".into(),
        attachment(&download_name(&job, what)),
    ));
    Ok(Streamed {
        status: audio.status,
        headers,
        body: audio.body,
    })
}

/// `fid` of `GET /download` (the original system's name): the audio id or the job id, which
/// are the same.
pub fn download_id(query: &str) -> Result<JobId, ApiError> {
    let params = query_params(query);
    let fid = param(&params, "fid")
        .ok_or_else(|| ApiError::bad_request("missing_fid", "give the file id as ?fid="))?;
    job_id(fid.trim())
}

/// A track's number in a path (`/tracks/{n}`): 1 to 999, as written by the job (no sign, no
/// leading zero). Anything else names no track.
pub fn track_number(text: &str) -> Result<u32, ApiError> {
    let digits = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    text.parse::<u32>()
        .ok()
        .filter(|n| digits && *n >= 1 && !text.starts_with('0'))
        .ok_or(ApiError::TrackNotFound)
}

/// The name a download is saved under (made safe, [`file_name`]): the MP3's title (the `title`
/// option, else the source's name) with `.mp3` or `.zip`; a track as its ZIP entry is named,
/// `NN - <chapter>.mp3`.
pub fn download_name(job: &Job, what: Download) -> String {
    let title = match job.title() {
        title if title.trim().is_empty() => job.source.title(),
        title => title,
    };
    match what {
        Download::Audio => file_name(&title, "mp3", "download"),
        Download::Tracks => file_name(&title, "zip", "download"),
        Download::Track(n) => match job.tracks.iter().find(|t| t.number == n) {
            Some(track) => file_name(&format!("{n:02} - {}", track.title), "mp3", "download"),
            None => file_name(&format!("{title} - {n:02}"), "mp3", "download"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeWorker;
    use futures::executor::block_on;
    use mp3conv_contract::job::{Audio, Source, Track};

    fn job(source: Source) -> Job {
        Job::new("u1".into(), source, Default::default())
    }

    #[test]
    fn dispositions() {
        let upload = job(Source::Upload {
            filename: "Café \"live\".mp4".into(),
            content_type: None,
        });
        assert_eq!(
            attachment(&download_name(&upload, Download::Audio)),
            "attachment; filename=\"Caf_ _live_.mp3\"; filename*=UTF-8''Caf%C3%A9%20_live_.mp3"
        );
        let mut link = job(Source::link("https://x.test/a/talk.webm?x=1"));
        assert!(
            attachment(&download_name(&link, Download::Audio))
                .starts_with("attachment; filename=\"talk.mp3\"")
        );
        // The title option names the file; one asked to be left out does not.
        link.options.title = Some("Keynote/2026".into());
        assert_eq!(
            download_name(&link, Download::Tracks),
            "Keynote_2026.zip",
            "no path in a file name"
        );
        // However long the title, the name keeps its extension.
        link.options.title = Some("long ".repeat(100));
        let long = download_name(&link, Download::Audio);
        assert!(long.ends_with("long.mp3") && long.len() <= 204, "{long}");
        link.options.title = Some(" ..\u{0} ".into());
        assert_eq!(download_name(&link, Download::Audio), "download.mp3");
        link.options.title = Some(String::new());
        assert_eq!(download_name(&link, Download::Audio), "talk.mp3");
        link.tracks.push(Track {
            number: 2,
            title: "Questions".into(),
            start: 0.0,
            end: 1.0,
            audio: Audio {
                id: "a".into(),
                size: 1,
                duration: 1.0,
                bitrate: Default::default(),
            },
            crc32: 0,
        });
        assert_eq!(
            download_name(&link, Download::Track(2)),
            "02 - Questions.mp3"
        );
        assert_eq!(download_name(&link, Download::Track(7)), "talk - 07.mp3");
    }

    #[test]
    fn track_numbers() {
        assert_eq!(track_number("1"), Ok(1));
        assert_eq!(track_number("100"), Ok(100));
        for bad in ["0", "01", "-1", "+1", "", "1000", "x", "{n}", "1.0", "٣"] {
            assert_eq!(track_number(bad), Err(ApiError::TrackNotFound), "{bad}");
        }
    }

    #[test]
    fn download_ids() {
        let id = "0192f1a4-7c2b-7d3e-8f00-123456789abc";
        assert_eq!(
            download_id(&format!("fid=%20{id}")).unwrap().to_string(),
            id
        );
        assert_eq!(download_id("fid=nope"), Err(ApiError::JobNotFound));
        assert!(matches!(
            download_id(""),
            Err(ApiError::BadRequest {
                code: "missing_fid",
                ..
            })
        ));
    }

    #[test]
    fn passes_range_on_and_only_public_headers_back() {
        let worker = FakeWorker::default();
        let job = worker.add_job("u1", "talk.mp4");
        let header = |name: &str| match name {
            "range" => Some("bytes=0-1".to_owned()),
            "cookie" => Some("secret".to_owned()),
            _ => None,
        };
        let audio = block_on(open(&worker, "u1", job.id, Download::Audio, header)).unwrap();
        assert_eq!(audio.status, 206);
        let names: Vec<&str> = audio.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "content-length",
                "etag",
                "content-disposition"
            ]
        );
        assert_eq!(audio.body, b"ID3");
        let calls = worker.calls();
        assert_eq!(calls[1], format!("audio {} range=bytes=0-1", job.id));
        // Someone else's job is no job, and its audio is never asked for.
        let theirs = block_on(open(&worker, "u2", job.id, Download::Audio, |_: &str| None));
        assert_eq!(theirs.unwrap_err(), ApiError::JobNotFound);
        assert_eq!(worker.calls().len(), 3);
    }
}
