//! Server-side charts for the console: series of numbers → an SVG line or bar chart with axes,
//! tick labels, a legend and a tooltip (`<title>`) per point, so the numbers stay one hover
//! away. Pure (no I/O, no state) and self-contained: the SVG uses no script and no external
//! resource, and every text in it — titles, series names, labels, which may come from what an
//! operator or a webhook typed — is escaped.

use std::fmt::Write;

/// Drawing area of every chart, in SVG user units.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 44.0;
/// Ticks on each axis.
const TICKS: usize = 5;
/// Colours of the series, in turn (distinguishable for common colour blindness).
const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];

/// How the series are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One polyline per series, x proportional.
    Line,
    /// Grouped bars, one group per distinct x.
    Bar,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart to render.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub kind: Kind,
    pub series: &'a [Series],
    /// How an x value is written under the axis (e.g. a time of day).
    pub x_text: &'a dyn Fn(f64) -> String,
}

/// `text` safe inside SVG (XML) text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A round upper bound of the y axis (1, 2 or 5 times a power of ten) at or above `max`.
fn nice_max(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * power)
}

/// A number as an axis label: no decimals for whole numbers.
fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Renders `chart` as a standalone SVG document.
pub fn render(chart: &Chart<'_>) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let points = chart.series.iter().flat_map(|s| s.points.iter());
    let finite: Vec<(f64, f64)> = points
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .copied()
        .collect();
    let mut svg = String::new();
    let title = escape(chart.title);
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" font-family="sans-serif" font-size="11"><title>{title}</title><text x="{LEFT}" y="18" font-size="13" font-weight="bold">{title}</text>"#
    );
    if finite.is_empty() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#666">no data</text></svg>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
        return svg;
    }
    let y_max = nice_max(finite.iter().map(|p| p.1).fold(0.0, f64::max));
    let y_of = |y: f64| TOP + plot_h - (y.max(0.0) / y_max) * plot_h;

    // Axes, y ticks with grid lines, axis labels.
    let bottom = TOP + plot_h;
    let _ = write!(
        svg,
        r##"<g stroke="#333"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/><line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}"/></g>"##,
        LEFT + plot_w
    );
    for i in 0..=TICKS {
        let v = y_max * i as f64 / TICKS as f64;
        let y = y_of(v);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            number(v)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(chart.x_label),
        TOP + plot_h / 2.0,
        escape(chart.y_label)
    );

    match chart.kind {
        Kind::Line => draw_lines(&mut svg, chart, &finite, plot_w, &y_of),
        Kind::Bar => draw_bars(&mut svg, chart, plot_w, &y_of),
    }

    // Legend.
    for (n, s) in chart.series.iter().enumerate() {
        let y = TOP + 14.0 * n as f64;
        let x = LEFT + plot_w + 12.0;
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            y,
            PALETTE[n % PALETTE.len()],
            x + 14.0,
            y + 9.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Tick labels under the x axis at `xs` (positions, values).
fn x_ticks(svg: &mut String, chart: &Chart<'_>, ticks: impl Iterator<Item = (f64, f64)>) {
    let bottom = HEIGHT - BOTTOM;
    for (x, value) in ticks {
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 4.0,
            bottom + 16.0,
            escape(&(chart.x_text)(value))
        );
    }
}

fn draw_lines(
    svg: &mut String,
    chart: &Chart<'_>,
    finite: &[(f64, f64)],
    plot_w: f64,
    y_of: &dyn Fn(f64) -> f64,
) {
    let x_min = finite.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = finite.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let x_of = |x: f64| LEFT + (x - x_min) / span * plot_w;
    let ticks = if x_max > x_min { TICKS } else { 0 };
    x_ticks(
        svg,
        chart,
        (0..=ticks).map(|i| {
            let v = x_min + span * i as f64 / TICKS.max(1) as f64;
            (x_of(v), v)
        }),
    );
    for (n, s) in chart.series.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let mut pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .copied()
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for (x, y) in pts {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}: {} at {}</title></circle>"#,
                x_of(x),
                y_of(y),
                escape(&s.name),
                number(y),
                escape(&(chart.x_text)(x))
            );
        }
    }
}

