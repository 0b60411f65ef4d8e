//! Charts of benchmark results (`pubsub bench … --plot FILE`, `pubsub bench chart`): grouped
//! bars in SVG, drawn with plotters. SVG leaves text to the viewer, so no fonts are needed.

use std::path::Path;

use anyhow::{anyhow, Context};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

/// One group of bars on the x axis: its label and `(series, value)` pairs.
pub struct Group {
    pub label: String,
    pub bars: Vec<(String, f64)>,
}

/// What to draw: groups of bars, one colour per series name.
pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<Group>,
    /// A logarithmic y axis, for values (ratios) spanning orders of magnitude.
    pub log_scale: bool,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Writes `chart` as SVG to `path`.
pub fn draw(chart: &Chart, path: &Path) -> anyhow::Result<()> {
    let width = (160 * chart.groups.len() as u32).clamp(640, 1800);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    draw_on(&root, chart).map_err(|error| anyhow!("cannot draw {}: {error}", path.display()))?;
    root.present()
        .map_err(|error| anyhow!("cannot write {}: {error}", path.display()))
}

fn draw_on(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let values = chart
        .groups
        .iter()
        .flat_map(|group| &group.bars)
        .map(|(_, v)| *v);
    let top = values.clone().fold(0.0_f64, f64::max).max(1e-9) * 1.15;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    // The x axis is continuous: group i spans [i, i + 1), its label sits at i + 0.5.
    let x_range = 0.0..chart.groups.len().max(1) as f64;
    if chart.log_scale {
        let bottom = values.fold(f64::MAX, f64::min).clamp(1e-3, 1.0) / 2.0;
        let plot = builder.build_cartesian_2d(x_range, (bottom..top * 2.0).log_scale())?;
        // With a reference line at 1: equal to the peer.
        fill(plot, chart, bottom, Some(1.0))
    } else {
        fill(
            builder.build_cartesian_2d(x_range, 0.0..top)?,
            chart,
            0.0,
            None,
        )
    }
}

type Plot<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

/// Axes, one colour of bars per series from `bottom` up, an optional horizontal reference
/// line, and the legend.
fn fill<Y>(
    mut plot: Plot<'_, Y>,
    chart: &Chart,
    bottom: f64,
    reference: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let label_of = |x: &f64| {
        let centred = (x - x.floor() - 0.5).abs() < 1e-6;
        match chart.groups.get(x.floor() as usize) {
            Some(group) if centred => group.label.clone(),
            _ => String::new(),
        }
    };
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * chart.groups.len() + 1)
        .x_label_formatter(&label_of)
        .y_desc(&chart.y_label)
        .draw()?;
    let series = series_names(chart);
    let width = 0.8 / series.len().max(1) as f64;
    for (index, name) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let bars = chart
            .groups
            .iter()
            .enumerate()
            .filter_map(|(group_index, group)| {
                let value = group.bars.iter().find(|(bar, _)| bar == name)?.1;
                let left = group_index as f64 + 0.1 + index as f64 * width;
                Some(Rectangle::new(
                    [(left, bottom), (left + width * 0.9, value.max(bottom))],
                    colour.filled(),
                ))
            });
        plot.draw_series(bars)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    if let Some(level) = reference {
        let end = chart.groups.len() as f64;
        plot.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, level), (end, level)],
            BLACK.stroke_width(1),
        )))?;
    }
    plot.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// Series names in first-seen order.
fn series_names(chart: &Chart) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in chart.groups.iter().flat_map(|group| &group.bars) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The chart of one `pubsub bench` result: its headline figures, one bar each.
pub fn chart_of_result(result: &Value) -> Chart {
    let scenario = result["scenario"].as_str().unwrap_or("bench");
    let (fields, y_label): (&[&str], &str) = match scenario {
        "latency" => (&["p50_us", "p90_us", "p99_us", "p999_us", "max_us"], "µs"),
        "connections" => (&["bytes_per_connection"], "bytes per connection"),
        "connect-rate" => (&["connects_per_s"], "connects/s"),
        "offline-queue" => (&["acknowledged_per_s", "drained_per_s"], "messages/s"),
        _ => (
            &["sent_per_s", "received_per_s", "delivered_per_s"],
            "messages/s",
        ),
    };
    let groups = fields
        .iter()
        .filter_map(|field| {
            let value = result[*field].as_f64()?;
            Some(Group {
                label: field.to_string(),
                bars: vec![(scenario.to_owned(), value)],
            })
        })
        .collect();
    Chart {
        title: format!(
            "pubsub bench {scenario} ({})",
            result["url"].as_str().unwrap_or("")
        ),
        y_label: y_label.to_owned(),
        groups,
        log_scale: false,
    }
}

/// A chart described in JSON (what `bench/compare` writes):
/// `{"title", "y_label", "log_scale", "groups": [{"label", "bars": {"series": value}}]}`.
pub fn chart_from_json(text: &str) -> anyhow::Result<Chart> {
    let value: Value = serde_json::from_str(text).context("chart description is not JSON")?;
    let groups = value["groups"]
        .as_array()
        .context("chart description has no \"groups\" list")?
        .iter()
        .map(|group| Group {
            label: group["label"].as_str().unwrap_or("").to_owned(),
            bars: group["bars"]
                .as_object()
                .map(|bars| {
                    bars.iter()
                        .filter_map(|(name, v)| Some((name.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok(Chart {
        title: value["title"].as_str().unwrap_or("").to_owned(),
        y_label: value["y_label"].as_str().unwrap_or("").to_owned(),
        groups,
        log_scale: value["log_scale"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compare_chart_is_drawn_with_its_labels_and_series() {
        let chart = chart_from_json(
            r#"{"title": "pubsub / mosquitto", "y_label": "ratio", "log_scale": true,
                "groups": [{"label": "fan-in QoS 0", "bars": {"memory": 3.5, "durable": 2.0}},
                           {"label": "latency p99", "bars": {"memory": 0.6}}]}"#,
        )
        .unwrap();
        let path = std::env::temp_dir().join(format!("pubsub-chart-{}.svg", std::process::id()));
        draw(&chart, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        for text in [
            "pubsub / mosquitto",
            "fan-in QoS 0",
            "latency p99",
            "memory",
            "durable",
        ] {
            assert!(svg.contains(text), "{text} missing from the SVG");
        }
        assert!(svg.matches("<rect").count() >= 3, "three bars at least");
    }

    #[test]
    fn a_latency_result_becomes_its_percentiles() {
        let result = serde_json::json!({"scenario": "latency", "url": "mqtt://x",
            "p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 999.0, "max_us": 2000.0});
        let chart = chart_of_result(&result);
        let labels: Vec<&str> = chart.groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(labels, ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"]);
        assert_eq!(chart.groups[3].bars[0].1, 999.0);
    }
}
