//! One trace across every process: the W3C Trace Context `traceparent` header and the
//! `x-request-id` header, read and written the same way by the host, the worker and the
//! eventing bridge (and carried by the functions in between).
//!
//! A participant that receives a valid `traceparent` keeps its trace id and names itself as the
//! parent of what it calls next ([`TraceParent::child`]); one that receives none, or an invalid
//! one, starts a new trace ([`TraceParent::start`]). Either way the trace id it logs is the one
//! every later hop logs too. Random bytes come from the caller, so this module stays plain
//! `std` on every target.
//!
//! Parsing follows W3C Trace Context Level 1 (§3.2 and §4.3, "Versioning of traceparent"):
//! version `00` is exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, with neither id all
//! zeros; a higher version (not `ff`) is read by the same rules for its first 55 characters,
//! which may be followed only by `-` and more fields. What this module writes is always
//! version `00`.

use std::fmt;
use std::str::FromStr;

/// The W3C Trace Context request header.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion of [`TRACEPARENT`], passed on only with the trace it belongs
/// to.
pub const TRACESTATE: &str = "tracestate";
/// The request id header: a client's own id when it is a sane token, otherwise one we make.
pub const REQUEST_ID: &str = "x-request-id";
/// The longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The `sampled` flag: the caller may have recorded this trace.
const SAMPLED: u8 = 0x01;
/// Length of a version `00` header, and of the part of a later version read as one.
const V00_LEN: usize = 55;

/// Whether a client's `x-request-id` is kept: 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// ASCII letters, digits, `-`, `_` and `.`, so it can go into logs and headers unescaped.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A trace's id: 16 bytes, never all zeros, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// A span's id (a `traceparent`'s parent id): 8 bytes, never all zeros, written as 16
/// lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl TraceId {
    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id's bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

/// A parsed `traceparent`: which trace a request belongs to and which span called it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

/// Why a `traceparent` header was not accepted (the receiver then starts a new trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceParentError {
    /// Shorter than 55 characters, or a version `00` header longer than that.
    Length,
    /// The version is not two lowercase hex digits, or is the forbidden `ff`.
    Version,
    /// A separator, a hex digit or what follows a later version's fields is wrong.
    Format,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is all zeros.
    ZeroParentId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceParentError::Length => "traceparent has the wrong length",
            TraceParentError::Version => "traceparent has an invalid version",
            TraceParentError::Format => {
                "traceparent is not version-traceid-parentid-flags in lowercase hex"
            }
            TraceParentError::ZeroTraceId => "traceparent's trace id is all zeros",
            TraceParentError::ZeroParentId => "traceparent's parent id is all zeros",
        })
    }
}

impl std::error::Error for TraceParentError {}

impl TraceParent {
    /// Reads a `traceparent` header value (surrounding spaces and tabs ignored).
    pub fn parse(header: &str) -> Result<TraceParent, TraceParentError> {
        let text = header.trim_matches([' ', '\t']).as_bytes();
        if text.len() < V00_LEN {
            return Err(TraceParentError::Length);
        }
        let version = hex::<1>(&text[0..2]).ok_or(TraceParentError::Version)?[0];
        match version {
            0xff => return Err(TraceParentError::Version),
            0x00 if text.len() != V00_LEN => return Err(TraceParentError::Length),
            // A later version may add fields, each behind a `-`.
            _ if text.len() > V00_LEN && text[V00_LEN] != b'-' => {
                return Err(TraceParentError::Format);
            }
            _ => {}
        }
        if text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
            return Err(TraceParentError::Format);
        }
        let trace_id = hex::<16>(&text[3..35]).ok_or(TraceParentError::Format)?;
        let parent_id = hex::<8>(&text[36..52]).ok_or(TraceParentError::Format)?;
        let flags = hex::<1>(&text[53..55]).ok_or(TraceParentError::Format)?[0];
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            flags,
        })
    }

    /// A new trace: the trace id from the first 16 of `random`'s bytes, this participant's
    /// span id from the last 8, marked sampled (every hop logs it).
    pub fn start(random: [u8; 24]) -> TraceParent {
        let (trace, span) = random.split_at(16);
        TraceParent {
            trace_id: TraceId(non_zero(trace.try_into().expect("16 bytes"))),
            parent_id: SpanId(non_zero(span.try_into().expect("8 bytes"))),
            flags: SAMPLED,
        }
    }

    /// The same trace with this participant's span (`random`) as the parent of what it calls
    /// next; only the flags this version defines (`sampled`) are passed on.
    pub fn child(&self, random: [u8; 8]) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: SpanId(non_zero(random)),
            flags: self.flags & SAMPLED,
        }
    }

    /// The child of a valid `incoming` header, or a new trace when there is none or it is
    /// invalid. `random` feeds [`TraceParent::start`], its first 8 bytes [`TraceParent::child`].
    pub fn continue_or_start(incoming: Option<&str>, random: [u8; 24]) -> TraceParent {
        match incoming.map(TraceParent::parse) {
            Some(Ok(parent)) => parent.child(random[..8].try_into().expect("8 bytes")),
            _ => TraceParent::start(random),
        }
    }

    /// The trace this request belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span that sent it.
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// Whether the caller may have recorded the trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The flags byte as received (only `sampled` is defined by version `00`).
    pub fn flags(&self) -> u8 {
        self.flags
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(text: &str) -> Result<TraceParent, TraceParentError> {
        TraceParent::parse(text)
    }
}

