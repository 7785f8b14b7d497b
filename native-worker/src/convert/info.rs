//! The length of an MP3 that ffmpeg wrote, read from its Xing/Info header.
//!
//! ffmpeg's mp3 muxer begins a seekable output with an empty MPEG frame holding a Xing
//! header (named `Info` for constant bitrates) and, once the encoding ends, goes back to write
//! the number of audio frames there. ffprobe reports that number times the samples per frame
//! as the MP3's length; reading it here gives the same figure without an ffprobe pass (70-120
//! ms after each encoding of a 10-minute video). An MP3 without the header (ffmpeg writes none
//! to an output it cannot seek) is left to ffprobe, and so is a header that counts no frame
//! (ffprobe finds no audio there).
//!
//! The header also counts the bytes of audio ffmpeg wrote. A file holding fewer (the disk
//! filled, or a file size limit was hit: ffmpeg still exits 0, and ffprobe reports the
//! header's length) is an error here, where ffprobe let it pass.

use std::io;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What the header says of the MP3's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Length {
    /// Audio frames, not counting the header's own.
    pub frames: u32,
    pub sample_rate: u32,
    pub samples_per_frame: u32,
    /// Bytes from the header's frame to the end of the audio, when the header counts them.
    pub bytes: Option<u32>,
}

impl Length {
    /// The length in seconds, as ffprobe reports it: the encoder's delay and padding included.
    pub fn seconds(&self) -> f64 {
        f64::from(self.frames) * f64::from(self.samples_per_frame) / f64::from(self.sample_rate)
    }
}

/// The bytes read after the ID3v2 tag: a frame header, the longest side information (32
/// bytes), the Xing tag, its flags, frame count and byte count.
const HEAD: usize = 4 + 32 + 16;

/// Reads the length of the MP3 at `path` from its header; `None` when it has none. Fails
/// with [`io::ErrorKind::UnexpectedEof`] when the file holds other than the bytes its header
/// counts.
pub async fn read(path: &Path) -> io::Result<Option<Length>> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut id3 = [0u8; 10];
    let got = read_up_to(&mut file, &mut id3).await?;
    let skip = tag_size(&id3[..got]);
    file.seek(io::SeekFrom::Start(skip)).await?;
    let mut head = [0u8; HEAD];
    let got = read_up_to(&mut file, &mut head).await?;
    let Some(length) = parse(&head[..got]) else {
        return Ok(None);
    };
    let held = file.metadata().await?.len().saturating_sub(skip);
    match length.bytes {
        Some(counted) if u64::from(counted) != held => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the MP3 holds {held} bytes of audio where its header counts {counted}"),
        )),
        _ => Ok(Some(length)),
    }
}

