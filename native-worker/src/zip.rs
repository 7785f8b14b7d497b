//! ZIP framing for streaming stored (uncompressed) files whose sizes and CRC-32s are known up
//! front: a job's tracks (`GET /internal/jobs/{id}/tracks.zip`).
//!
//! Because every size and CRC-32 is known before the first byte is sent, each local header
//! carries them (no data descriptors), the archive's size is exact before it is written
//! (`Content-Length`), and the files stream from the store one after another without being
//! buffered. No ZIP64: an archive that would pass [`MAX_SIZE`] is refused, as is one with more
//! than 65535 entries. Names are UTF-8 (general purpose flag bit 11); see [`entry_names`] for
//! how tracks are named. (PKWARE APPNOTE 6.3.10, sections 4.3.7, 4.3.12 and 4.3.16.)

use std::collections::HashSet;

use mp3conv_contract::http::track_stem;
use time::OffsetDateTime;

/// Largest archive written: past it an offset or size needs ZIP64 (0xFFFFFFFF marks one).
pub const MAX_SIZE: u64 = u32::MAX as u64 - 1;

const LOCAL_HEADER: u64 = 30;
const CENTRAL_HEADER: u64 = 46;
const END_OF_CENTRAL_DIRECTORY: u64 = 22;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const END_SIGNATURE: u32 = 0x0605_4b50;
/// General purpose bit 11: names are UTF-8.
const UTF8_NAMES: u16 = 1 << 11;
/// 1.0: stored files, no directories.
const VERSION_NEEDED: u16 = 10;
/// Unix (3), spec 2.0: the external attributes are a Unix mode.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// A regular file, rw-r--r--.
const UNIX_FILE_MODE: u32 = 0o100_644;

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name, UTF-8.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of its bytes.
    pub crc32: u32,
}

/// Why files do not fit one archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// The archive would pass [`MAX_SIZE`].
    #[error("the archive would be {size} bytes; without ZIP64 a ZIP holds at most {MAX_SIZE}")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// More than 65535 entries.
    #[error("a ZIP without ZIP64 holds at most 65535 entries")]
    TooManyEntries,
    /// A name longer than 65535 bytes.
    #[error("an entry's name is longer than 65535 bytes")]
    NameTooLong,
}

/// An archive's layout: where each entry goes and the framing around it.
#[derive(Debug, Clone)]
pub struct Archive {
    entries: Vec<Entry>,
    /// Offset of each entry's local header.
    offsets: Vec<u32>,
    central_offset: u32,
    central_size: u32,
    dos_time: u16,
    dos_date: u16,
}

impl Archive {
    /// Lays out `entries` in order, all dated `modified` (UTC; DOS times have two-second
    /// steps and the years 1980-2107).
    pub fn new(entries: Vec<Entry>, modified: OffsetDateTime) -> Result<Self, Unfit> {
        if entries.len() > usize::from(u16::MAX) {
            return Err(Unfit::TooManyEntries);
        }
        if entries.iter().any(|e| e.name.len() > usize::from(u16::MAX)) {
            return Err(Unfit::NameTooLong);
        }
        let fits = |n: u64| u32::try_from(n).ok().filter(|&n| u64::from(n) <= MAX_SIZE);
        let mut offsets = Vec::with_capacity(entries.len());
        let mut at = 0u64;
        let mut central = 0u64;
        for entry in &entries {
            let name = entry.name.len() as u64;
            offsets.push(at);
            at = at
                .saturating_add(LOCAL_HEADER + name)
                .saturating_add(entry.size);
            central += CENTRAL_HEADER + name;
        }
        let size = at
            .saturating_add(central)
            .saturating_add(END_OF_CENTRAL_DIRECTORY);
        let too_large = Unfit::TooLarge { size };
        // Every offset and size is below the archive's size, so checking that is enough.
        if size > MAX_SIZE {
            return Err(too_large);
        }
        let (dos_time, dos_date) = dos_time_and_date(modified);
        Ok(Self {
            offsets: offsets
                .into_iter()
                .map(|o| fits(o).ok_or(too_large.clone()))
                .collect::<Result<_, _>>()?,
            central_offset: fits(at).ok_or(too_large.clone())?,
            central_size: fits(central).ok_or(too_large)?,
            entries,
            dos_time,
            dos_date,
        })
    }

