//! Small statistics helpers: medians over repeats, ratios, latency summaries.

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Median of finite values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

/// `numerator / denominator`, `None` when either is missing or the denominator is zero.
pub fn ratio(numerator: Option<f64>, denominator: Option<f64>) -> Option<f64> {
    match (numerator, denominator) {
        (Some(n), Some(d)) if d != 0.0 && n.is_finite() && d.is_finite() => Some(n / d),
        _ => None,
    }
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// Records `micros`, clamped into the histogram's range (a value is never dropped).
pub fn record_micros(histogram: &mut Histogram<u64>, micros: u64) {
    let clamped = micros.clamp(histogram.low(), histogram.high());
    histogram.saturating_record(clamped);
}

/// `{"p50_ms":..,"p90_ms":..,"p99_ms":..,"max_ms":..}` (null when empty), with `prefix` on each key.
pub fn latency_summary(histogram: &Histogram<u64>, prefix: &str) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    let ms = |micros: u64| -> Value {
        if histogram.is_empty() {
            Value::Null
        } else {
            json!(round3(micros as f64 / 1000.0))
        }
    };
    map.insert(format!("{prefix}p50_ms"), ms(histogram.value_at_quantile(0.50)));
    map.insert(format!("{prefix}p90_ms"), ms(histogram.value_at_quantile(0.90)));
    map.insert(format!("{prefix}p99_ms"), ms(histogram.value_at_quantile(0.99)));
    map.insert(format!("{prefix}max_ms"), ms(histogram.max()));
    map
}

/// Rounds to three decimals (keeps JSON lines short and readable).
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `count / seconds`, 0 for an empty interval.
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        round3(count as f64 / seconds)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratio_handles_missing_and_zero() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }

    #[test]
    fn latency_summary_reports_quantiles_in_ms() {
        let mut histogram = latency_histogram();
        for micros in 1..=1000u64 {
            record_micros(&mut histogram, micros * 10);
        }
        let summary = latency_summary(&histogram, "rtt_");
        let p50 = summary["rtt_p50_ms"].as_f64().unwrap();
        let p99 = summary["rtt_p99_ms"].as_f64().unwrap();
        let max = summary["rtt_max_ms"].as_f64().unwrap();
        assert!((4.99..=5.01).contains(&p50), "p50 {p50}");
        assert!((9.88..=9.92).contains(&p99), "p99 {p99}");
        assert!((9.99..=10.01).contains(&max), "max {max}");
    }

    #[test]
    fn empty_histogram_gives_nulls_and_huge_values_are_clamped() {
        let mut histogram = latency_histogram();
        assert!(latency_summary(&histogram, "")["p99_ms"].is_null());
        record_micros(&mut histogram, u64::MAX);
        record_micros(&mut histogram, 0);
        assert_eq!(histogram.len(), 2);
    }

    #[test]
    fn per_second_rounds_and_guards_zero() {
        assert_eq!(per_second(10, 4.0), 2.5);
        assert_eq!(per_second(10, 0.0), 0.0);
        assert_eq!(per_second(1, 3.0), 0.333);
    }
}
