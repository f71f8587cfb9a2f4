//! Latency-by-percentile plots: x is 1/(1-p) on a log scale (labelled 90%, 99%, 99.9%…), y is latency in ms,
//! one line per run, in the style of the HdrHistogram plotter.

use plotters::prelude::*;
use std::path::Path;

use crate::hist::{parse_hgrm, PercentileRow};
use crate::report::Summary;
use crate::util::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// (1/(1-p), latency ms), p < 1.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn from_rows(name: &str, rows: &[PercentileRow]) -> Self {
        let points = rows
            .iter()
            .filter(|r| r.percentile < 1.0)
            .map(|r| (1.0 / (1.0 - r.percentile), r.value_ms))
            .collect();
        Self {
            name: name.to_string(),
            points,
        }
    }
    pub fn from_summary(s: &Summary) -> Self {
        Self::from_rows(&format!("{} ({})", s.label, s.mode), &s.distribution)
    }
    /// A `.json` summary or a `.hgrm` file, picked by content.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error(format!("read {}: {e}", path.display())))?;
        if text.trim_start().starts_with('{') {
            return Ok(Self::from_summary(&Summary::from_json(&text)?));
        }
        let parsed = parse_hgrm(&text).map_err(|e| Error(format!("{}: {e}", path.display())))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self::from_rows(&name, &parsed.rows))
    }
}

/// "99.9%" for x = 1000.
fn percentile_label(x: f64) -> String {
    if x < 1.0 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = (x.log10().round() as i32 - 2).max(0) as usize;
    format!("{p:.digits$}%")
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub fn draw(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let e = |what: &str, err: String| Error(format!("plot {}: {what}: {err}", path.display()));
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(100.0f64, f64::max);
    // At least to 99.99 %, so charts of short and long runs share a scale.
    let x_max = 10f64.powf(x_max.log10().ceil()).max(10_000.0);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e("fill", x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .margin_right(45)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..x_max).log_scale(), 0.0f64..y_max)
        .map_err(|x| e("axes", x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(|x| e("mesh", x.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|x| e("series", x.to_string()))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e("legend", x.to_string()))?;
    root.present().map_err(|x| e("write", x.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels_read_as_percentiles() {
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
    }
}
