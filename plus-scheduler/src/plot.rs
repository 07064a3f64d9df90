//! The tuner's plot (feature `plot`): a hand-made SVG of the trade-off, so a placement library
//! built without the feature carries no plotting code.

use std::fmt::Write as _;

use crate::scheduler::Weights;
use crate::tune::{Trial, TuneResult};

/// An axis label with three significant digits, whatever the scale (CVs can be 0.0002).
fn tick_label(v: f64) -> String {
    if v == 0.0 || (0.01..1000.0).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// A plot panel: its x-axis label and how to read x from a trial.
type Panel = (&'static str, fn(&Trial) -> f64);

impl TuneResult {
    /// An SVG of the trade-off: hit rate against cache CV (left) and against load CV (right),
    /// one dot per trial, darker red for a better objective, the best ringed. Feature `plot`.
    #[must_use]
    pub fn svg(&self) -> String {
        const W: f64 = 900.0;
        const H: f64 = 420.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">plus-scheduler weight tuning: {} trials, best {}</text>\n",
            W / 2.0,
            self.trials.len(),
            weights_text(&self.best().weights),
        );
        let (lo, hi) =
            self.trials.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t.objective), hi.max(t.objective))
            });
        let panels: [Panel; 2] = [
            ("cache CV (lower is more even)", |t| t.cache_cv),
            ("load CV (lower is more even)", |t| t.load_cv),
        ];
        for (p, (label, x_of)) in panels.iter().enumerate() {
            let left = 60.0 + p as f64 * (W / 2.0);
            let (top, width, height) = (45.0, W / 2.0 - 90.0, H - 100.0);
            let x_max = self.trials.iter().map(x_of).fold(0.0_f64, f64::max).max(1e-9) * 1.05;
            let (y_lo, y_hi) =
                self.trials.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                    (lo.min(t.hit_rate), hi.max(t.hit_rate))
                });
            let (y_lo, y_hi) =
                if y_hi - y_lo < 1e-9 { (y_lo - 0.01, y_hi + 0.01) } else { (y_lo, y_hi) };
            let _ = writeln!(
                svg,
                "<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{height}\" fill=\"none\" stroke=\"#444\"/>"
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                left + width / 2.0,
                top + height + 35.0
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">hit rate</text>",
                left - 42.0,
                top + height / 2.0,
                left - 42.0,
                top + height / 2.0
            );
            for tick in 0..=4 {
                let f = f64::from(tick) / 4.0;
                let (x, y) = (left + f * width, top + height - f * height);
                let _ = writeln!(
                    svg,
                    "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                    top + height + 14.0,
                    tick_label(f * x_max)
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\">{:.3}</text>",
                    left - 4.0,
                    y + 3.0,
                    y_lo + f * (y_hi - y_lo)
                );
            }
            for (i, t) in self.trials.iter().enumerate() {
                let x = left + x_of(t) / x_max * width;
                let y = top + height - (t.hit_rate - y_lo) / (y_hi - y_lo) * height;
                let goodness = if hi > lo { (t.objective - lo) / (hi - lo) } else { 1.0 };
                let red = (80.0 + 175.0 * goodness) as u8;
                let other = (200.0 * (1.0 - goodness)) as u8;
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"rgb({red},{other},{other})\"><title>{} objective={:.4}</title></circle>",
                    weights_text(&t.weights),
                    t.objective
                );
                if i == self.best {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"9\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>"
                    );
                }
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// `load=35.0 has_cache=50.0 total_caches=34.0`.
fn weights_text(weights: &Weights) -> String {
    let parts: Vec<String> =
        weights.iter().map(|(b, weight)| format!("{}={weight:.1}", b.name())).collect();
    parts.join(" ")
}
