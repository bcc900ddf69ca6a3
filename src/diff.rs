//! Row-count diff: what the manifest promised, what the restore holds, what the live source
//! holds now.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::TableCount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffRow {
    /// The table as the manifest names it (see [`TableCount::name`]).
    pub table: String,
    /// PostgreSQL: the table's schema and own name, apart, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// Two tables answer to this name (a manifest written before tables were named by schema
    /// and name apart cannot tell `"a.b".c` from `a."b.c"`): nothing can be compared.
    Ambiguous,
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
            RowStatus::Ambiguous => "AMBIGUOUS",
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
    /// Lines up the three columns by table. Tables are matched by their full name (schema and
    /// table apart, see [`TableCount::name`]); against a manifest written before that, the
    /// restored and live tables are named as it named them, and a name two tables share is
    /// [`RowStatus::Ambiguous`] rather than silently merged.
    pub fn new(
        expected: Option<&[TableCount]>,
        restored: &[TableCount],
        live: Option<&[TableCount]>,
    ) -> RowDiff {
        let legacy = expected.is_some_and(|e| e.iter().all(|t| t.schema.is_none()))
            && restored.iter().any(|t| t.schema.is_some());
        let key = |t: &TableCount| {
            if legacy {
                t.legacy_name()
            } else {
                t.name.clone()
            }
        };
        #[derive(Default)]
        struct Line {
            counts: [Option<u64>; 3],
            parts: Option<(String, String)>,
            ambiguous: bool,
        }
        let mut rows: BTreeMap<String, Line> = BTreeMap::new();
        for (col, counts) in [expected, Some(restored), live].into_iter().enumerate() {
            for t in counts.unwrap_or_default() {
                let line = rows.entry(key(t)).or_default();
                if line.counts[col].is_some() {
                    line.ambiguous = true;
                }
                line.counts[col] = Some(t.rows);
                if let (None, Some(s), Some(n)) = (&line.parts, &t.schema, &t.table) {
                    line.parts = Some((s.clone(), n.clone()));
                }
            }
        }
        let has_expected = expected.is_some();
        let rows = rows
            .into_iter()
            // Tables only the live source has say nothing about the restore.
            .filter(|(_, l)| l.counts[0].is_some() || l.counts[1].is_some())
            .map(|(table, line)| {
                let [expected, restored, live] = line.counts;
                let (schema, name) = line.parts.unzip();
                DiffRow {
                    table,
                    schema,
                    name,
                    expected,
                    restored,
                    live,
                    status: match (has_expected, expected, restored) {
                        _ if line.ambiguous => RowStatus::Ambiguous,
                        (false, _, _) => RowStatus::Measured,
                        (true, Some(e), Some(r)) if e == r => RowStatus::Match,
                        (true, Some(_), Some(_)) => RowStatus::Mismatch,
                        (true, Some(_), None) => RowStatus::Missing,
                        (true, None, _) => RowStatus::Unexpected,
                    },
                }
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
    /// an expected checksum are left as they are. `restored` is keyed by full names
    /// ([`TableCount::name`]), `expected` as the manifest keys it. Returns how many were
    /// compared.
    pub fn check_content(
        &mut self,
        expected: &std::collections::BTreeMap<String, String>,
        restored: &std::collections::BTreeMap<String, String>,
    ) -> usize {
        let mut compared = 0;
        for row in &mut self.rows {
            if let Some(want) = expected.get(&row.table) {
                compared += 1;
                let full = match (&row.schema, &row.name) {
                    (Some(s), Some(n)) => crate::manifest::qualified_name(s, n),
                    _ => row.table.clone(),
                };
                if row.status == RowStatus::Match && restored.get(&full) != Some(want) {
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
        TableCount::new(name, rows)
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

    /// `"a.b".c` and `a."b.c"` are two tables: each is compared on its own, and a manifest
    /// that lacks one of them is a finding, not "all tables match".
    #[test]
    fn tables_are_told_apart_by_schema_and_name() {
        let ab_c = TableCount::in_schema("a.b", "c", 1);
        let a_bc = TableCount::in_schema("a", "b.c", 2);
        assert_eq!(ab_c.name, r#""a.b".c"#);
        assert_eq!(a_bc.name, r#"a."b.c""#);
        let plain = TableCount::in_schema("billing", "invoices", 3);
        assert_eq!(plain.name, "billing.invoices");

        let both = [ab_c.clone(), a_bc.clone(), plain.clone()];
        let d = RowDiff::new(Some(&both), &both, None);
        assert_eq!(d.rows.len(), 3);
        assert!(d.all_match());
        let row = d.rows.iter().find(|r| r.table == ab_c.name).unwrap();
        assert_eq!(
            (row.schema.as_deref(), row.name.as_deref()),
            (Some("a.b"), Some("c"))
        );

        let d = RowDiff::new(Some(&[ab_c.clone(), plain.clone()]), &both, None);
        assert_eq!(d.findings().count(), 1);
        assert_eq!(d.findings().next().unwrap().status, RowStatus::Unexpected);

        // A manifest from before: names joined unquoted. Ordinary tables still match; the
        // two that share a name there are a finding.
        let legacy = [t("a.b.c", 1), t("a.b.c", 2), t("billing.invoices", 3)];
        let d = RowDiff::new(Some(&legacy), &both, None);
        assert_eq!(d.rows.len(), 2, "{d:?}");
        let row = d.rows.iter().find(|r| r.table == "a.b.c").unwrap();
        assert_eq!(row.status, RowStatus::Ambiguous);
        let row = d
            .rows
            .iter()
            .find(|r| r.table == "billing.invoices")
            .unwrap();
        assert_eq!(row.status, RowStatus::Match);
        assert!(!d.all_match());
    }

    #[test]
    fn content_is_compared_by_full_name() {
        let tables = [
            TableCount::in_schema("a.b", "c", 1),
            TableCount::in_schema("a", "b.c", 1),
        ];
        let sums = |x: &str, y: &str| {
            BTreeMap::from([
                (tables[0].name.clone(), x.into()),
                (tables[1].name.clone(), y.into()),
            ])
        };
        let mut d = RowDiff::new(Some(&tables), &tables, None);
        assert_eq!(d.check_content(&sums("1", "2"), &sums("1", "3")), 2);
        let bad: Vec<_> = d.findings().map(|r| r.table.as_str()).collect();
        assert_eq!(bad, [r#"a."b.c""#]);
    }
}
