//! The restorable window of a point-in-time source on one line: the times any base backup
//! can restore to, the stretches none can (a WAL gap), each base backup as a tick, and the
//! typed target as a cursor.

use chrono::{DateTime, Duration, Utc};
use lifeboat::pitr::PitrStatus;

/// What one column of the line shows; the first that applies wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Cursor,
    Base,
    Gap,
    Covered,
}

impl Mark {
    pub fn glyph(self) -> char {
        match self {
            Mark::Cursor => '●',
            Mark::Base => '┃',
            Mark::Gap => '╳',
            Mark::Covered => '━',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLine {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Merged windows, oldest first: the times some base backup can restore to.
    pub covered: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// When each restorable base backup became consistent.
    pub bases: Vec<DateTime<Utc>>,
}

impl TimeLine {
    /// `None` when no base backup can restore to any time.
    pub fn of(status: &PitrStatus) -> Option<TimeLine> {
        let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = status
            .bases
            .iter()
            .filter_map(|b| {
                let w = b.window.as_ref().ok()?;
                Some((w.from, w.to?))
            })
            .collect();
        windows.sort();
        let mut covered: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        for (from, to) in windows {
            match covered.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => covered.push((from, to)),
            }
        }
        let from = covered.first()?.0;
        let to = covered.iter().map(|c| c.1).max()?;
        let bases = status
            .bases
            .iter()
            .filter(|b| b.window.is_ok())
            .map(|b| b.base.finished_at)
            .collect();
        Some(TimeLine {
            from,
            to,
            covered,
            bases,
        })
    }

    /// Whether some base backup can restore to `at`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.covered.iter().any(|(f, t)| *f <= at && at <= *t)
    }

    /// The stretches inside the window no base backup can restore to.
    pub fn gaps(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.covered.windows(2).map(|w| (w[0].1, w[1].0)).collect()
    }

    /// `width` columns, each a share of the window.
    pub fn marks(&self, width: usize, cursor: Option<DateTime<Utc>>) -> Vec<Mark> {
        let span = (self.to - self.from).num_milliseconds().max(1);
        let column = |t: DateTime<Utc>| -> Option<usize> {
            if t < self.from || t > self.to || width == 0 {
                return None;
            }
            let at = (t - self.from).num_milliseconds() as i128 * width as i128 / span as i128;
            Some((at as usize).min(width - 1))
        };
        let start = |i: usize| {
            self.from + Duration::milliseconds((span as i128 * i as i128 / width as i128) as i64)
        };
        let gaps = self.gaps();
        let mut marks: Vec<Mark> = (0..width)
            .map(|i| {
                let (c0, c1) = (start(i), start(i + 1));
                // A gap shorter than a column still marks it: it is what a person must see.
                let gap = gaps.iter().any(|(g0, g1)| *g0 < c1 && *g1 > c0);
                if gap { Mark::Gap } else { Mark::Covered }
            })
            .collect();
        for b in &self.bases {
            if let Some(i) = column(*b) {
                marks[i] = Mark::Base;
            }
        }
        if let Some(i) = cursor.and_then(column) {
            marks[i] = Mark::Cursor;
        }
        marks
    }

    /// A time in the window picked from `seed` (the simulated clock, so a test sees the same
    /// pick), spread over the restorable stretches by their length.
    pub fn pick(&self, seed: u64) -> DateTime<Utc> {
        let total: i64 = self
            .covered
            .iter()
            .map(|(f, t)| (*t - *f).num_seconds())
            .sum();
        let mut left = (mix(seed) % (total.max(0) as u64 + 1)) as i64;
        for (f, t) in &self.covered {
            let len = (*t - *f).num_seconds();
            if left <= len {
                return *f + Duration::seconds(left);
            }
            left -= len + 1;
        }
        self.to
    }
}

/// splitmix64: spreads nearby seeds (clock seconds) over the whole range.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl TimeLine {
        fn render(&self, width: usize, cursor: Option<DateTime<Utc>>) -> String {
            self.marks(width, cursor)
                .iter()
                .map(|m| m.glyph())
                .collect()
        }
    }

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + min * 60, 0).unwrap()
    }

    /// 0..40 min and 60..100 min restorable, base backups at 0, 20 and 60, a gap between.
    fn line() -> TimeLine {
        TimeLine {
            from: at(0),
            to: at(100),
            covered: vec![(at(0), at(40)), (at(60), at(100))],
            bases: vec![at(0), at(20), at(60)],
        }
    }

    #[test]
    fn ticks_gap_and_cursor_fall_in_their_columns() {
        let l = line();
        // 20 columns of 5 minutes: the gap 40..60 is columns 8..=11.
        assert_eq!(l.render(20, None), "┃━━━┃━━━╳╳╳╳┃━━━━━━━");
        assert_eq!(l.render(20, Some(at(87))), "┃━━━┃━━━╳╳╳╳┃━━━━●━━");
        // The last moment is the last column; a cursor outside the window is not drawn.
        assert_eq!(l.marks(20, Some(at(100)))[19], Mark::Cursor);
        assert_eq!(l.render(20, Some(at(101))), l.render(20, None));
        // A gap narrower than a column is still drawn.
        let narrow = TimeLine {
            covered: vec![(at(0), at(50)), (at(51), at(100))],
            bases: vec![],
            ..line()
        };
        assert_eq!(narrow.render(10, None), "━━━━━╳━━━━");
    }

    #[test]
    fn contains_and_pick_stay_out_of_gaps() {
        let l = line();
        assert!(l.contains(at(40)) && l.contains(at(60)) && !l.contains(at(50)));
        for seed in 0..500 {
            let t = l.pick(seed);
            assert!(l.contains(t), "{seed}: {t}");
        }
        assert_eq!(l.pick(7), l.pick(7));
        assert_ne!(l.pick(7), l.pick(8));
    }
}
