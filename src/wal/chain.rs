//! The chain: which WAL the archive holds, per timeline, where it has gaps, and so which
//! times a base backup can be restored to. Built from a listing of records alone (a record
//! exists only once its data was confirmed), so it costs one listing, not one read per file.

use chrono::{DateTime, Utc};
use serde::Serialize;

use tokio_util::sync::CancellationToken;

use super::archive::{RECORD_SUFFIX, source_prefix};
use super::names::{Lsn, Segment, WalName};
use crate::error::{Error, Result};
use crate::pipeline::crypt::EncryptionConfig;
use crate::storage::{ObjectStore, ObjectStoreExt};

/// A history file is a line per ancestor; anything this large is not one.
const MAX_HISTORY_BYTES: u64 = 1 << 20;

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
    /// Where each archived history file says its timeline branched off its parent.
    pub switches: Vec<Switch>,
    /// The newest archived segment and when it was archived.
    pub newest: Option<(String, DateTime<Utc>)>,
}

/// A timeline switch, read from the child's history file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub timeline: u32,
    pub parent: u32,
    /// The first position of the child: the parent's WAL is followed up to here.
    pub at: Lsn,
}

impl Switch {
    /// The last entry of a history file: the direct parent and where the child began.
    /// Entries are `parent-tli<TAB>switch-lsn<TAB>reason`; `#` starts a comment.
    pub fn parse(timeline: u32, text: &str) -> Option<Switch> {
        let line = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with('#'))?;
        let mut fields = line.split_whitespace();
        let parent: u32 = fields.next()?.parse().ok()?;
        let at = Lsn::parse(fields.next()?)?;
        (parent < timeline).then_some(Switch {
            timeline,
            parent,
            at,
        })
    }
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
    /// Lists `source`'s archive and builds its chain. History files are read (a few tiny
    /// files, checked like any `wal get`) so windows can follow a timeline switch.
    pub async fn load(
        store: &dyn ObjectStore,
        source: &str,
        segment_size: u64,
        keys: Option<&EncryptionConfig>,
    ) -> Result<Chain> {
        let prefix = source_prefix(source);
        let listed = store.list_all(&prefix).await?;
        let names = listed.iter().filter_map(|o| {
            let name = o.key.strip_prefix(&prefix)?.strip_suffix(RECORD_SUFFIX)?;
            Some((name.to_owned(), o.last_modified))
        });
        let mut chain = Chain::from_names(names, segment_size);
        let dir = tempfile::tempdir().map_err(Error::io("cannot create a temporary directory"))?;
        for &tli in &chain.histories {
            let name = format!("{tli:08X}.history");
            let dest = dir.path().join(&name);
            let cancel = CancellationToken::new();
            if !super::archive::get(store, source, &name, &dest, keys, &cancel).await? {
                continue;
            }
            let len = std::fs::metadata(&dest)
                .map_err(Error::io(format!("cannot read {}", dest.display())))?
                .len();
            let text = if len <= MAX_HISTORY_BYTES {
                std::fs::read_to_string(&dest).ok()
            } else {
                None
            };
            let switch = text.as_deref().and_then(|t| Switch::parse(tli, t));
            chain.switches.push(switch.ok_or_else(|| {
                Error::Invalid(format!(
                    "archived {name} of source {source} is not a timeline history file"
                ))
            })?);
        }
        Ok(chain)
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
    /// Like recovery with `recovery_target_timeline = 'latest'`, it follows a switch onto a
    /// child timeline when the parent's WAL reaches the switch without a gap and the child's
    /// WAL is archived from the switch on (the newest child when the timeline branched twice).
    pub fn window(&self, base: &BaseNeeds) -> std::result::Result<Window, Unrestorable> {
        let size = self.segment_size;
        let start = base.start_lsn.segment(base.timeline, size);
        // The segment holding the last byte of the backup's WAL.
        let end = Lsn(base.end_lsn.0.saturating_sub(1).max(base.start_lsn.0))
            .segment(base.timeline, size);
        let Some(mut range) = self.range_holding(start) else {
            return Err(Unrestorable {
                missing: start.name(size),
            });
        };
        if range.last_n < end.number {
            return Err(Unrestorable {
                missing: Segment {
                    timeline: base.timeline,
                    number: range.last_n + 1,
                }
                .name(size),
            });
        }
        // Where replay has reached on the current timeline.
        let mut reached = base.end_lsn;
        while let Some((switch, child)) = self.follow(range, reached) {
            range = child;
            reached = switch.at;
        }
        let next = Segment {
            timeline: range.timeline,
            number: range.last_n + 1,
        }
        .name(size);
        let stopped_by = self
            .gaps
            .iter()
            .find(|g| g.timeline == range.timeline && g.from == next)
            .cloned();
        Ok(Window {
            timeline: range.timeline,
            from: base.consistent_at,
            from_lsn: base.end_lsn,
            to_lsn: range.end_lsn,
            to: range.archived_until.map(|t| t.max(base.consistent_at)),
            stopped_by,
        })
    }

    fn range_holding(&self, seg: Segment) -> Option<&Range> {
        self.ranges
            .iter()
            .find(|r| r.timeline == seg.timeline && (r.first_n..=r.last_n).contains(&seg.number))
    }

    /// The newest child of `range`'s timeline that replay from `reached` can switch onto.
    fn follow(&self, range: &Range, reached: Lsn) -> Option<(&Switch, &Range)> {
        let size = self.segment_size;
        self.switches
            .iter()
            .filter(|s| s.parent == range.timeline && s.at >= reached)
            .filter_map(|s| {
                // Recovery reads the segment holding the switch from the child: the parent
                // is needed up to the one before it.
                let first = s.at.segment(s.timeline, size);
                let parent_reaches = range.last_n + 1 >= first.number;
                let child = self.range_holding(first)?;
                parent_reaches.then_some((s, child))
            })
            .max_by_key(|(s, _)| s.timeline)
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

    #[test]
    fn a_window_follows_a_switch_onto_the_child_timeline() {
        // Timeline 1 up to segment 4; a promotion in segment 5 starts timeline 2 there.
        let names = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6)]
            .into_iter()
            .enumerate()
            .map(|(i, (t, n))| (seg(t, n), at(i as i64)));
        let mut chain = Chain::from_names(names, MB16);
        let base = BaseNeeds {
            timeline: 1,
            start_lsn: Lsn(MB16 + 40),
            end_lsn: Lsn(2 * MB16 + 100),
            consistent_at: at(0).unwrap(),
        };
        // Without the history file read, the window ends with timeline 1.
        assert_eq!(chain.window(&base).unwrap().to_lsn, Lsn(5 * MB16));

        let history = "1\t0/5000100\tno recovery target specified\n";
        let switch = Switch::parse(2, history).unwrap();
        assert_eq!(switch.at, Lsn(5 * MB16 + 0x100));
        chain.switches.push(switch);
        let w = chain.window(&base).unwrap();
        assert_eq!((w.timeline, w.to_lsn, w.to), (2, Lsn(7 * MB16), at(5)));
        assert_eq!(w.stopped_by, None);

        // A backup whose WAL runs past what timeline 1 archived cannot be restored.
        let late = BaseNeeds {
            start_lsn: Lsn(4 * MB16),
            end_lsn: Lsn(5 * MB16 + 0x200),
            ..base
        };
        assert!(chain.window(&late).is_err());

        // The parent's WAL stops short of the switch: the window cannot cross.
        let mut short = Chain::from_names(
            [(1, 1), (1, 2), (1, 3), (2, 5), (2, 6)]
                .into_iter()
                .map(|(t, n)| (seg(t, n), at(n as i64))),
            MB16,
        );
        short.switches.push(switch);
        let w = short.window(&base).unwrap();
        assert_eq!((w.timeline, w.to_lsn), (1, Lsn(4 * MB16)));

        // A history file's direct parent is its last entry; comments and blanks skipped.
        let grand = "# comment\n1\t0/3000000\tx\n\n2\t0/5000100\ty\n";
        assert_eq!(
            Switch::parse(3, grand),
            Some(Switch {
                timeline: 3,
                parent: 2,
                at: Lsn(5 * MB16 + 0x100)
            })
        );
        assert_eq!(Switch::parse(2, "garbage"), None);
        assert_eq!(Switch::parse(2, "3\t0/1\tx"), None);
    }
}