/// Version `00`: `00-<trace id>-<parent id>-<flags>`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// `2 × N` lowercase hex digits as bytes.
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

/// All-zero ids are invalid; random bytes are all zeros about never, but then they are not.
fn non_zero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes == [0; N] {
        bytes[N - 1] = 1;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_is_read_and_written_back() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(
            parent.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(EXAMPLE.parse::<TraceParent>(), Ok(parent));
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(
            TraceParent::parse(&format!(" {EXAMPLE}\t")),
            Ok(parent),
            "optional whitespace around a header value"
        );
    }

    #[test]
    fn invalid_headers_are_refused_with_their_reason() {
        use TraceParentError::*;
        let cases = [
            ("", Length),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                Length,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                Length,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Version,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                Format,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-x00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroParentId,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                Format,
            ),
        ];
        for (header, reason) in cases {
            assert_eq!(TraceParent::parse(header), Err(reason), "{header:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields_and_passed_on_as_00() {
        for header in [
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next",
        ] {
            let parent = TraceParent::parse(header).unwrap();
            assert_eq!(parent.to_string(), EXAMPLE, "{header}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_names_the_new_span() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.child([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        // Flags this version does not define are not passed on; `sampled` is.
        let flagged = TraceParent::parse(&EXAMPLE.replace("-01", "-ff")).unwrap();
        assert_eq!(flagged.flags(), 0xff);
        assert_eq!(flagged.child([9; 8]).flags(), 0x01);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-02")).unwrap();
        assert_eq!(unsampled.child([9; 8]).flags(), 0x00);
        // An all-zero span id is never written.
        assert_eq!(
            parent.child([0; 8]).parent_id().to_string(),
            "0000000000000001"
        );
    }

    #[test]
    fn a_new_trace_uses_the_callers_random_bytes() {
        let mut random = [0u8; 24];
        for (i, byte) in random.iter_mut().enumerate() {
            *byte = i as u8 + 0xa0;
        }
        let started = TraceParent::start(random);
        assert_eq!(
            started.to_string(),
            "00-a0a1a2a3a4a5a6a7a8a9aaabacadaeaf-b0b1b2b3b4b5b6b7-01"
        );
        let zeros = TraceParent::start([0; 24]);
        assert_eq!(TraceParent::parse(&zeros.to_string()), Ok(zeros));
    }

    #[test]
    fn continue_or_start_keeps_only_valid_traces() {
        let random = [7u8; 24];
        let continued = TraceParent::continue_or_start(Some(EXAMPLE), random);
        assert_eq!(
            continued.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"
        );
        for incoming in [None, Some("garbage"), Some(&EXAMPLE.to_uppercase()[..])] {
            let started = TraceParent::continue_or_start(incoming, random);
            assert_eq!(started, TraceParent::start(random), "{incoming:?}");
        }
    }

    /// Whatever bytes: what is written is read back as the same trace.
    #[test]
    fn every_written_header_reads_back() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut random = [0u8; 24];
            for chunk in random.chunks_mut(8) {
                chunk.copy_from_slice(&next().to_le_bytes());
            }
            let started = TraceParent::start(random);
            let header = started.to_string();
            assert_eq!(header.len(), 55);
            assert_eq!(TraceParent::parse(&header), Ok(started), "{header}");
            let child = started.child(next().to_le_bytes());
            assert_eq!(TraceParent::parse(&child.to_string()), Ok(child));
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        for good in ["abc-123", "A.b_c", "x", &"7".repeat(MAX_REQUEST_ID_LEN)] {
            assert!(is_valid_request_id(good), "{good}");
        }
        for bad in [
            "",
            "with space",
            "tab\there",
            "new\nline",
            "quote\"",
            "ünïcode",
            "semi;colon",
            &"7".repeat(MAX_REQUEST_ID_LEN + 1),
        ] {
            assert!(!is_valid_request_id(bad), "{bad:?}");
        }
    }
}
