//! The WASI half of the client: thin calls on `wasi:http/outgoing-handler`.

use spin_sdk::http::{
    Fields, IncomingResponse, Method as WasiMethod, OutgoingBody, OutgoingRequest,
    Scheme as WasiScheme,
};
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::{ErrorCode, FutureIncomingResponse, RequestOptions};
use wasi::io::streams::{OutputStream, StreamError};

use super::{ErrorKind, HttpError, Limited, Method, Request, Scheme};

const READ_CHUNK: u64 = 64 * 1024;

/// A response whose headers have arrived; its body is still to be read (or streamed on).
pub struct Response {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    incoming: IncomingResponse,
    url: String,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Every header, as the peer sent it.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of the header `name` (any case), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
    }

    /// The headers named in `names`, lower-cased, as text (see [`super::keep_headers`]).
    pub fn keep_headers(&self, names: &[&str]) -> Vec<(String, String)> {
        super::keep_headers(&self.headers, names)
    }

    /// Reads the whole body, refusing one past `limit` bytes ([`ErrorKind::TooLarge`]).
    pub fn read(self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let failed = |detail: String| HttpError::new(ErrorKind::Failed, self.url.clone(), detail);
        let body = self
            .incoming
            .consume()
            .map_err(|()| failed("the response body was taken".into()))?;
        let stream = body
            .stream()
            .map_err(|()| failed("the response body is not readable".into()))?;
        let mut received = Limited::new(limit);
        let outcome = loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    if received.push(&chunk).is_err() {
                        break Err(HttpError::new(
                            ErrorKind::TooLarge,
                            self.url.clone(),
                            format!("more than {limit} bytes"),
                        ));
                    }
                }
                Err(StreamError::Closed) => break Ok(()),
                Err(StreamError::LastOperationFailed(err)) => {
                    break Err(failed(err.to_debug_string()));
                }
            }
        };
        drop(stream);
        drop(body);
        outcome.map(|()| received.into_bytes())
    }

    /// The response itself, to stream its body on ([`crate::reply::stream_back`]).
    pub fn into_incoming(self) -> IncomingResponse {
        self.incoming
    }
}

/// Sends `request` with its body held in memory (with `Content-Length`), or none, and waits
/// for the response's headers.
pub fn send(request: Request) -> Result<Response, HttpError> {
    let url = request.url();
    let outgoing = outgoing(&request)?;
    let Some(bytes) = request.body_bytes() else {
        // A body never taken is an empty one.
        return wait(handle(outgoing, &request)?, &url);
    };
    let body = outgoing
        .body()
        .map_err(|()| HttpError::new(ErrorKind::Invalid, &url, "the body was taken"))?;
    let future = handle(outgoing, &request)?;
    // A receiver that answers early and stops reading fails the write; its answer says why.
    let _ = write_body(body, bytes);
    wait(future, &url)
}

/// A request whose body is being streamed.
pub struct Upload {
    url: String,
    // Field order is drop order: the stream before its body.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    future: FutureIncomingResponse,
}

/// Starts `request` (which holds no body in memory: its body is written with
/// [`Upload::write`]).
pub fn start(request: Request) -> Result<Upload, HttpError> {
    let url = request.url();
    if request.body_bytes().is_some() {
        return Err(HttpError::new(
            ErrorKind::Invalid,
            url,
            "a streamed request holds no body in memory",
        ));
    }
    let outgoing = outgoing(&request)?;
    let body = outgoing
        .body()
        .map_err(|()| HttpError::new(ErrorKind::Invalid, &url, "the body was taken"))?;
    let stream = body
        .write()
        .map_err(|()| HttpError::new(ErrorKind::Invalid, &url, "the body is not writable"))?;
    let future = handle(outgoing, &request)?;
    Ok(Upload {
        url,
        stream: Some(stream),
        body: Some(body),
        future,
    })
}