/// Fills `buf` as far as the file goes; returns how much it read.
async fn read_up_to(file: &mut tokio::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The bytes an ID3v2 tag at the start takes (its header, body and footer); 0 without one.
fn tag_size(head: &[u8]) -> u64 {
    let [b'I', b'D', b'3', _, _, flags, size @ ..] = head else {
        return 0;
    };
    // Four 7-bit bytes; a byte with its top bit set is no size.
    if size.iter().any(|b| b & 0x80 != 0) {
        return 0;
    }
    let body = size
        .iter()
        .fold(0u64, |total, &b| (total << 7) | u64::from(b));
    let footer = if flags & 0x10 != 0 { 10 } else { 0 };
    10 + body + footer
}

/// The length an MPEG audio layer III frame at the start of `head` holds in its Xing/Info
/// header; `None` when there is no such frame or header, or the header counts no frames.
pub fn parse(head: &[u8]) -> Option<Length> {
    let [0xFF, b1, b2, b3, ..] = *head else {
        return None;
    };
    if b1 & 0xE0 != 0xE0 {
        return None;
    }
    // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1 (1 is reserved).
    let version = (b1 >> 3) & 3;
    let layer = (b1 >> 1) & 3;
    // A CRC would move the header; ffmpeg writes none.
    let crc = b1 & 1 == 0;
    if version == 1 || layer != 1 || crc {
        return None;
    }
    let base = match (b2 >> 2) & 3 {
        0 => 44_100,
        1 => 48_000,
        2 => 32_000,
        _ => return None,
    };
    let mono = (b3 >> 6) & 3 == 3;
    let (sample_rate, samples_per_frame, side) = match version {
        3 => (base, 1152, if mono { 17 } else { 32 }),
        2 => (base / 2, 576, if mono { 9 } else { 17 }),
        _ => (base / 4, 576, if mono { 9 } else { 17 }),
    };
    let xing = head.get(4 + side..)?;
    let field = |at: usize| {
        xing.get(at..at + 4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")))
    };
    let tag = xing.get(..4)?;
    if tag != b"Xing" && tag != b"Info" {
        return None;
    }
    let flags = field(4)?;
    if flags & 1 == 0 {
        return None;
    }
    let frames = field(8).filter(|&frames| frames > 0)?;
    // The byte count follows the frame count when its flag is set.
    let bytes = if flags & 2 != 0 {
        Some(field(12)?)
    } else {
        None
    };
    Some(Length {
        frames,
        sample_rate,
        samples_per_frame,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header for MPEG `version` layer III at sample rate index `rate`, then the side
    /// information's zeros and a Xing tag `tag` with `flags` and `frames`.
    fn frame(version: u8, rate: u8, mono: bool, tag: &[u8; 4], flags: u32, frames: u32) -> Vec<u8> {
        let b1 = 0xE0 | (version << 3) | (1 << 1) | 1;
        let b2 = (9 << 4) | (rate << 2);
        let b3 = if mono { 0xC0 } else { 0x00 };
        let side = match (version, mono) {
            (3, true) => 17,
            (3, false) => 32,
            (_, true) => 9,
            (_, false) => 17,
        };
        let mut bytes = vec![0xFF, b1, b2, b3];
        bytes.extend(std::iter::repeat_n(0, side));
        bytes.extend_from_slice(tag);
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&frames.to_be_bytes());
        bytes.extend_from_slice(&417_000u32.to_be_bytes());
        bytes
    }

    #[test]
    fn every_version_and_channel_layout_gives_its_length() {
        for (version, rate, mono, sample_rate, per_frame) in [
            (3, 0, false, 44_100, 1152),
            (3, 1, true, 48_000, 1152),
            (2, 0, false, 22_050, 576),
            (2, 2, true, 16_000, 576),
            (0, 2, false, 8_000, 576),
            (0, 0, true, 11_025, 576),
        ] {
            let head = frame(version, rate, mono, b"Info", 0x0F, 1000);
            let length = parse(&head).expect("a header");
            assert_eq!(
                length,
                Length {
                    frames: 1000,
                    sample_rate,
                    samples_per_frame: per_frame,
                    bytes: Some(417_000),
                },
                "version {version}, rate {rate}, mono {mono}"
            );
        }
        let vbr = parse(&frame(3, 0, false, b"Xing", 1, 26)).unwrap();
        assert!((vbr.seconds() - 26.0 * 1152.0 / 44_100.0).abs() < 1e-12);
        assert_eq!(vbr.bytes, None, "no byte count without its flag");
    }

    #[test]
    fn what_is_not_a_counted_header_gives_nothing() {
        // No frame count, or a count of none (ffprobe sees no audio there).
        assert_eq!(parse(&frame(3, 0, false, b"Info", 0x0E, 1000)), None);
        assert_eq!(parse(&frame(3, 0, false, b"Info", 0x0F, 0)), None);
        // Another tag where the Xing tag belongs (a VBRI header, or audio).
        assert_eq!(parse(&frame(3, 0, false, b"VBRI", 0x0F, 1000)), None);
        // The reserved version, a layer other than III, a reserved sample rate, a CRC.
        let mut reserved = frame(3, 0, false, b"Info", 1, 9);
        reserved[1] = (reserved[1] & !0x18) | (1 << 3);
        assert_eq!(parse(&reserved), None);
        let mut layer2 = frame(3, 0, false, b"Info", 1, 9);
        layer2[1] = (layer2[1] & !0x06) | (2 << 1);
        assert_eq!(parse(&layer2), None);
        assert_eq!(parse(&frame(3, 3, false, b"Info", 1, 9)), None);
        let mut crc = frame(3, 0, false, b"Info", 1, 9);
        crc[1] &= !1;
        assert_eq!(parse(&crc), None);
        // No sync, or cut short.
        assert_eq!(parse(b"ID3\x03\0\0\0\0\0\0"), None);
        let whole = frame(3, 0, false, b"Info", 3, 9);
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn the_tag_before_the_frame_is_skipped_with_its_footer() {
        assert_eq!(tag_size(b"ID3\x03\0\0\0\0\x02\x01"), 10 + 257);
        assert_eq!(tag_size(b"ID3\x04\0\x10\0\0\0\x05"), 10 + 5 + 10);
        assert_eq!(tag_size(b"ID3\x03\0\0\0\0\x80\x01"), 0, "no 7-bit size");
        assert_eq!(tag_size(b"\xFF\xFB\x90\0"), 0);
        assert_eq!(tag_size(b"ID3"), 0);
    }
}
