//! The chain: which WAL the archive holds, per timeline, where it has gaps, and so which
//! times a base backup can be restored to. Built from a listing of records alone (a record
//! exists only once its data was confirmed), so it costs one listing, not one read per file.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::{RECORD_SUFFIX, source_prefix};
use super::names::{Lsn, Segment, WalName};
use crate::error::Result;
use crate::storage::{ObjectStore, ObjectStoreExt};

/// A run of consecutive segments on one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Range {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    /// The first position after the range.
    pub end_lsn: Lsn,
    /// When the range's last segment was archived: no time after it can be reached.
    pub archived_until: Option<DateTime<Utc>>,
    #[serde(skip)]
    first_n: u64,
    #[serde(skip)]
    last_n: u64,
}

/// Segments missing between two ranges of one timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub timeline: u32,
    /// The first and last missing segment.
    pub from: String,
    pub to: String,
    pub missing: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Chain {
    pub segment_size: u64,
    pub ranges: Vec<Range>,
    pub gaps: Vec<Gap>,
    /// Timelines whose history file is archived.
    pub histories: Vec<u32>,
    /// The newest archived segment and when it was archived.
    pub newest: Option<(String, DateTime<Utc>)>,
}

/// What a base backup needs from the archive to be restored.
#[derive(Debug, Clone, Copy)]
pub struct BaseNeeds {
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub end_lsn: Lsn,
    /// When the backup was consistent: no earlier time can be reached from it.
    pub consistent_at: DateTime<Utc>,
}

/// The times and positions a base backup can be restored to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub timeline: u32,
    pub from: DateTime<Utc>,
    pub from_lsn: Lsn,
    /// The archive holds WAL on this timeline up to here without a gap.
    pub to_lsn: Lsn,
    pub to: Option<DateTime<Utc>>,
    /// The gap that ends the window, if WAL exists past it (a restore cannot cross it).
    pub stopped_by: Option<Gap>,
}

/// Why a base backup cannot be restored at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unrestorable {
    pub missing: String,
}

impl Chain {
    /// Lists `source`'s archive and builds its chain.
    pub async fn load(store: &dyn ObjectStore, source: &str, segment_size: u64) -> Result<Chain> {
        let prefix = source_prefix(source);
        let listed = store.list_all(&prefix).await?;
        let names = listed.iter().filter_map(|o| {
            let name = o.key.strip_prefix(&prefix)?.strip_suffix(RECORD_SUFFIX)?;
            Some((name.to_owned(), o.last_modified))
        });
        Ok(Chain::from_names(names, segment_size))
    }

    pub fn from_names(
        names: impl IntoIterator<Item = (String, Option<DateTime<Utc>>)>,
        segment_size: u64,
    ) -> Chain {
        let mut segments: Vec<(Segment, Option<DateTime<Utc>>)> = Vec::new();
        let mut histories = Vec::new();
        for (name, at) in names {
            match WalName::parse(&name) {
                Some(WalName::Segment { .. }) => {
                    if let Some(s) = Segment::from_name(&name, segment_size) {
                        segments.push((s, at));
                    }
                }
                Some(WalName::History(t)) => histories.push(t),
                _ => {}
            }
        }
        segments.sort_by_key(|(s, _)| *s);
        histories.sort_unstable();
        let mut chain = Chain {
            segment_size,
            histories,
            ..Chain::default()
        };
        for (seg, at) in &segments {
            match chain.ranges.last_mut() {
                Some(r) if r.timeline == seg.timeline && r.last_n + 1 == seg.number => {
                    r.last_n = seg.number;
                    r.last = seg.name(segment_size);
                    r.end_lsn = seg.end(segment_size);
                    r.archived_until = *at;
                }
                last => {
                    if let Some(r) = last
                        && r.timeline == seg.timeline
                    {
                        let from = Segment {
                            timeline: r.timeline,
                            number: r.last_n + 1,
                        };
                        let to = Segment {
                            timeline: r.timeline,
                            number: seg.number - 1,
                        };
                        chain.gaps.push(Gap {
                            timeline: r.timeline,
                            from: from.name(segment_size),
                            to: to.name(segment_size),
                            missing: seg.number - from.number,
                        });
                    }
                    chain.ranges.push(Range {
                        timeline: seg.timeline,
                        first: seg.name(segment_size),
                        last: seg.name(segment_size),
                        end_lsn: seg.end(segment_size),
                        archived_until: *at,
                        first_n: seg.number,
                        last_n: seg.number,
                    });
                }
            }
        }
        chain.newest = segments
            .iter()
            .filter_map(|(s, at)| Some((s.name(segment_size), (*at)?)))
            .max_by_key(|(_, at)| *at);
        chain
    }

