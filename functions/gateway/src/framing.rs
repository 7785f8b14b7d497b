//! A bound on a multipart body's framing, checked as the bytes arrive: the multipart parser
//! holds everything it has read until it finds the next delimiter or the end of a part's
//! headers, so a body with no delimiter (or a part header that never ends) would be held
//! whole. File data is never bounded here (the upload limit does that); the preamble before
//! the first delimiter and each part's headers are.

/// Most bytes before the first delimiter.
pub const MAX_PREAMBLE_BYTES: usize = 64 * 1024;
/// Most bytes of one part's headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Where in the body the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the first delimiter.
    Preamble,
    /// After a delimiter, before the blank line that ends the part's headers.
    Headers,
    /// A part's content.
    Content,
    /// After the closing delimiter: nothing the parser keeps.
    Epilogue,
}

/// What passed a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overgrown {
    /// No delimiter within [`MAX_PREAMBLE_BYTES`].
    Preamble,
    /// A part's headers longer than [`MAX_HEADER_BYTES`].
    Headers,
}

impl std::fmt::Display for Overgrown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Overgrown::Preamble => write!(
                f,
                "no boundary delimiter in the first {} KiB",
                MAX_PREAMBLE_BYTES / 1024
            ),
            Overgrown::Headers => write!(
                f,
                "a part's headers are longer than {} KiB",
                MAX_HEADER_BYTES / 1024
            ),
        }
    }
}

impl std::error::Error for Overgrown {}

/// Follows a body's framing chunk by chunk.
#[derive(Debug)]
pub struct Framing {
    /// `--` and the boundary.
    delimiter: Vec<u8>,
    place: Place,
    /// Bytes seen in the current place (preamble or headers).
    seen: usize,
    /// The end of the previous chunk, which a delimiter or a blank line may straddle.
    tail: Vec<u8>,
}

impl Framing {
    /// Framing for a body whose boundary is `boundary`.
    pub fn new(boundary: &str) -> Framing {
        Framing {
            delimiter: [b"--", boundary.as_bytes()].concat(),
            place: Place::Preamble,
            seen: 0,
            tail: Vec::new(),
        }
    }

    /// Takes the next chunk; an error once the preamble or a part's headers outgrow their
    /// bound.
    pub fn check(&mut self, chunk: &[u8]) -> Result<(), Overgrown> {
        let mut data = std::mem::take(&mut self.tail);
        data.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            let rest = &data[at..];
            match self.place {
                Place::Epilogue => return Ok(()),
                Place::Preamble | Place::Content => match find(rest, &self.delimiter) {
                    Some(i) => {
                        self.grow(i)?;
                        self.enter(Place::Headers);
                        at += i + self.delimiter.len();
                    }
                    None => return self.keep(&data, at, self.delimiter.len() - 1),
                },
                Place::Headers => {
                    // `--` right after a delimiter closes the body.
                    if self.seen == 0 && rest.len() < 2 {
                        return self.keep(&data, at, rest.len());
                    }
                    if self.seen == 0 && rest.starts_with(b"--") {
                        self.enter(Place::Epilogue);
                        continue;
                    }
                    match find(rest, b"\r\n\r\n") {
                        Some(i) => {
                            self.grow(i)?;
                            self.enter(Place::Content);
                            at += i + 4;
                        }
                        None => return self.keep(&data, at, 3),
                    }
                }
            }
        }
    }

    fn enter(&mut self, place: Place) {
        self.place = place;
        self.seen = 0;
    }

    /// Counts `n` more bytes of the current place against its bound.
    fn grow(&mut self, n: usize) -> Result<(), Overgrown> {
        self.seen += n;
        match self.place {
            Place::Preamble if self.seen > MAX_PREAMBLE_BYTES => Err(Overgrown::Preamble),
            Place::Headers if self.seen > MAX_HEADER_BYTES => Err(Overgrown::Headers),
            _ => Ok(()),
        }
    }

    /// Keeps the last `keep` bytes of `data[at..]` for the next chunk and counts the rest.
    fn keep(&mut self, data: &[u8], at: usize, keep: usize) -> Result<(), Overgrown> {
        let rest = &data[at..];
        let kept = keep.min(rest.len());
        let counted = rest.len() - kept;
        self.tail = rest[counted..].to_vec();
        if self.place == Place::Content {
            return Ok(());
        }
        self.grow(counted)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut from = 0;
    while let Some(offset) = haystack[from..=haystack.len() - needle.len()]
        .iter()
        .position(|b| *b == first)
    {
        let i = from + offset;
        if &haystack[i..i + needle.len()] == needle {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = b"preamble text\r\n".to_vec();
        for (headers, content) in parts {
            body.extend_from_slice(b"--XB\r\n");
            body.extend_from_slice(headers.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XB--\r\nepilogue");
        body
    }

    fn feed(data: &[u8], piece: usize) -> Result<(), Overgrown> {
        let mut framing = Framing::new("XB");
        data.chunks(piece)
            .try_for_each(|chunk| framing.check(chunk))
    }

    #[test]
    fn well_formed_bodies_pass_in_any_chunking() {
        let content = vec![b'-'; 300_000];
        let data = body(&[
            ("content-disposition: form-data; name=\"bitrate\"", b"320"),
            (
                "content-disposition: form-data; name=\"file\"; filename=\"a.mp4\"",
                &content,
            ),
        ]);
        for piece in [1, 2, 3, 5, 7, 64, 4096, 65_536, data.len()] {
            assert_eq!(feed(&data, piece), Ok(()), "pieces of {piece}");
        }
    }

    #[test]
    fn a_body_without_a_delimiter_is_stopped_early() {
        let zeros = vec![0u8; MAX_PREAMBLE_BYTES + 100];
        for piece in [1000, 65_536, zeros.len()] {
            assert_eq!(feed(&zeros, piece), Err(Overgrown::Preamble), "{piece}");
        }
        // Up to the bound is fine.
        let mut near = vec![0u8; MAX_PREAMBLE_BYTES];
        near.extend_from_slice(b"--XB\r\nh: v\r\n\r\nx\r\n--XB--");
        assert_eq!(feed(&near, 999), Ok(()));
    }

    #[test]
    fn endless_part_headers_are_stopped() {
        let mut data = b"--XB\r\ncontent-disposition: form-data; name=\"a\"\r\nx-pad: ".to_vec();
        data.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES + 10));
        for piece in [1, 100, 8192, data.len()] {
            assert_eq!(feed(&data, piece), Err(Overgrown::Headers), "{piece}");
        }
    }

    #[test]
    fn a_delimiter_split_across_chunks_is_found() {
        let data = body(&[("h: v", b"content")]);
        let at = data.windows(4).position(|w| w == b"--XB").unwrap();
        let mut framing = Framing::new("XB");
        framing.check(&data[..at + 2]).unwrap();
        framing.check(&data[at + 2..]).unwrap();
        assert_eq!(framing.place, Place::Epilogue);
    }
}
