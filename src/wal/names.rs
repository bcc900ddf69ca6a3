//! The names of the files PostgreSQL archives, and what they say about the WAL stream.

use std::fmt;

/// A WAL segment by position: its timeline and its number counted from the start of WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    /// The segment number: `log * segments_per_log + seg`.
    pub number: u64,
}

/// A write-ahead log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` form.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return None;
        }
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// The segment that holds this position.
    pub fn segment(self, timeline: u32, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: self.0 / segment_size,
        }
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Lsn::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an LSN")))
    }
}

/// The kinds of file `archive_command` and `restore_command` are asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalName {
    /// `000000010000000A000000FF`: timeline, log, segment within the log.
    Segment { timeline: u32, log: u32, seg: u32 },
    /// `00000002.history`: how a timeline branched off its parent.
    History(u32),
    /// `000000010000000A000000FF.00000028.backup`: the label of a finished base backup.
    BackupLabel,
    /// `000000010000000A000000FF.partial`: the last segment of a timeline a promotion left
    /// behind. Archived so it is kept; recovery never asks for it.
    Partial,
}

impl WalName {
    /// Only the names PostgreSQL itself gives archived files (nothing else reaches a key).
    pub fn parse(name: &str) -> Option<WalName> {
        let hex8 = |s: &str| -> Option<u32> {
            (s.len() == 8
                && s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
        };
        if name.len() == 24 {
            return Some(WalName::Segment {
                timeline: hex8(&name[..8])?,
                log: hex8(&name[8..16])?,
                seg: hex8(&name[16..24])?,
            });
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalName::History(hex8(tli)?));
        }
        if let Some(seg) = name.strip_suffix(".partial")
            && seg.len() == 24
        {
            WalName::parse(seg)?;
            return Some(WalName::Partial);
        }
        if let Some(rest) = name.strip_suffix(".backup")
            && rest.len() == 33
            && rest.as_bytes()[24] == b'.'
        {
            WalName::parse(&rest[..24])?;
            hex8(&rest[25..])?;
            return Some(WalName::BackupLabel);
        }
        None
    }
}

/// How many segments one "log" (4 GiB of WAL) holds at this segment size.
pub fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

/// Whether `size` is a segment size PostgreSQL allows (a power of two, 1 MiB to 1 GiB).
pub fn valid_segment_size(size: u64) -> bool {
    size.is_power_of_two() && ((1 << 20)..=(1 << 30)).contains(&size)
}

impl Segment {
    pub fn from_name(name: &str, segment_size: u64) -> Option<Segment> {
        match WalName::parse(name)? {
            WalName::Segment { timeline, log, seg } => {
                let per = segments_per_log(segment_size);
                (u64::from(seg) < per).then_some(Segment {
                    timeline,
                    number: u64::from(log) * per + u64::from(seg),
                })
            }
            _ => None,
        }
    }

    pub fn name(self, segment_size: u64) -> String {
        let per = segments_per_log(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per,
            self.number % per
        )
    }

    /// The first position after this segment.
    pub fn end(self, segment_size: u64) -> Lsn {
        Lsn((self.number + 1) * segment_size)
    }

    pub fn start(self, segment_size: u64) -> Lsn {
        Lsn(self.number * segment_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        let s = Segment::from_name("000000020000000A000000FF", MB16).unwrap();
        assert_eq!(s.timeline, 2);
        assert_eq!(s.number, 0xA * 256 + 0xFF);
        assert_eq!(s.name(MB16), "000000020000000A000000FF");
        // 0x100 is past the last segment of a log at 16 MiB.
        assert!(Segment::from_name("000000010000000000000100", MB16).is_none());
        // A promotion archives the old timeline's last segment under this name.
        assert_eq!(
            WalName::parse("000000010000000000000005.partial"),
            Some(WalName::Partial)
        );
        assert!(Segment::from_name("000000010000000000000005.partial", MB16).is_none());
        for bad in [
            "../../etc/passwd",
            "00000001000000000000000g",
            "000000010000000000000001.partial.partial",
            "00000001.history.partial",
            "0000000100000000000000010",
            "00000001000000000000000a",
            "RECOVERYHISTORY",
            "",
        ] {
            assert_eq!(WalName::parse(bad), None, "{bad}");
        }
        assert_eq!(
            WalName::parse("00000003.history"),
            Some(WalName::History(3))
        );
        assert_eq!(
            WalName::parse("000000010000000000000002.00000028.backup"),
            Some(WalName::BackupLabel)
        );
    }

    #[test]
    fn lsns_parse_print_and_place() {
        let l = Lsn::parse("0/3000028").unwrap();
        assert_eq!(l.to_string(), "0/3000028");
        assert_eq!(l.segment(1, MB16).name(MB16), "000000010000000000000003");
        assert_eq!(Lsn::parse("1/0").unwrap().0, 1 << 32);
        assert!(Lsn::parse("x/1").is_none());
        assert!(Lsn::parse("1").is_none());
        assert!(Lsn::parse("123456789/0").is_none());
    }
}
