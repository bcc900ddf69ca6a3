//! Row-count diff: what the manifest promised, what the restore holds, what the live source
//! holds now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::TableCount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffRow {
    pub table: String,
    /// From the manifest; `None` for a foreign dump (counts only measured) or a table the
    /// manifest does not know.
    pub expected: Option<u64>,
    pub restored: Option<u64>,
    /// From the live source, when asked for. Informational: the source has moved on.
    pub live: Option<u64>,
    pub status: RowStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Match,
    /// Restored differs from expected.
    Mismatch,
    /// In the manifest, absent after restore.
    Missing,
    /// Restored, but the manifest does not list it.
    Unexpected,
    /// Nothing to compare against (foreign dump).
    Measured,
    /// The counts match but the rows' content checksum does not.
    ContentMismatch,
}

impl RowStatus {
    pub fn label(self) -> &'static str {
        match self {
            RowStatus::Match => "ok",
            RowStatus::Mismatch => "MISMATCH",
            RowStatus::Missing => "MISSING",
            RowStatus::Unexpected => "UNEXPECTED",
            RowStatus::Measured => "measured",
            RowStatus::ContentMismatch => "CONTENT DIFFERS",
        }
    }
}

impl DiffRow {
    /// restored − expected.
    pub fn delta(&self) -> Option<i64> {
        Some(signed_diff(self.restored?, self.expected?))
    }

    /// live − restored.
    pub fn live_delta(&self) -> Option<i64> {
        Some(signed_diff(self.live?, self.restored?))
    }
}

/// `a - b` for counts of any size (an expected count comes from a manifest, which anyone may
/// have written), clamped to what an `i64` holds.
fn signed_diff(a: u64, b: u64) -> i64 {
    (i128::from(a) - i128::from(b)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDiff {
    /// Whether there was a manifest to compare against.
    pub has_expected: bool,
    pub rows: Vec<DiffRow>,
}

impl RowDiff {
    pub fn new(
        expected: Option<&[TableCount]>,
        restored: &[TableCount],
        live: Option<&[TableCount]>,
    ) -> RowDiff {
        let mut rows: BTreeMap<&str, [Option<u64>; 3]> = BTreeMap::new();
        for (col, counts) in [expected, Some(restored), live].into_iter().enumerate() {
            for t in counts.unwrap_or_default() {
                rows.entry(t.name.as_str()).or_default()[col] = Some(t.rows);
            }
        }
        let has_expected = expected.is_some();
        let rows = rows
            .into_iter()
            // Tables only the live source has say nothing about the restore.
            .filter(|(_, [e, r, _])| e.is_some() || r.is_some())
            .map(|(table, [expected, restored, live])| DiffRow {
                table: table.to_owned(),
                expected,
                restored,
                live,
                status: match (has_expected, expected, restored) {
                    (false, _, _) => RowStatus::Measured,
                    (true, Some(e), Some(r)) if e == r => RowStatus::Match,
                    (true, Some(_), Some(_)) => RowStatus::Mismatch,
                    (true, Some(_), None) => RowStatus::Missing,
                    (true, None, _) => RowStatus::Unexpected,
                },
            })
            .collect();
        RowDiff { has_expected, rows }
    }

    /// True when every table matches its manifest count (vacuously true for a foreign dump).
    pub fn all_match(&self) -> bool {
        self.findings().next().is_none()
    }

    /// Rows that disagree with the manifest.
    pub fn findings(&self) -> impl Iterator<Item = &DiffRow> {
        self.rows
            .iter()
            .filter(|r| !matches!(r.status, RowStatus::Match | RowStatus::Measured))
    }

    /// Marks tables whose counts match but whose content checksum differs. Tables without
    /// an expected checksum are left as they are. Returns how many were compared.
    pub fn check_content(
        &mut self,
        expected: &std::collections::BTreeMap<String, String>,
        restored: &std::collections::BTreeMap<String, String>,
    ) -> usize {
        let mut compared = 0;
        for row in &mut self.rows {
            if let Some(want) = expected.get(&row.table) {
                compared += 1;
                if row.status == RowStatus::Match && restored.get(&row.table) != Some(want) {
                    row.status = RowStatus::ContentMismatch;
                }
            }
        }
        compared
    }

    pub fn total_restored(&self) -> u64 {
        self.rows.iter().filter_map(|r| r.restored).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, rows: u64) -> TableCount {
        TableCount {
            name: name.into(),
            rows,
        }
    }

    #[test]
    fn reports_every_kind_of_difference() {
        let expected = [t("a", 10), t("b", 5), t("gone", 1)];
        let restored = [t("a", 10), t("b", 4), t("new", 2)];
        let live = [t("a", 12), t("b", 5), t("only_live", 7)];
        let d = RowDiff::new(Some(&expected), &restored, Some(&live));
        let by = |n: &str| d.rows.iter().find(|r| r.table == n).unwrap().clone();
        assert_eq!(by("a").status, RowStatus::Match);
        assert_eq!(by("a").live_delta(), Some(2));
        assert_eq!(by("b").status, RowStatus::Mismatch);
        assert_eq!(by("b").delta(), Some(-1));
        assert_eq!(by("gone").status, RowStatus::Missing);
        assert_eq!(by("new").status, RowStatus::Unexpected);
        assert!(d.rows.iter().all(|r| r.table != "only_live"));
        assert!(!d.all_match());
        assert_eq!(d.findings().count(), 3);
    }

    #[test]
    fn counts_from_a_forged_manifest_do_not_overflow() {
        let d = RowDiff::new(Some(&[t("a", u64::MAX)]), &[t("a", 3)], Some(&[t("a", 0)]));
        assert_eq!(d.rows[0].delta(), Some(i64::MIN));
        let d = RowDiff::new(Some(&[t("a", 0)]), &[t("a", u64::MAX)], None);
        assert_eq!(d.rows[0].delta(), Some(i64::MAX));
    }

    #[test]
    fn foreign_dumps_are_measured_only() {
        let d = RowDiff::new(None, &[t("a", 3)], None);
        assert_eq!(d.rows[0].status, RowStatus::Measured);
        assert!(d.all_match());
        assert_eq!(d.findings().count(), 0);
    }
}
