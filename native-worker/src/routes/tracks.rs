//! `/internal/jobs/{id}/tracks/...`: the MP3s of a job split by chapters (`split=chapters`),
//! one by one and as one ZIP.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use mp3conv_contract::job::Download;

use super::Owner;
use super::jobs::{attachment_header, owned_job, serve_mp3};
use crate::State;
use crate::error::Error;
use crate::job::{Job, Status};
use crate::storage::ByteStream;
use crate::zip::{Archive, Entry, Unfit, entry_names};

/// The finished job's tracks: 409 `not_ready` before it is done, 410 `audio_expired` once
/// expired, 404 `no_tracks` if it was not split.
fn split_job(job: &Job) -> Result<(), Error> {
    if job.status == Status::Expired {
        return Err(Error::Expired);
    }
    if job.status != Status::Done {
        return Err(Error::NotReady(job.status.as_str()));
    }
    if job.tracks.is_empty() {
        return Err(Error::NoTracks);
    }
    Ok(())
}

/// `GET /internal/jobs/{id}/tracks/{n}`: track `n` (1-based) as its MP3, saved as
/// `NN - <chapter>.mp3`, with the rules of `/audio` (Range, ETag, If-None-Match). 409
/// `not_ready` before done, 404 `no_tracks` when the job was not split, 404 `no_such_track`
/// for no such track.
pub(super) async fn track(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path((id, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    split_job(&job)?;
    let track = number
        .parse::<u32>()
        .ok()
        .and_then(|n| job.tracks.iter().find(|t| t.number == n))
        .ok_or_else(|| Error::NoSuchTrack(number.chars().take(16).collect()))?;
    let name = job.download_name(Download::Track(track.number));
    serve_mp3(&state, &track.audio, &name, &headers).await
}

/// `GET /internal/jobs/{id}/tracks.zip`: every track, in order, in one ZIP of stored entries
/// named `NN - <title>.mp3`, streamed from the store with an exact `Content-Length`, as
/// `attachment; filename="<job title>.zip"` (the job's download name). 409 `not_ready` before done, 404 `no_tracks`
/// when the job was not split, 409 `too_large_for_zip` past 4 GiB (no ZIP64).
pub(super) async fn zip(
    AxumState(state): AxumState<Arc<State>>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let job = owned_job(&state, &owner, &id).await?;
    split_job(&job)?;
    let names = entry_names(job.tracks.iter().map(|t| (t.number, t.title.as_str())));
    let entries = job
        .tracks
        .iter()
        .zip(names)
        .map(|(track, name)| Entry {
            name,
            size: track.audio.size,
            crc32: track.crc32,
        })
        .collect();
    let archive = Archive::new(entries, job.updated_at).map_err(|e| match e {
        Unfit::TooLarge { size } => Error::TooLargeForZip { size },
        // Tracks are at most MAX_TRACKS, their names short: not a client's doing.
        other => Error::internal(other),
    })?;
    let size = archive.size();
    let blobs: Vec<String> = job.tracks.iter().map(|t| t.audio.id.clone()).collect();
    let mp3s = Arc::clone(&state.mp3s);
    let archive = Arc::new(archive);
    // One part per track (its header, then its bytes, the blob opened only when its turn
    // comes), then the central directory.
    let parts = stream::iter(0..=blobs.len()).then(move |index| {
        let archive = Arc::clone(&archive);
        let mp3s = Arc::clone(&mp3s);
        let blob = blobs.get(index).cloned();
        async move {
            let Some(blob) = blob else {
                let directory = Bytes::from(archive.central_directory());
                return Ok::<ByteStream, io::Error>(stream::iter([Ok(directory)]).boxed());
            };
            let expected = archive.entries()[index].size;
            let header = Bytes::from(archive.local_header(index));
            let body = mp3s
                .get(&blob, 0..expected)
                .await
                .map_err(io::Error::other)?;
            Ok(stream::iter([Ok(header)])
                .chain(exactly(body, expected))
                .boxed())
        }
    });
    let mut response = Response::new(Body::from_stream(parts.try_flatten()));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        attachment_header(&job.download_name(Download::Tracks))?,
    );
    Ok(response)
}

/// `body`, failing unless it is exactly `size` bytes: a blob that does not match its record
/// would make a ZIP whose framing lies, so the response is cut off instead.
fn exactly(body: ByteStream, size: u64) -> impl futures::Stream<Item = io::Result<Bytes>> {
    stream::unfold(Some((body, 0u64)), move |state| async move {
        let (mut body, seen) = state?;
        let wrong = |seen| {
            io::Error::other(format!(
                "a track's MP3 has {seen} bytes or more, its record says {size}"
            ))
        };
        match body.next().await {
            Some(Ok(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > size {
                    Some((Err(wrong(seen)), None))
                } else {
                    Some((Ok(chunk), Some((body, seen))))
                }
            }
            Some(Err(e)) => Some((Err(e), None)),
            None if seen != size => Some((Err(wrong(seen)), None)),
            None => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> ByteStream {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn bodies_must_match_their_records() {
        let read = |body, size| {
            exactly(body, size).try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
        };
        assert_eq!(read(chunks(&[b"ab", b"c"]), 3).await.unwrap(), &b"abc"[..]);
        assert!(read(chunks(&[b"ab"]), 3).await.is_err(), "short");
        assert!(read(chunks(&[b"ab", b"cd"]), 3).await.is_err(), "long");
        assert!(read(chunks(&[]), 0).await.unwrap().is_empty());
    }
}
