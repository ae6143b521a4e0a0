//! Server-rendered SVG charts for the admin pages.
//!
//! The pages run under a strict Content-Security-Policy (`style-src 'self'`, no script), so
//! the charts use no `style` attribute, no `<style>` element and no script: only SVG
//! presentation attributes (`fill`, `font-size`…) and `class` names that the site's stylesheet
//! may use to restyle them (a stylesheet rule wins over a presentation attribute, so the
//! `fill` given here is only a fallback). Text is `currentColor`, so it follows the page's
//! colour scheme. Every chart scales to its container's width through its `viewBox`, and is
//! an accessible image: `role="img"`, an `aria-label` and a `<title>`, plus a `<title>` per
//! bar that browsers show as a tooltip.
//!
//! This module depends on nothing but `std`.

use std::fmt::Write as _;

/// Fallback fills for series and bars, used in order.
const PALETTE: [&str; 6] = [
    "#2e7d32", "#c62828", "#1565c0", "#ef6c00", "#6a1b9a", "#00838f",
];

const WIDTH: f64 = 640.0;

/// A vertical stacked bar chart: one bar per label (e.g. one per day), each made of one
/// segment per series, stacked in the order given. `series` is `(name, css class, values)`;
/// `values[i]` belongs to `labels[i]` (missing values count as 0). The y axis runs from 0 to a
/// round number at or above the highest bar; a legend names the series.
pub fn stacked_bars(title: &str, labels: &[String], series: &[(&str, &str, Vec<u32>)]) -> String {
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = WIDTH - 8.0;
    const TOP: f64 = 32.0;
    const BOTTOM: f64 = HEIGHT - 28.0;
    let plot_h = BOTTOM - TOP;

    let value = |s: &(&str, &str, Vec<u32>), i: usize| u64::from(s.2.get(i).copied().unwrap_or(0));
    let highest = (0..labels.len())
        .map(|i| series.iter().map(|s| value(s, i)).sum::<u64>())
        .max()
        .unwrap_or(0);
    let axis = nice_ceil(highest);
    let scale = |v: u64| v as f64 / axis as f64 * plot_h;

    let mut out = open_svg("chart chart-stacked", title, HEIGHT);
    // Accessible summary: each series' total.
    let summary: Vec<String> = series
        .iter()
        .map(|s| {
            let total: u64 = (0..labels.len()).map(|i| value(s, i)).sum();
            format!("{}: {total}", s.0)
        })
        .collect();
    let _ = write!(out, "<desc>{}</desc>", esc(&summary.join("; ")));

    // Legend.
    let mut x = LEFT;
    out.push_str(r#"<g class="chart-legend">"#);
    for (k, (name, class, _)) in series.iter().enumerate() {
        let _ = write!(
            out,
            r#"<rect class="chart-swatch {c}" x="{x}" y="8" width="10" height="10" fill="{f}"/><text class="chart-label" x="{tx}" y="17" font-size="11" fill="currentColor">{n}</text>"#,
            c = esc(class),
            x = num(x),
            f = PALETTE[k % PALETTE.len()],
            tx = num(x + 14.0),
            n = esc(name),
        );
        x += 14.0 + 6.5 * text_width(name) + 18.0;
    }
    out.push_str("</g>");

    // Grid and y axis: 0, the middle when it is a whole number, the top.
    out.push_str(r#"<g class="chart-axis">"#);
    let mut ticks = vec![0, axis];
    if axis.is_multiple_of(2) {
        ticks.insert(1, axis / 2);
    }
    for t in ticks {
        let y = BOTTOM - scale(t);
        let _ = write!(
            out,
            r##"<line class="chart-grid" x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#9e9e9e" stroke-width="{w}"/><text class="chart-label" x="{tx}" y="{ty}" font-size="11" text-anchor="end" fill="currentColor">{t}</text>"##,
            l = num(LEFT),
            r = num(RIGHT),
            y = num(y),
            w = if t == 0 { "1" } else { "0.5" },
            tx = num(LEFT - 6.0),
            ty = num(y + 4.0),
        );
    }
    out.push_str("</g>");

    // Bars.
    let n = labels.len().max(1) as f64;
    let band = (RIGHT - LEFT) / n;
    let bar_w = band * 0.7;
    let label_step = labels.len().div_ceil(8).max(1);
    out.push_str(r#"<g class="chart-bars">"#);
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + band * i as f64 + (band - bar_w) / 2.0;
        let mut below = 0u64;
        for (k, s) in series.iter().enumerate() {
            let v = value(s, i);
            if v == 0 {
                continue;
            }
            let y = BOTTOM - scale(below + v);
            let _ = write!(
                out,
                r#"<rect class="chart-bar {c}" x="{x}" y="{y}" width="{w}" height="{h}" fill="{f}"><title>{t}</title></rect>"#,
                c = esc(s.1),
                x = num(x),
                y = num(y),
                w = num(bar_w),
                h = num(scale(below + v) - scale(below)),
                f = PALETTE[k % PALETTE.len()],
                t = esc(&format!("{label} – {}: {v}", s.0)),
            );
            below += v;
        }
        if i % label_step == 0 {
            let _ = write!(
                out,
                r#"<text class="chart-label" x="{x}" y="{y}" font-size="10" text-anchor="middle" fill="currentColor">{t}</text>"#,
                x = num(x + bar_w / 2.0),
                y = num(BOTTOM + 16.0),
                t = esc(label),
            );
        }
    }
    out.push_str("</g></svg>");
    out
}

/// Horizontal bars, one per row, the label on the left and the value printed after the bar.
/// Bar lengths are proportional to the values, the longest filling the width. A row's class
/// (`s-ok`, `s-bad`, or empty) colours its bar, so that passes and failures read apart at a
/// glance; its label says which it is too, for those who cannot tell the colours apart.
pub fn hbars(title: &str, rows: &[(String, u32, &str)]) -> String {
    const ROW: f64 = 26.0;
    const TOP: f64 = 6.0;
    let height = (TOP * 2.0 + ROW * rows.len() as f64).max(24.0);
    let longest = rows.iter().map(|r| text_width(&r.0)).fold(0.0, f64::max);
    let left = (longest * 6.5 + 16.0).clamp(64.0, 320.0);
    let right = WIDTH - 56.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let length = |v: u32| f64::from(v) / f64::from(max) * (right - left);

    let mut out = open_svg("chart chart-hbars", title, height);
    out.push_str(r#"<g class="chart-bars">"#);
    for (i, (label, v, class)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let w = length(*v);
        let _ = write!(
            out,
            r#"<g><title>{t}</title><text class="chart-label" x="{lx}" y="{ty}" font-size="11" text-anchor="end" fill="currentColor">{l}</text>"#,
            t = esc(&format!("{label}: {v}")),
            lx = num(left - 8.0),
            ty = num(y + 17.0),
            l = esc(label),
        );
        if *v > 0 {
            let _ = write!(
                out,
                r#"<rect class="chart-bar {c}" x="{x}" y="{y}" width="{w}" height="18" fill="{f}"/>"#,
                c = esc(class),
                x = num(left),
                y = num(y + 4.0),
                w = num(w),
                f = match *class {
                    "s-ok" => PALETTE[0],
                    "s-bad" => PALETTE[1],
                    _ => PALETTE[2],
                },
            );
        }
        let _ = write!(
            out,
            r#"<text class="chart-value" x="{x}" y="{ty}" font-size="11" fill="currentColor">{v}</text></g>"#,
            x = num(left + w + 6.0),
            ty = num(y + 17.0),
        );
    }
    out.push_str("</g></svg>");
    out
}

/// The opening `<svg>` with its accessible name.
fn open_svg(class: &str, title: &str, height: f64) -> String {
    let t = esc(title);
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="{class}" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{t}"><title>{t}</title>"#,
        w = num(WIDTH),
        h = num(height),
    )
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (1 for 0), so the axis ends on a round number
/// and never divides by zero.
fn nice_ceil(v: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for m in [1, 2, 5] {
            let n = base.saturating_mul(m);
            if n >= v {
                return n;
            }
        }
        if base > u64::MAX / 10 {
            return v;
        }
        base *= 10;
    }
}

/// A coordinate with at most two decimals and no trailing zeros.
fn num(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Escapes text for XML content and attribute values, dropping characters XML 1.0 forbids.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Width of `s` in Latin-character units: CJK and other wide characters take two.
fn text_width(s: &str) -> f64 {
    s.chars()
        .map(|c| {
            let wide = matches!(c as u32,
                0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6);
            if wide { 2.0 } else { 1.0 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `attr` on every element whose class list contains `class`.
    fn attrs(svg: &str, class: &str, attr: &str) -> Vec<f64> {
        svg.split('<')
            .filter(|el| {
                el.split_once("class=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .is_some_and(|(c, _)| c.split(' ').any(|c| c == class))
            })
            .filter_map(|el| {
                let (_, rest) = el.split_once(&format!(" {attr}=\""))?;
                rest.split_once('"')?.0.parse().ok()
            })
            .collect()
    }

    fn assert_clean(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("style"), "no style allowed: {svg}");
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"width="100%""#));
        assert!(svg.contains("viewBox=\"0 0 "));
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
        assert_eq!(
            svg.matches("<title>").count(),
            svg.matches("</title>").count()
        );
    }

    fn days(n: usize) -> Vec<String> {
        (1..=n).map(|d| format!("2024-03-{d:02}")).collect()
    }

    #[test]
    fn escapes_xml() {
        assert_eq!(
            esc(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}c\td"), "abc\td");
        assert_eq!(esc("héllo – ✓"), "héllo – ✓");
    }

    #[test]
    fn every_text_is_escaped() {
        let evil = r#"<script>alert("x")</script> & 'q'"#;
        let svg = stacked_bars(
            evil,
            &[evil.to_owned()],
            &[(evil, r#"ok" onload="x"#, vec![3])],
        );
        assert_clean(&svg);
        assert!(!svg.contains("onload=\""), "{svg}");
        assert!(svg.contains(
            "aria-label=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;\""
        ));
        let svg = hbars(evil, &[(evil.to_owned(), 2, "")]);
        assert_clean(&svg);
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn zero_data_renders() {
        for svg in [
            stacked_bars("Nothing", &[], &[]),
            stacked_bars("No series", &days(3), &[]),
            stacked_bars(
                "Zeros",
                &days(30),
                &[("ok", "ok", vec![0; 30]), ("failed", "failed", vec![])],
            ),
            hbars("Nothing", &[]),
            hbars("Zeros", &[("email".into(), 0, ""), ("sms".into(), 0, "")]),
        ] {
            assert_clean(&svg);
            assert!(attrs(&svg, "chart-bar", "height").is_empty(), "{svg}");
        }
        let svg = hbars("Zeros", &[("email".into(), 0, "")]);
        assert!(svg.contains(">email</text>") && svg.contains(">0</text>"));
    }

    #[test]
    fn stacked_heights_are_proportional() {
        let svg = stacked_bars(
            "Resets",
            &days(3),
            &[
                ("Succeeded", "ok", vec![1, 2, 4]),
                ("Failed", "failed", vec![1, 0, 4]),
            ],
        );
        assert_clean(&svg);
        let ok = attrs(&svg, "ok", "height");
        let failed = attrs(&svg, "failed", "height");
        // The legend swatches are 10 high; the bars follow.
        assert_eq!(ok.len(), 4);
        assert_eq!(failed.len(), 3);
        let (ok, failed) = (&ok[1..], &failed[1..]);
        let unit = ok[0];
        assert!(unit > 0.0);
        for (h, v) in ok.iter().zip([1.0, 2.0, 4.0]) {
            assert!((h - unit * v).abs() < 0.02, "{ok:?}");
        }
        for (h, v) in failed.iter().zip([1.0, 4.0]) {
            assert!((h - unit * v).abs() < 0.02, "{failed:?}");
        }
        // The highest bar is 8; the axis ends at 10, so 8 fills 80 % of the plot.
        assert!(svg.contains(">10</text>") && svg.contains(">5</text>"));
        let plot = unit * 10.0;
        assert!((plot - 200.0).abs() < 0.2, "{plot}");
        // Segments stack: the failed segment sits right on top of the ok one.
        let ys = attrs(&svg, "chart-bar", "y");
        let hs = attrs(&svg, "chart-bar", "height");
        assert!((ys[0] - (ys[1] + hs[1])).abs() < 0.02, "{ys:?} {hs:?}");
        assert!(svg.contains("<title>2024-03-03 – Failed: 4</title>"));
        assert!(svg.contains("<desc>Succeeded: 7; Failed: 5</desc>"));
    }

    #[test]
    fn hbar_lengths_are_proportional() {
        let svg = hbars(
            "Registrations",
            &[
                ("email".into(), 10, ""),
                ("sms".into(), 5, ""),
                ("questions".into(), 0, ""),
                ("totp".into(), 2, ""),
            ],
        );
        assert_clean(&svg);
        let w = attrs(&svg, "chart-bar", "width");
        assert_eq!(w.len(), 3);
        assert!((w[1] * 2.0 - w[0]).abs() < 0.02, "{w:?}");
        assert!((w[2] * 5.0 - w[0]).abs() < 0.05, "{w:?}");
        for v in ["10", "5", "0", "2"] {
            assert!(svg.contains(&format!(">{v}</text>")), "{v}");
        }
    }

    #[test]
    fn passed_and_failed_bars_differ_in_colour() {
        let svg = hbars(
            "Verifications",
            &[
                ("email passed".into(), 3, "s-ok"),
                ("email failed".into(), 2, "s-bad"),
            ],
        );
        assert_clean(&svg);
        let fill = |class: &str| {
            let at = svg.find(&format!("chart-bar {class}")).expect(class);
            let rest = &svg[at..];
            let f = rest.find("fill=\"").expect("fill") + 6;
            rest[f..f + 7].to_string()
        };
        assert_ne!(fill("s-ok"), fill("s-bad"));
    }

    #[test]
    fn long_label_lists_are_thinned() {
        let svg = stacked_bars("Days", &days(30), &[("ok", "ok", vec![1; 30])]);
        assert_clean(&svg);
        let shown = days(30)
            .iter()
            .filter(|d| svg.contains(&format!(">{d}</text>")))
            .count();
        assert!((2..=8).contains(&shown), "{shown}");
        assert_eq!(attrs(&svg, "chart-bar", "height").len(), 30);
    }

    #[test]
    fn nice_axis() {
        assert_eq!(nice_ceil(0), 1);
        assert_eq!(nice_ceil(1), 1);
        assert_eq!(nice_ceil(3), 5);
        assert_eq!(nice_ceil(8), 10);
        assert_eq!(nice_ceil(11), 20);
        assert_eq!(nice_ceil(200), 200);
        assert_eq!(nice_ceil(201), 500);
        assert_eq!(nice_ceil(u64::MAX), u64::MAX);
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.004), "0");
        assert_eq!(num(f64::NAN), "0");
    }
}
