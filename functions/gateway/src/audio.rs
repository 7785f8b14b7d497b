//! `GET /v1/jobs/{id}/audio` and `GET /download?fid=`: the MP3; `GET /v1/jobs/{id}/tracks/{n}`
//! and `GET /v1/jobs/{id}/tracks.zip`: a chapter's MP3 and all of them in one ZIP (a job split
//! by chapters). Each is one call to the worker, which checks the job is the caller's and
//! names the download ([`Job::download_name`]); its answer is streamed as it arrives, with
//! `Range` and `If-None-Match` passed on. A worker from before it named downloads (a rolling
//! update that reaches the gateway first) is asked for the job, and the gateway names it.
//!
//! [`Job::download_name`]: mp3conv_contract::job::Job::download_name

use mp3conv_contract::http::attachment;
use mp3conv_contract::job::JobId;

use crate::error::ApiError;
use crate::routes::{job_id, param, query_params};
use crate::upstream::{Download, Streamed, Worker};

/// Request headers passed on to the worker.
const FORWARDED: [&str; 2] = ["range", "if-none-match"];
/// Worker response headers passed on to the client.
const PASSED_BACK: [&str; 6] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
    "content-disposition",
];

/// Opens what of job `id` is asked for: the worker's status, the headers the client may see
/// and the body to stream.
pub async fn open<W: Worker>(
    worker: &W,
    owner: &str,
    id: JobId,
    what: Download,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Streamed<W::Audio>, ApiError> {
    let forwarded: Vec<(String, String)> = FORWARDED
        .into_iter()
        .filter_map(|name| header(name).map(|value| (name.to_owned(), value)))
        .collect();
    let audio = worker.download(owner, id, what, &forwarded).await?;
    let mut headers: Vec<(String, String)> = audio
        .headers
        .into_iter()
        .filter(|(name, _)| PASSED_BACK.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    if !headers
        .iter()
        .any(|(name, _)| name == "content-disposition")
        && let Ok(job) = worker.job(owner, id).await
    {
        let name = job.download_name(what);
        headers.push(("content-disposition".into(), attachment(&name)));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeWorker;
    use futures::executor::block_on;

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
        assert_eq!(
            audio.headers[3].1, "attachment; filename=\"talk.mp3\"; filename*=UTF-8''talk.mp3",
            "the worker's name for it"
        );
        assert_eq!(audio.body, b"ID3");
        // One call to the worker: it checks the owner and names the file.
        let calls = worker.calls();
        assert_eq!(calls, [format!("audio {} range=bytes=0-1", job.id)]);
        let theirs = block_on(open(&worker, "u2", job.id, Download::Audio, |_: &str| None));
        assert_eq!(theirs.unwrap_err(), ApiError::JobNotFound);
        let missing = block_on(open(
            &worker,
            "u1",
            job.id,
            Download::Track(2),
            |_: &str| None,
        ));
        assert_eq!(missing.unwrap_err(), ApiError::TrackNotFound);
    }

    #[test]
    fn an_older_workers_download_is_named_from_its_job() {
        let worker = FakeWorker::default();
        worker.unnamed_downloads.set(true);
        let job = worker.add_job("u1", "talk.mp4");
        let audio = block_on(open(&worker, "u1", job.id, Download::Audio, |_: &str| None)).unwrap();
        let disposition = audio
            .headers
            .iter()
            .find(|(n, _)| n == "content-disposition");
        assert_eq!(
            disposition.map(|(_, v)| v.as_str()),
            Some("attachment; filename=\"talk.mp3\"; filename*=UTF-8''talk.mp3")
        );
        assert_eq!(
            worker.calls(),
            [format!("audio {} ", job.id), format!("job {}", job.id)]
        );
    }
}