fn draw_bars(svg: &mut String, chart: &Chart<'_>, plot_w: f64, y_of: &dyn Fn(f64) -> f64) {
    let mut xs: Vec<f64> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite())
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let groups = xs.len().max(1) as f64;
    let per = chart.series.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = (group_w * 0.8 / per).max(1.0);
    let bottom = HEIGHT - BOTTOM;
    // At most about TICKS labels under the axis, so they never overlap.
    let every = (xs.len() / TICKS).max(1);
    x_ticks(
        svg,
        chart,
        xs.iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0)
            .map(|(i, x)| (LEFT + group_w * (i as f64 + 0.5), *x)),
    );
    for (n, s) in chart.series.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        for (x, y) in s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
        {
            let Some(i) = xs.iter().position(|v| v == x) else {
                continue;
            };
            let left = LEFT + group_w * i as f64 + group_w * 0.1 + bar_w * n as f64;
            let top = y_of(*y);
            let _ = write!(
                svg,
                r#"<rect x="{left:.1}" y="{top:.1}" width="{bar_w:.1}" height="{:.1}" fill="{colour}"><title>{}: {} at {}</title></rect>"#,
                (bottom - top).max(0.0),
                escape(&s.name),
                number(*y),
                escape(&(chart.x_text)(*x))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    fn chart<'a>(kind: Kind, series: &'a [Series], x_text: &'a dyn Fn(f64) -> String) -> Chart<'a> {
        Chart {
            title: "Events <per> minute",
            x_label: "time",
            y_label: "events",
            kind,
            series,
            x_text,
        }
    }

    #[test]
    fn text_from_users_is_escaped_everywhere() {
        let s = [series(
            "<script>alert(1)</script>",
            &[(0.0, 1.0), (1.0, 3.0)],
        )];
        let label = |x: f64| format!("t\"{x}'&");
        for kind in [Kind::Line, Kind::Bar] {
            let svg = render(&chart(kind, &s, &label));
            assert!(!svg.contains("<script>"), "{svg}");
            assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(svg.contains("Events &lt;per&gt; minute"));
            assert!(svg.contains("t&quot;1&#39;&amp;"), "{svg}");
            assert_eq!(escape("a\u{0}b"), "ab");
        }
    }

    #[test]
    fn a_line_chart_has_axes_ticks_a_legend_and_the_numbers_in_tooltips() {
        let s = [
            series("acme", &[(0.0, 2.0), (60.0, 7.0), (120.0, 3.0)]),
            series("globex", &[(0.0, 1.0), (120.0, 0.0)]),
        ];
        let label = |x: f64| format!("{x:.0}s");
        let svg = render(&chart(Kind::Line, &s, &label));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The y axis rounds up to 10, ticked every 2.
        assert!(
            svg.contains(">10</text>") && svg.contains(">2</text>"),
            "{svg}"
        );
        assert!(svg.contains(">120s</text>"));
        assert!(svg.contains("<title>acme: 7 at 60s</title>"));
        assert!(svg.contains(">globex</text>"));
        // The highest point sits on the top of the plot's scale, not above it.
        let top_y = TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - 7.0 / 10.0);
        assert!(svg.contains(&format!("cy=\"{top_y:.1}\"")), "{svg}");
    }

    #[test]
    fn bars_are_grouped_per_x_and_nothing_to_draw_says_so() {
        let s = [
            series("p50", &[(1.0, 40.0), (2.0, 55.0)]),
            series("p99", &[(1.0, 90.0)]),
        ];
        let label = |x: f64| format!("v{x}");
        let svg = render(&chart(Kind::Bar, &s, &label));
        assert_eq!(
            svg.matches("<rect x=").count(),
            3 + 2,
            "three bars and two legend keys"
        );
        assert!(svg.contains("<title>p99: 90 at v1</title>"));
        assert!(svg.contains(">100</text>"), "{svg}");
        let empty = render(&chart(Kind::Line, &[], &label));
        assert!(empty.contains("no data") && empty.ends_with("</svg>"));
        let nan = [series("x", &[(f64::NAN, 1.0)])];
        assert!(render(&chart(Kind::Bar, &nan, &label)).contains("no data"));
    }
}