impl Upload {
    /// Writes a chunk, waiting while the host drains the stream. An error means the receiver
    /// stopped reading: [`Upload::stop`] then gives its answer.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), HttpError> {
        let stream = self
            .stream
            .as_ref()
            .ok_or_else(|| self.error("the body is closed"))?;
        write_all(stream, chunk).map_err(|err| self.error(&format!("{err:?}")))
    }

    /// Ends the body and waits for the response.
    pub fn finish(mut self) -> Result<Response, HttpError> {
        if let Some(stream) = self.stream.take() {
            let _ = stream.blocking_flush();
        }
        if let Some(body) = self.body.take() {
            OutgoingBody::finish(body, None).map_err(|code| error_of(&self.url, &code))?;
        }
        wait(self.future, &self.url)
    }

    /// The receiver stopped reading: no more body; its answer.
    pub fn stop(mut self) -> Result<Response, HttpError> {
        drop(self.stream.take());
        drop(self.body.take());
        wait(self.future, &self.url)
    }

    /// Abandons the request: the body is dropped unfinished, so the receiver sees a broken
    /// body and makes nothing of it.
    pub fn abort(self) {}

    fn error(&self, detail: &str) -> HttpError {
        HttpError::new(ErrorKind::Failed, &self.url, detail)
    }
}

fn outgoing(request: &Request) -> Result<OutgoingRequest, HttpError> {
    let url = request.url();
    let fields = Fields::from_list(&request.wire_headers())
        .map_err(|err| HttpError::new(ErrorKind::Invalid, &url, format!("header: {err:?}")))?;
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method() {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
    };
    let scheme = match request.scheme() {
        Scheme::Http => WasiScheme::Http,
        Scheme::Https => WasiScheme::Https,
    };
    outgoing
        .set_method(&method)
        .and_then(|()| outgoing.set_scheme(Some(&scheme)))
        .and_then(|()| outgoing.set_authority(Some(request.authority())))
        .and_then(|()| outgoing.set_path_with_query(Some(request.path_and_query())))
        .map_err(|()| HttpError::new(ErrorKind::Invalid, &url, "cannot address it"))?;
    Ok(outgoing)
}

fn handle(
    outgoing: OutgoingRequest,
    request: &Request,
) -> Result<FutureIncomingResponse, HttpError> {
    let options = request.timeout_value().map(|timeout| {
        let options = RequestOptions::new();
        let nanos = Some(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
        // A host that cannot set one keeps its own default.
        let _ = options.set_connect_timeout(nanos);
        let _ = options.set_first_byte_timeout(nanos);
        let _ = options.set_between_bytes_timeout(nanos);
        options
    });
    outgoing_handler::handle(outgoing, options).map_err(|code| error_of(&request.url(), &code))
}

fn wait(future: FutureIncomingResponse, url: &str) -> Result<Response, HttpError> {
    future.subscribe().block();
    let incoming = future
        .get()
        .ok_or_else(|| HttpError::new(ErrorKind::Failed, url, "no response"))?
        .map_err(|()| HttpError::new(ErrorKind::Failed, url, "the response was taken"))?
        .map_err(|code| error_of(url, &code))?;
    Ok(Response {
        status: incoming.status(),
        headers: incoming.headers().entries(),
        incoming,
        url: url.to_owned(),
    })
}

/// Writes, flushes and finishes a body held in memory.
fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let written = match body.write() {
        Ok(stream) => {
            let result = write_all(&stream, bytes)
                .and_then(|()| stream.blocking_flush())
                .map_err(|err| format!("{err:?}"));
            drop(stream);
            result
        }
        Err(()) => Err("the body is not writable".to_owned()),
    };
    written?;
    OutgoingBody::finish(body, None).map_err(|code| format!("{code:?}"))
}

/// Writes all of `data`, waiting for room as the host drains the stream.
fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), StreamError> {
    while !data.is_empty() {
        let room = stream.check_write()?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        stream.write(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

fn error_of(url: &str, code: &ErrorCode) -> HttpError {
    let detail = format!("{code:?}");
    HttpError::new(ErrorKind::of_error_code(&detail), url, detail)
}
