//! The one table the benchmark prints: figure, value, the reference measured in the same run,
//! their ratio, and the target.

/// One line of the table.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
}

impl Row {
    /// A figure without a reference.
    pub fn plain(figure: impl Into<String>, value: impl Into<String>, target: &str) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            reference: "-".into(),
            ratio: "-".into(),
            target: target.into(),
        }
    }

    /// A figure, its reference, and `value / reference`.
    pub fn against(
        figure: impl Into<String>,
        (value, shown): (f64, String),
        (reference, reference_shown): (f64, String),
        target: &str,
    ) -> Row {
        Row {
            figure: figure.into(),
            value: shown,
            reference: reference_shown,
            ratio: if reference > 0.0 {
                format!("{:.2}", value / reference)
            } else {
                "-".into()
            },
            target: target.into(),
        }
    }
}

/// The table as Markdown (readable as plain text, pasteable into a note).
pub fn render(rows: &[Row]) -> String {
    let header = ["figure", "value", "reference (same run)", "ratio", "target"];
    let cells: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.as_str(),
                r.value.as_str(),
                r.reference.as_str(),
                r.ratio.as_str(),
                r.target.as_str(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[&str]| {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = line(&header);
    out += &line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for row in cells {
        out += &line(&row);
    }
    out
}