    /// The whole archive's size in bytes.
    pub fn size(&self) -> u64 {
        u64::from(self.central_offset) + u64::from(self.central_size) + END_OF_CENTRAL_DIRECTORY
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The local header that goes right before entry `index`'s bytes.
    pub fn local_header(&self, index: usize) -> Vec<u8> {
        let entry = &self.entries[index];
        let mut out = Vec::with_capacity(LOCAL_HEADER as usize + entry.name.len());
        put32(&mut out, LOCAL_SIGNATURE);
        put16(&mut out, VERSION_NEEDED);
        put16(&mut out, UTF8_NAMES);
        put16(&mut out, 0); // stored
        put16(&mut out, self.dos_time);
        put16(&mut out, self.dos_date);
        put32(&mut out, entry.crc32);
        put32(&mut out, small(entry.size));
        put32(&mut out, small(entry.size));
        put16(&mut out, entry.name.len() as u16);
        put16(&mut out, 0); // no extra field
        out.extend_from_slice(entry.name.as_bytes());
        out
    }

    /// What follows the last entry: the central directory and its end record.
    pub fn central_directory(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.central_size as usize + END_OF_CENTRAL_DIRECTORY as usize);
        for (entry, offset) in self.entries.iter().zip(&self.offsets) {
            put32(&mut out, CENTRAL_SIGNATURE);
            put16(&mut out, VERSION_MADE_BY);
            put16(&mut out, VERSION_NEEDED);
            put16(&mut out, UTF8_NAMES);
            put16(&mut out, 0); // stored
            put16(&mut out, self.dos_time);
            put16(&mut out, self.dos_date);
            put32(&mut out, entry.crc32);
            put32(&mut out, small(entry.size));
            put32(&mut out, small(entry.size));
            put16(&mut out, entry.name.len() as u16);
            put16(&mut out, 0); // no extra field
            put16(&mut out, 0); // no comment
            put16(&mut out, 0); // disk 0
            put16(&mut out, 0); // internal attributes: binary
            put32(&mut out, UNIX_FILE_MODE << 16);
            put32(&mut out, *offset);
            out.extend_from_slice(entry.name.as_bytes());
        }
        let count = self.entries.len() as u16;
        put32(&mut out, END_SIGNATURE);
        put16(&mut out, 0); // this disk
        put16(&mut out, 0); // the central directory's disk
        put16(&mut out, count);
        put16(&mut out, count);
        put32(&mut out, self.central_size);
        put32(&mut out, self.central_offset);
        put16(&mut out, 0); // no comment
        out
    }
}

/// A size [`Archive::new`] has checked to fit.
fn small(n: u64) -> u32 {
    u32::try_from(n).expect("checked by Archive::new")
}

fn put16(out: &mut Vec<u8>, n: u16) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

/// MS-DOS time and date of `at` in UTC, clamped to the years DOS dates hold.
fn dos_time_and_date(at: OffsetDateTime) -> (u16, u16) {
    let at = at.to_offset(time::UtcOffset::UTC);
    match at.year() {
        ..1980 => (0, (1 << 5) | 1),
        2108.. => ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31),
        year => (
            (u16::from(at.hour()) << 11)
                | (u16::from(at.minute()) << 5)
                | u16::from(at.second() / 2),
            ((year - 1980) as u16) << 9
                | (u16::from(u8::from(at.month())) << 5)
                | u16::from(at.day()),
        ),
    }
}

