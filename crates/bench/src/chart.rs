//! A hand-written SVG bar chart: one small panel per metric, one horizontal bar per server.

use std::fmt::Write as _;

pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub color: &'static str,
}

pub struct Panel {
    pub title: String,
    pub unit: String,
    pub bars: Vec<Bar>,
}

const PANEL_WIDTH: f64 = 440.0;
const LABEL_WIDTH: f64 = 100.0;
const VALUE_WIDTH: f64 = 90.0;
const BAR_HEIGHT: f64 = 18.0;
const BAR_GAP: f64 = 6.0;
const TITLE_HEIGHT: f64 = 26.0;
const PANEL_GAP: f64 = 16.0;

/// Escapes text for SVG content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Formats a value with about three significant digits.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".to_owned()
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Renders the panels in `columns` columns under `title`.
pub fn render(title: &str, subtitle: &str, panels: &[Panel], columns: usize) -> String {
    let columns = columns.max(1);
    let max_bars = panels.iter().map(|p| p.bars.len()).max().unwrap_or(0) as f64;
    let panel_height = TITLE_HEIGHT + max_bars * (BAR_HEIGHT + BAR_GAP) + 4.0;
    let rows = panels.len().div_ceil(columns);
    let header = 56.0;
    let width = columns as f64 * (PANEL_WIDTH + PANEL_GAP) + PANEL_GAP;
    let height = header + rows as f64 * (panel_height + PANEL_GAP) + PANEL_GAP;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{PANEL_GAP}" y="24" font-size="17" font-weight="bold">{}</text>"#, escape(title));
    let _ = writeln!(svg, r##"<text x="{PANEL_GAP}" y="44" fill="#555">{}</text>"##, escape(subtitle));
    for (index, panel) in panels.iter().enumerate() {
        let x0 = PANEL_GAP + (index % columns) as f64 * (PANEL_WIDTH + PANEL_GAP);
        let y0 = header + (index / columns) as f64 * (panel_height + PANEL_GAP);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{PANEL_WIDTH}" height="{panel_height}" fill="#fafafa" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x0 + 8.0,
            y0 + 17.0,
            escape(&panel.title)
        );
        let max = panel.bars.iter().filter_map(|b| b.value).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let span = PANEL_WIDTH - LABEL_WIDTH - VALUE_WIDTH - 16.0;
        for (row, bar) in panel.bars.iter().enumerate() {
            let y = y0 + TITLE_HEIGHT + row as f64 * (BAR_HEIGHT + BAR_GAP);
            let _ =
                writeln!(svg, r#"<text x="{}" y="{}">{}</text>"#, x0 + 8.0, y + BAR_HEIGHT - 5.0, escape(&bar.label));
            let bar_x = x0 + LABEL_WIDTH;
            match bar.value.filter(|v| v.is_finite()) {
                Some(value) => {
                    let length = if max > 0.0 { (value.max(0.0) / max * span).max(1.0) } else { 1.0 };
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{bar_x}" y="{y}" width="{length:.1}" height="{BAR_HEIGHT}" fill="{}"/>"#,
                        bar.color
                    );
                    let _ = writeln!(
                        svg,
                        r#"<text x="{:.1}" y="{}">{} {}</text>"#,
                        bar_x + length + 6.0,
                        y + BAR_HEIGHT - 5.0,
                        format_value(value),
                        escape(&panel.unit)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r##"<text x="{bar_x}" y="{}" fill="#999">not measured</text>"##,
                        y + BAR_HEIGHT - 5.0
                    );
                }
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Panel> {
        vec![Panel {
            title: "CPU per delivery <lower is better>".into(),
            unit: "ns".into(),
            bars: vec![
                Bar { label: "a".into(), value: Some(100.0), color: "#123456" },
                Bar { label: "b".into(), value: Some(50.0), color: "#654321" },
                Bar { label: "c".into(), value: None, color: "#000000" },
            ],
        }]
    }

    #[test]
    fn bars_are_proportional_and_text_is_escaped() {
        let svg = render("Title & co", "sub", &sample(), 2);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Title &amp; co"));
        assert!(svg.contains("&lt;lower is better&gt;"));
        let widths: Vec<f64> = svg
            .lines()
            .filter(|l| l.contains("fill=\"#123456\"") || l.contains("fill=\"#654321\""))
            .map(|l| {
                let start = l.find("width=\"").unwrap() + 7;
                let end = start + l[start..].find('"').unwrap();
                l[start..end].parse().unwrap()
            })
            .collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[0] / widths[1] - 2.0).abs() < 0.01, "{widths:?}");
        assert!(svg.contains("not measured"));
        assert!(svg.contains(">100 ns<"));
    }

    #[test]
    fn formats_values_with_few_digits() {
        assert_eq!(format_value(1234.4), "1234");
        assert_eq!(format_value(16.14), "16.1");
        assert_eq!(format_value(2.6), "2.60");
        assert_eq!(format_value(0.1234), "0.123");
        assert_eq!(format_value(0.0), "0");
    }
}
