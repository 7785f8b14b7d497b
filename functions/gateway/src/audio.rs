//! `GET /v1/jobs/{id}/audio` and `GET /download?fid=`: the MP3, streamed from the worker as it
//! arrives, with `Range` and `If-None-Match` passed on and a download name.

use mp3conv_contract::job::{JobId, Source};

use crate::error::ApiError;
use crate::routes::{job_id, param, query_params};
use crate::upload::clean_filename;
use crate::upstream::{Streamed, Worker};

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

/// Opens job `id`'s MP3: the worker's status, the headers the client may see (with a
/// `Content-Disposition`), and the body to stream.
pub async fn open<W: Worker>(
    worker: &W,
    owner: &str,
    id: JobId,
    header: impl Fn(&str) -> Option<String>,
) -> Result<Streamed<W::Audio>, ApiError> {
    let job = worker.job(owner, id).await?;
    let forwarded: Vec<(String, String)> = FORWARDED
        .into_iter()
        .filter_map(|name| header(name).map(|value| (name.to_owned(), value)))
        .collect();
    let audio = worker.audio(owner, id, &forwarded).await?;
    let mut headers: Vec<(String, String)> = audio
        .headers
        .into_iter()
        .filter(|(name, _)| PASSED_BACK.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    headers.push((
        "content-disposition".into(),
        content_disposition(&job.source),
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

/// `Content-Disposition` for a job's MP3: the source's title with `.mp3`, as a plain ASCII
/// fallback and as RFC 8187 UTF-8.
pub fn content_disposition(source: &Source) -> String {
    let file = format!("{}.mp3", clean_filename(&source.title()));
    let ascii: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(&file, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeWorker;
    use futures::executor::block_on;

    #[test]
    fn dispositions() {
        let upload = Source::Upload {
            filename: "Café \"live\".mp4".into(),
            content_type: None,
        };
        assert_eq!(
            content_disposition(&upload),
            "attachment; filename=\"Caf_ _live_.mp3\"; filename*=UTF-8''Caf%C3%A9%20%22live%22%2Emp3"
        );
        let link = Source::Link {
            url: "https://x.test/a/talk.webm?x=1".into(),
        };
        assert!(content_disposition(&link).starts_with("attachment; filename=\"talk.mp3\""));
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
        let audio = block_on(open(&worker, "u1", job.id, header)).unwrap();
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
        let theirs = block_on(open(&worker, "u2", job.id, |_: &str| None));
        assert_eq!(theirs.unwrap_err(), ApiError::JobNotFound);
        assert_eq!(worker.calls().len(), 3);
    }
}
