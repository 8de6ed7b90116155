//! Small bar charts drawn on the server as inline SVG: one bar per minute, scaled to the
//! largest value. No script, no image request.

use maud::{html, Markup};

/// The chart's size in SVG units (it scales with the page).
const WIDTH: u32 = 120;
const HEIGHT: u32 = 28;

/// One bar: its x, and its height in SVG units (at least 1 for a value above zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub x: u32,
    pub height: u32,
}

/// The bars of `values` (oldest first), scaled so the largest fills the height; zeros draw
/// nothing.
pub fn bars(values: &[u64]) -> Vec<Bar> {
    let max = values.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return Vec::new();
    }
    let count = values.len() as u32;
    values
        .iter()
        .enumerate()
        .filter(|(_, value)| **value > 0)
        .map(|(i, value)| Bar {
            x: i as u32 * WIDTH / count,
            height: ((value * u64::from(HEIGHT)).div_ceil(max) as u32).clamp(1, HEIGHT),
        })
        .collect()
}

/// The chart of `values`, described for screen readers by `label` and its largest value.
pub fn chart(values: &[u64], label: &str, class: &str) -> Markup {
    let max = values.iter().copied().max().unwrap_or(0);
    let width = (WIDTH / values.len().max(1) as u32).max(1);
    html! {
        svg.chart.(class) viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } preserveAspectRatio="none"
            role="img" aria-label={ (label) ", per minute over the last hour, peak " (max) } {
            line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
            @for bar in bars(values) {
                rect x=(bar.x) y=(HEIGHT - bar.height) width=(width) height=(bar.height) {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let mut values = vec![0u64; 60];
        values[0] = 10;
        values[30] = 5;
        values[59] = 1;
        let bars = bars(&values);
        assert_eq!(
            bars,
            vec![
                Bar {
                    x: 0,
                    height: HEIGHT
                },
                Bar {
                    x: 60,
                    height: HEIGHT / 2
                },
                Bar { x: 118, height: 3 },
            ]
        );
    }

    #[test]
    fn nothing_draws_no_bar_and_a_small_value_stays_visible() {
        assert!(bars(&[0; 60]).is_empty());
        assert!(bars(&[]).is_empty());
        let bars = bars(&[1_000_000, 1]);
        assert_eq!(bars[1].height, 1);
    }

    #[test]
    fn the_chart_is_labelled_svg() {
        let svg = chart(&[0, 2, 4], "requests of <github>", "requests").into_string();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("peak 4"), "{svg}");
        assert!(svg.contains("&lt;github&gt;"), "escaped: {svg}");
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
    }
}
