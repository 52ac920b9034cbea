//! The operator console. Modules: [`charts`] (series → escaped SVG line and bar charts).

pub mod charts;