/// Entry names for tracks (number, title): `NN - title.mp3`, the number zero-padded to at
/// least two digits (three from track 100, so names sort in order). The title loses what a
/// file name must not hold or could be used to mislead with ([`track_stem`]). An empty title
/// leaves `NN.mp3`. Names are unique, ignoring case (` (2)` and so on added).
pub fn entry_names<'a>(tracks: impl IntoIterator<Item = (u32, &'a str)>) -> Vec<String> {
    let tracks: Vec<(u32, &str)> = tracks.into_iter().collect();
    let width = tracks
        .iter()
        .map(|(n, _)| n.to_string().len())
        .max()
        .unwrap_or(0)
        .max(2);
    let mut taken = HashSet::new();
    tracks
        .iter()
        .map(|(number, title)| {
            let stem = track_stem(*number, width, title);
            let mut name = format!("{stem}.mp3");
            let mut again = 2;
            while !taken.insert(name.to_lowercase()) {
                name = format!("{stem} ({again}).mp3");
                again += 1;
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: &[u8]) -> (Entry, Vec<u8>) {
        (
            Entry {
                name: name.to_owned(),
                size: bytes.len() as u64,
                crc32: crc32fast::hash(bytes),
            },
            bytes.to_vec(),
        )
    }

    /// The whole archive, as the route streams it.
    fn write(archive: &Archive, bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            out.extend(archive.local_header(i));
            out.extend(body);
        }
        out.extend(archive.central_directory());
        out
    }

    fn utc(y: i32, m: u8, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d)
            .unwrap()
            .with_hms(h, mi, s)
            .unwrap()
            .assume_utc()
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn sample() -> (Archive, Vec<u8>) {
        let files = [
            file("01 - Intro.mp3", b"first track bytes"),
            file("02 - Café ☕.mp3", &[0u8, 255, 7, 1, 2, 3]),
            file("03.mp3", b""),
        ];
        let at = utc(2024, 5, 6, 7, 8, 9);
        let archive = Archive::new(files.iter().map(|(e, _)| e.clone()).collect(), at).unwrap();
        let bodies: Vec<Vec<u8>> = files.into_iter().map(|(_, b)| b).collect();
        let bytes = write(&archive, &bodies);
        (archive, bytes)
    }

    #[test]
    fn the_layout_is_exact_and_self_consistent() {
        let (archive, bytes) = sample();
        assert_eq!(archive.size(), bytes.len() as u64);
        // The end record points at the central directory, which points at each local header.
        let end = bytes.len() - END_OF_CENTRAL_DIRECTORY as usize;
        assert_eq!(u32_at(&bytes, end), END_SIGNATURE);
        assert_eq!(u16_at(&bytes, end + 10), 3);
        let (cd_size, cd_offset) = (u32_at(&bytes, end + 12), u32_at(&bytes, end + 16));
        assert_eq!(cd_offset as usize + cd_size as usize, end);
        let mut at = cd_offset as usize;
        for entry in archive.entries() {
            assert_eq!(u32_at(&bytes, at), CENTRAL_SIGNATURE);
            assert_eq!(u16_at(&bytes, at + 8), UTF8_NAMES);
            assert_eq!(u32_at(&bytes, at + 16), entry.crc32);
            let name_len = u16_at(&bytes, at + 28) as usize;
            assert_eq!(&bytes[at + 46..at + 46 + name_len], entry.name.as_bytes());
            let local = u32_at(&bytes, at + 42) as usize;
            assert_eq!(u32_at(&bytes, local), LOCAL_SIGNATURE);
            // Sizes and CRC in the local header: no data descriptor (bit 3 clear).
            assert_eq!(u16_at(&bytes, local + 6), UTF8_NAMES);
            assert_eq!(u32_at(&bytes, local + 14), entry.crc32);
            assert_eq!(u32_at(&bytes, local + 18) as u64, entry.size);
            assert_eq!(u32_at(&bytes, local + 22) as u64, entry.size);
            let data = local + 30 + name_len;
            let body = &bytes[data..data + entry.size as usize];
            assert_eq!(crc32fast::hash(body), entry.crc32);
            at += 46 + name_len;
        }
        assert_eq!(at, end);
        // 07:08:09 -> 07:08:08 in two-second steps; 2024-05-06.
        assert_eq!(u16_at(&bytes, 10), (7 << 11) | (8 << 5) | 4, "DOS time");
        assert_eq!(u16_at(&bytes, 12), (44 << 9) | (5 << 5) | 6, "DOS date");
    }

    /// Python's zipfile, a real unzipper: reads every entry back and checks its CRC.
    #[test]
    fn python_reads_it_back() {
        let (_, bytes) = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracks.zip");
        std::fs::write(&path, &bytes).unwrap();
        let script = "import sys, zipfile, json\n\
                      z = zipfile.ZipFile(sys.argv[1])\n\
                      assert z.testzip() is None\n\
                      print(json.dumps([[i.filename, i.file_size, i.compress_type, \
                      list(z.read(i))] for i in z.infolist()]))";
        let output = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            read,
            serde_json::json!([
                ["01 - Intro.mp3", 17, 0, b"first track bytes".to_vec()],
                ["02 - Café ☕.mp3", 6, 0, [0, 255, 7, 1, 2, 3]],
                ["03.mp3", 0, 0, []],
            ])
        );
    }

    #[test]
    fn archives_past_4_gib_or_65535_entries_are_refused() {
        let now = OffsetDateTime::now_utc();
        let big = |size| Entry {
            name: "a.mp3".into(),
            size,
            crc32: 0,
        };
        // The largest archive that fits: one entry filling all but its framing.
        let framing = LOCAL_HEADER + CENTRAL_HEADER + 2 * 5 + END_OF_CENTRAL_DIRECTORY;
        let fits = Archive::new(vec![big(MAX_SIZE - framing)], now).unwrap();
        assert_eq!(fits.size(), MAX_SIZE);
        assert_eq!(
            Archive::new(vec![big(MAX_SIZE - framing + 1)], now).unwrap_err(),
            Unfit::TooLarge { size: MAX_SIZE + 1 }
        );
        assert!(matches!(
            Archive::new(vec![big(3 << 30), big(3 << 30)], now),
            Err(Unfit::TooLarge { .. })
        ));
        assert!(matches!(
            Archive::new(vec![big(u64::MAX), big(u64::MAX)], now),
            Err(Unfit::TooLarge { .. })
        ));
        assert_eq!(
            Archive::new(vec![big(0); 65536], now).unwrap_err(),
            Unfit::TooManyEntries
        );
    }

    #[test]
    fn dos_dates_are_clamped_to_their_range() {
        assert_eq!(
            dos_time_and_date(utc(1970, 1, 1, 0, 0, 0)),
            (0, (1 << 5) | 1)
        );
        assert_eq!(
            dos_time_and_date(utc(2200, 1, 1, 0, 0, 0)).1,
            (127 << 9) | (12 << 5) | 31
        );
        // Other offsets are written in UTC.
        let plus_two =
            utc(2023, 12, 31, 23, 0, 0).to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(plus_two.year(), 2024);
        assert_eq!(
            dos_time_and_date(plus_two),
            dos_time_and_date(utc(2023, 12, 31, 23, 0, 0))
        );
    }

    #[test]
    fn track_names_are_numbered_clean_and_unique() {
        let long = "é".repeat(150);
        let names = entry_names([
            (1, "Intro"),
            (2, "../../etc/passwd"),
            (3, "a\\b:c*d?e\"f<g>h|i"),
            (4, "...hidden"),
            (5, "  spaced out.  "),
            (6, "tab\there\u{0}\u{7f}"),
            (7, "evil\u{202E}3pm.exe"),
            (8, ""),
            (9, "..."),
            (10, "Same"),
            (10, "same"),
            (10, "Same"),
            (11, long.as_str()),
        ]);
        assert_eq!(
            names[..12],
            [
                "01 - Intro.mp3",
                "02 - _.._etc_passwd.mp3",
                "03 - a_b_c_d_e_f_g_h_i.mp3",
                "04 - hidden.mp3",
                "05 - spaced out.mp3",
                "06 - tabhere.mp3",
                "07 - evil3pm.exe.mp3",
                "08.mp3",
                "09.mp3",
                "10 - Same.mp3",
                "10 - same (2).mp3",
                "10 - Same (3).mp3",
            ]
        );
        assert!(names[12].starts_with("11 - éé"));
        assert!(
            names[12].len() <= 5 + mp3conv_contract::http::MAX_STEM_BYTES + 4,
            "{}",
            names[12]
        );
        for name in &names {
            assert!(
                !name.contains(['/', '\\']) && !name.starts_with('.'),
                "{name}"
            );
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        assert_eq!(
            entry_names([(9, "a"), (100, "b")]),
            ["009 - a.mp3", "100 - b.mp3"]
        );
    }
}