    /// The window a base backup can restore to, or which segment it lacks to be consistent.
    pub fn window(&self, base: &BaseNeeds) -> std::result::Result<Window, Unrestorable> {
        let size = self.segment_size;
        let start = base.start_lsn.segment(base.timeline, size);
        // The segment holding the last byte of the backup's WAL.
        let end = Lsn(base.end_lsn.0.saturating_sub(1).max(base.start_lsn.0))
            .segment(base.timeline, size);
        let Some(i) = self.ranges.iter().position(|r| {
            r.timeline == base.timeline && (r.first_n..=r.last_n).contains(&start.number)
        }) else {
            return Err(Unrestorable {
                missing: start.name(size),
            });
        };
        let range = &self.ranges[i];
        if range.last_n < end.number {
            return Err(Unrestorable {
                missing: Segment {
                    timeline: base.timeline,
                    number: range.last_n + 1,
                }
                .name(size),
            });
        }
        let stopped_by = self
            .gaps
            .iter()
            .find(|g| {
                g.timeline == base.timeline
                    && g.from
                        == Segment {
                            timeline: base.timeline,
                            number: range.last_n + 1,
                        }
                        .name(size)
            })
            .cloned();
        Ok(Window {
            timeline: base.timeline,
            from: base.consistent_at,
            from_lsn: base.end_lsn,
            to_lsn: range.end_lsn,
            to: range.archived_until.map(|t| t.max(base.consistent_at)),
            stopped_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 << 20;

    fn at(min: i64) -> Option<DateTime<Utc>> {
        Some(DateTime::<Utc>::from_timestamp(1_800_000_000 + min * 60, 0).unwrap())
    }

    fn seg(tli: u32, n: u64) -> String {
        Segment {
            timeline: tli,
            number: n,
        }
        .name(MB16)
    }

    #[test]
    fn ranges_gaps_and_windows() {
        // Segments 1..=3 and 6..=7 on timeline 1, 8 on timeline 2 (after a switch),
        // 255 and 256 cross a log boundary.
        let names = [
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 6),
            (1, 7),
            (2, 8),
            (1, 255),
            (1, 256),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (t, n))| (seg(t, n), at(i as i64)))
        .chain([("00000002.history".to_owned(), at(9))]);
        let chain = Chain::from_names(names, MB16);
        assert_eq!(chain.histories, vec![2]);
        let spans: Vec<(u32, &str, &str)> = chain
            .ranges
            .iter()
            .map(|r| (r.timeline, r.first.as_str(), r.last.as_str()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (1, "000000010000000000000001", "000000010000000000000003"),
                (1, "000000010000000000000006", "000000010000000000000007"),
                (1, "0000000100000000000000FF", "000000010000000100000000"),
                (2, "000000020000000000000008", "000000020000000000000008"),
            ]
        );
        assert_eq!(chain.gaps.len(), 2);
        assert_eq!(chain.gaps[0].from, "000000010000000000000004");
        assert_eq!(chain.gaps[0].to, "000000010000000000000005");
        assert_eq!(chain.gaps[0].missing, 2);

        let base = BaseNeeds {
            timeline: 1,
            start_lsn: Lsn(MB16 + 40),
            end_lsn: Lsn(2 * MB16 + 100),
            consistent_at: at(0).unwrap(),
        };
        let w = chain.window(&base).unwrap();
        assert_eq!(w.to_lsn, Lsn(4 * MB16));
        assert_eq!(w.to, at(2));
        assert_eq!(
            w.stopped_by.as_ref().unwrap().from,
            "000000010000000000000004"
        );

        // The backup's own WAL runs into the gap: it cannot be restored at all.
        let broken = BaseNeeds {
            end_lsn: Lsn(4 * MB16 + 8),
            ..base
        };
        assert_eq!(
            chain.window(&broken).unwrap_err().missing,
            "000000010000000000000004"
        );
        // Nothing archived where it starts.
        let none = BaseNeeds {
            start_lsn: Lsn(20 * MB16),
            end_lsn: Lsn(20 * MB16 + 8),
            ..base
        };
        assert!(chain.window(&none).is_err());
    }
}
