//! The figures of the scenarios whose report rows are variants rather than servers (`kafka`,
//! `recovery`, `history`): each writes a section of its own from these.

use std::fmt::Write as _;

use crate::report::Record;

/// One scenario's records, looked up by variant (a record's `server`).
pub struct VariantRows<'a> {
    rows: Vec<&'a Record>,
}

impl<'a> VariantRows<'a> {
    pub fn of(records: &'a [Record], scenario: &str) -> Self {
        VariantRows { rows: records.iter().filter(|r| r.scenario == scenario).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn has(&self, variant: &str) -> bool {
        self.rows.iter().any(|r| r.server == variant)
    }

    fn values(&self, variant: &str, key: &str) -> impl Iterator<Item = f64> + '_ {
        let variant = variant.to_owned();
        let key = key.to_owned();
        self.rows.iter().filter(move |r| r.server == variant).filter_map(move |r| r.value.get(&key)?.as_f64())
    }

    /// Median of `key` over the variant's repeats that reported it.
    pub fn median(&self, variant: &str, key: &str) -> Option<f64> {
        crate::stats::median(&self.values(variant, key).collect::<Vec<_>>())
    }

    /// Largest `key` over the variant's repeats.
    pub fn worst(&self, variant: &str, key: &str) -> Option<f64> {
        self.values(variant, key).reduce(f64::max)
    }

    /// Sum of the count `key` over the variant's repeats.
    pub fn sum(&self, variant: &str, key: &str) -> u64 {
        self.rows.iter().filter(|r| r.server == variant).filter_map(|r| r.value.get(key)?.as_u64()).sum()
    }

    /// Repeats of the variant that ended in an error.
    pub fn failed(&self, variant: &str) -> usize {
        self.rows.iter().filter(|r| r.server == variant && r.value.get("error").is_some()).count()
    }

    /// The first count `key` any record has (the run's sizes, the same in every record), else 0.
    pub fn first(&self, key: &str) -> u64 {
        self.rows.iter().find_map(|r| r.value.get(key)?.as_u64()).unwrap_or(0)
    }

    /// Repeats in the run.
    pub fn repeats(&self) -> usize {
        self.rows.iter().map(|r| r.repeat).max().map_or(0, |r| r + 1)
    }

    /// One line per record that `listed` picks and that failed (`error`) or met errors on the way
    /// (`first_error`), then a blank line: "- variant (repeat n): error".
    pub fn error_list(&self, listed: impl Fn(&Record) -> bool) -> String {
        let mut md = String::new();
        for record in self.rows.iter().filter(|r| listed(r)) {
            let error = record.value.get("error").or_else(|| record.value.get("first_error")).and_then(|e| e.as_str());
            if let Some(error) = error {
                let _ = writeln!(md, "- {} (repeat {}): {}", record.server, record.repeat + 1, error.replace('|', "/"));
            }
        }
        md.push('\n');
        md
    }

    /// The error of the first record of `variant` (a peer's "skipped: ..." reason).
    pub fn error_of(&self, variant: &str) -> Option<&'a str> {
        self.rows.iter().find(|r| r.server == variant).and_then(|r| r.value.get("error")?.as_str())
    }
}

/// A record of `scenario`, for the sections' tests.
#[cfg(test)]
pub fn record(scenario: &str, variant: &str, repeat: usize, value: serde_json::Value) -> Record {
    Record { server: variant.into(), scenario: scenario.into(), repeat, value }
}

/// A table cell: the figure, or a dash when it was not measured.
pub fn cell(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), crate::chart::format_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn figures_by_variant() {
        let record = |server: &str, repeat: usize, value: Value| record("recovery", server, repeat, value);
        let records = vec![
            record("a", 0, json!({"ms": 4.0, "lost": 1, "missed": 1000})),
            record("a", 1, json!({"ms": 8.0, "lost": 2})),
            record("a", 2, json!({"error": "timed out"})),
            record("b", 0, json!({"error": "skipped: no"})),
            Record { server: "a".into(), scenario: "kafka".into(), repeat: 3, value: json!({"ms": 100.0}) },
        ];
        let rows = VariantRows::of(&records, "recovery");
        assert_eq!(rows.median("a", "ms"), Some(6.0));
        assert_eq!(rows.worst("a", "ms"), Some(8.0));
        assert_eq!(rows.worst("b", "ms"), None);
        assert_eq!(rows.sum("a", "lost"), 3);
        assert_eq!((rows.failed("a"), rows.failed("b")), (1, 1));
        assert_eq!(rows.first("missed"), 1000);
        assert_eq!(rows.repeats(), 3, "the other scenario's repeat is not counted");
        assert_eq!(rows.error_of("b"), Some("skipped: no"));
        assert!(rows.has("b") && !rows.has("c"));
        assert_eq!(rows.error_list(|r| r.server == "a"), "- a (repeat 3): timed out\n\n");
        assert_eq!(rows.error_list(|_| false), "\n");
        assert!(VariantRows::of(&records, "history").is_empty());
        assert_eq!((cell(Some(6.0)), cell(None)), ("6.00".to_owned(), "–".to_owned()));
    }
}
