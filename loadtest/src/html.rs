//! The `--html` report: one self-contained page for people. Inline CSS and inline SVG only — no
//! scripts, fonts or anything else fetched from elsewhere — so the file can be mailed, archived
//! and opened offline. Hover values come from SVG `<title>` elements.
//!
//! The page holds a summary table, the per-second timeline (latency lines over throughput bars)
//! and the latency distribution as an HdrHistogram-style percentile plot.
//!
//! Invariants: every string taken from the [`Report`] goes through [`esc`]; every number written
//! into the SVG goes through [`Px`] or a label formatter that prints `n/a` for non-finite values,
//! so no `NaN` or `inf` reaches the page whatever the report holds.

use std::fmt::{self, Write as _};

use loadtest::report::{Report, Second};

/// Appends formatted text to a `String`; `fmt::Write` for `String` never fails.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// A self-contained HTML page for `report`.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(32 * 1024 + report.timeline.len() * 700);
    let scenario = or_dash(&report.scenario);
    let target = or_dash(&report.target);
    let mode = mode_name(&report.mode);

    w!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>tessera-loadtest: {scenario}, {mode}, {target}</title>\n\
         <style>{CSS}</style>\n</head>\n<body>\n<main>\n"
    );
    w!(
        out,
        "<header>\n<p class=\"kicker\">tessera-loadtest report</p>\n\
         <h1>{scenario} <span class=\"mode\">{mode}</span></h1>\n\
         <p class=\"target\">{target}</p>\n</header>\n"
    );

    out.push_str("<section class=\"summary\">\n");
    run_table(&mut out, report);
    results_table(&mut out, report);
    latency_table(&mut out, report);
    out.push_str("</section>\n");

    out.push_str(
        "<section>\n<h2>Latency and throughput over time</h2>\n<div class=\"card plot\">\n",
    );
    timeline_svg(&mut out, &report.timeline);
    out.push_str(
        "</div>\n<p class=\"hint\">One point per second of the measured window. \
         Hover a second for its values.</p>\n</section>\n",
    );

    out.push_str("<section>\n<h2>Latency distribution</h2>\n<div class=\"card plot\">\n");
    distribution_svg(&mut out, &report.distribution);
    out.push_str(
        "</div>\n<p class=\"hint\">Latency at each percentile; the x axis spreads the tail \
         by 1/(1&#8722;p), so each step to the right is ten times rarer.</p>\n</section>\n",
    );

    out.push_str("<section>\n<h2>Notes</h2>\n");
    if report.notes.is_empty() {
        out.push_str("<p class=\"hint\">No notes.</p>\n");
    } else {
        out.push_str("<ul class=\"notes\">\n");
        for note in &report.notes {
            w!(out, "<li>{}</li>\n", esc(note));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");

    w!(
        out,
        "<footer>Report format {}.</footer>\n</main>\n</body>\n</html>\n",
        report.format
    );
    out
}

const CSS: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;background:#f5f6f8;color:#1d2330;\
font:15px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,Helvetica,Arial,sans-serif}\
main{max-width:1100px;margin:0 auto;padding:24px 20px 40px}\
.kicker{margin:0;color:#6a7382;font-size:.8em;letter-spacing:.06em;text-transform:uppercase}\
h1{font-size:1.7em;margin:2px 0 2px}\
h1 .mode{font-weight:400;color:#6a7382;font-size:.7em}\
.target{margin:0;color:#4a5261;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;\
font-size:.9em;overflow-wrap:anywhere}\
h2{font-size:1.15em;margin:28px 0 10px}\
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 14px}\
.summary{display:grid;grid-template-columns:repeat(auto-fit,minmax(290px,1fr));gap:16px;\
margin-top:20px;align-items:start}\
table{border-collapse:collapse;width:100%}\
caption{text-align:left;font-weight:600;padding:0 0 6px}\
th{text-align:left;font-weight:400;color:#5b6473;padding:3px 12px 3px 0;white-space:nowrap;\
vertical-align:top}\
th.sub{padding-left:16px}\
td{text-align:right;padding:3px 0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}\
tr+tr>*{border-top:1px solid #eef0f3}\
.bad{color:#b3261e}\
.muted{color:#8a92a0}\
svg{display:block;width:100%;height:auto;min-width:600px}\
.plot{overflow-x:auto}\
svg text{font-size:12px;fill:#4a5261}\
svg text.title{font-size:13px;font-weight:600;fill:#1d2330}\
svg text.axis{font-size:12.5px;fill:#1d2330}\
.grid{stroke:#e4e7ec;stroke-width:1}\
.minor{stroke:#f0f2f5;stroke-width:1}\
.frame{fill:none;stroke:#b9c0ca;stroke-width:1}\
.line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}\
.hover{fill:transparent}\
.hover:hover{fill:rgba(30,45,70,.08)}\
.hint{color:#6a7382;font-size:.88em;margin:6px 2px 0}\
ul.notes{margin:0;padding:12px 14px 12px 34px;background:#fff;border:1px solid #dde1e7;\
border-radius:8px}\
ul.notes li{white-space:pre-wrap;overflow-wrap:anywhere;\
font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}\
footer{margin-top:28px;color:#8a92a0;font-size:.85em}\
";

// ---------------------------------------------------------------------------------------------
// Summary tables

fn run_table(out: &mut String, r: &Report) {
    out.push_str("<div class=\"card\"><table>\n<caption>Run</caption>\n");
    row(out, "scenario", &or_dash(&r.scenario));
    row(out, "target", &or_dash(&r.target));
    row(out, "mode", &mode_name(&r.mode));
    row(out, "protocol", &or_dash(&crate::output::protocol(r)));
    row(out, "connections", &group(r.connections as u64));
    row(out, "threads", &group(r.threads as u64));
    let rate = match r.rate {
        Some(rate) => format!("{} req/s", group_f(rate, 1)),
        None if r.mode == "closed" => "<span class=\"muted\">none (closed loop)</span>".to_owned(),
        None => DASH.to_owned(),
    };
    row(out, "rate", &rate);
    row(out, "duration", &seconds(r.duration_s));
    row(out, "warm-up", &seconds(r.warmup_s));
    let mix = if r.mix.is_empty() {
        DASH.to_owned()
    } else {
        r.mix
            .iter()
            .map(|(alg, pct)| format!("{}&nbsp;{}%", esc(alg), trim(*pct, 2)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row(out, "token mix", &mix);
    row(out, "distinct tokens", &group(r.distinct as u64));
    row(
        out,
        "invalid tokens",
        &format!("{}%", trim(r.invalid_pct, 2)),
    );
    let batch = r.batch.map_or_else(|| DASH.to_owned(), |b| group(b as u64));
    row(out, "batch", &batch);
    out.push_str("</table></div>\n");
}

fn results_table(out: &mut String, r: &Report) {
    out.push_str("<div class=\"card\"><table>\n<caption>Results</caption>\n");
    row(out, "requests", &group(r.requests));
    row(
        out,
        "throughput",
        &format!("{} req/s", group_f(r.throughput, 1)),
    );

    let errors = r
        .errors
        .iter()
        .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
    let total = if errors == 0 {
        "0".to_owned()
    } else {
        format!("<span class=\"bad\">{}</span>", group(errors))
    };
    row(out, "errors", &total);
    for (kind, n) in &r.errors {
        w!(
            out,
            "<tr><th class=\"sub\">{}</th><td>{}</td></tr>\n",
            esc(kind),
            group(*n)
        );
    }

    let answered = r
        .statuses
        .iter()
        .fold(0u64, |sum, (_, n)| sum.saturating_add(*n));
    if r.statuses.is_empty() {
        row(out, "statuses", DASH);
    } else {
        row(out, "statuses", "");
        for (status, n) in &r.statuses {
            let share = if answered > 0 {
                *n as f64 / answered as f64 * 100.0
            } else {
                0.0
            };
            w!(
                out,
                "<tr><th class=\"sub\">{}</th><td>{} <span class=\"muted\">({}%)</span></td></tr>\n",
                esc(status),
                group(*n),
                trim(share, 2)
            );
        }
    }
    out.push_str("</table></div>\n");
}

fn latency_table(out: &mut String, r: &Report) {
    let l = &r.latency_us;
    out.push_str("<div class=\"card\"><table>\n<caption>Latency</caption>\n");
    let rows: [(&str, f64); 7] = [
        ("min", l.min as f64),
        ("mean", l.mean),
        ("p50", l.p50 as f64),
        ("p90", l.p90 as f64),
        ("p99", l.p99 as f64),
        ("p99.9", l.p999 as f64),
        ("max", l.max as f64),
    ];
    for (name, us) in rows {
        w!(
            out,
            "<tr><th>{name}</th><td title=\"{} µs\">{}</td></tr>\n",
            group_f(us, 1),
            duration_us(us)
        );
    }
    if r.mode == "open" {
        out.push_str(
            "<tr><td colspan=\"2\" class=\"muted\" style=\"text-align:left\">\
             Open loop: measured from each request's intended start.</td></tr>\n",
        );
    }
    out.push_str("</table></div>\n");
}

/// One table row; `value` is HTML (callers escape report strings).
fn row(out: &mut String, name: &str, value: &str) {
    w!(out, "<tr><th>{name}</th><td>{value}</td></tr>\n");
}

// ---------------------------------------------------------------------------------------------
// Plots

/// Width of every plot's viewBox; the page scales it to the window.
const W: f64 = 960.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 36.0;

const P50: &str = "#2f6fb3";
const P99: &str = "#e07b12";
const MAX: &str = "#8e44ad";
const BAR: &str = "#a8c3e3";
const ERR: &str = "#d64541";

/// Per-second latency lines above per-second throughput bars, sharing the time axis.
fn timeline_svg(out: &mut String, timeline: &[Second]) {
    let secs: Vec<&Second> = timeline.iter().filter(|s| s.t.is_finite()).collect();
    if secs.is_empty() {
        placeholder_svg(
            out,
            "Latency over time",
            "No per-second data in this report.",
        );
        return;
    }
    let t0 = secs.iter().map(|s| s.t).fold(f64::INFINITY, f64::min);
    let t1 = secs.iter().map(|s| s.t).fold(f64::NEG_INFINITY, f64::max) + 1.0;
    let xs = Scale::span(t0, t1, 1.0);
    let lat = Scale::latency(
        secs.iter()
            .flat_map(|s| [s.p50_us, s.p99_us, s.max_us])
            .map(|v| v as f64),
    );
    let peak = secs
        .iter()
        .map(|s| s.requests.max(s.errors))
        .max()
        .unwrap_or(0);
    let counts = Scale::from_zero(peak as f64, 1.0);

    let top = Panel {
        x: LEFT,
        y: 44.0,
        w: W - LEFT - RIGHT,
        h: 250.0,
    };
    let bottom = Panel {
        x: LEFT,
        y: top.y + top.h + 58.0,
        w: top.w,
        h: 120.0,
    };
    let height = bottom.y + bottom.h + 58.0;

    w!(
        out,
        "<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"Latency and throughput per second\">\n",
        Px(W),
        Px(height)
    );

    // Titles and legends.
    w!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\">Latency per second ({})</text>\n",
        Px(top.x),
        Px(top.y - 16.0),
        lat.kind()
    );
    legend(
        out,
        top.x + top.w,
        top.y - 16.0,
        &[
            (P50, "p50", Swatch::Line),
            (P99, "p99", Swatch::Line),
            (MAX, "max", Swatch::Line),
        ],
    );
    w!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\">Completed requests per second</text>\n",
        Px(bottom.x),
        Px(bottom.y - 16.0)
    );
    legend(
        out,
        bottom.x + bottom.w,
        bottom.y - 16.0,
        &[(BAR, "requests", Swatch::Box), (ERR, "errors", Swatch::Box)],
    );

    // Grids and axes.
    for panel in [&top, &bottom] {
        for t in xs.ticks() {
            let x = panel.x_at(&xs, t);
            w!(
                out,
                "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n",
                Px(x),
                Px(x),
                Px(panel.y),
                Px(panel.y + panel.h)
            );
        }
    }
    y_axis(out, &top, &lat, duration_us);
    y_axis(out, &bottom, &counts, count_label);
    for t in xs.ticks() {
        w!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            Px(bottom.x_at(&xs, t)),
            Px(bottom.y + bottom.h + 18.0),
            trim(t, 2)
        );
    }
    w!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the measured window began</text>\n",
        Px(bottom.x + bottom.w / 2.0),
        Px(bottom.y + bottom.h + 44.0)
    );

    // Throughput bars, errors drawn over them from the same baseline.
    for s in &secs {
        let x0 = bottom.x_at(&xs, s.t);
        let x1 = bottom.x_at(&xs, s.t + 1.0);
        let gap = if x1 - x0 > 6.0 { 1.0 } else { 0.0 };
        for (n, color) in [(s.requests, BAR), (s.errors, ERR)] {
            if n == 0 {
                continue;
            }
            // A few errors among many requests still get a visible sliver.
            let y = bottom
                .y_at(&counts, n as f64)
                .min(bottom.y + bottom.h - 2.0);
            w!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"/>\n",
                Px(x0 + gap),
                Px(y),
                Px((x1 - x0 - 2.0 * gap).max(0.5)),
                Px(bottom.y + bottom.h - y)
            );
        }
    }

    // Latency lines, broken where a second saw nothing at all.
    let dots = secs.len() <= 90;
    type Pick = fn(&Second) -> u64;
    let series: [(Pick, &str); 3] = [
        (|s| s.max_us, MAX),
        (|s| s.p99_us, P99),
        (|s| s.p50_us, P50),
    ];
    for (pick, color) in series {
        let mut run: Vec<(f64, f64)> = Vec::new();
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        for s in &secs {
            if s.requests == 0 && s.errors == 0 && s.max_us == 0 {
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
                continue;
            }
            run.push((top.x_at(&xs, s.t + 0.5), top.y_at(&lat, pick(s) as f64)));
        }
        if !run.is_empty() {
            runs.push(run);
        }
        for run in &runs {
            if run.len() > 1 {
                polyline(out, run, color);
            }
            if dots || run.len() == 1 {
                for &(x, y) in run {
                    w!(
                        out,
                        "<circle cx=\"{}\" cy=\"{}\" r=\"2.6\" fill=\"{color}\"/>\n",
                        Px(x),
                        Px(y)
                    );
                }
            }
        }
    }

    for panel in [&top, &bottom] {
        panel.frame(out);
    }

    // Hover targets, one per second over both panels.
    for s in &secs {
        let x0 = top.x_at(&xs, s.t);
        let x1 = top.x_at(&xs, s.t + 1.0);
        w!(
            out,
            "<rect class=\"hover\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\">\
             <title>{} s\np50 {}\np99 {}\nmax {}\n{} requests, {} errors</title></rect>\n",
            Px(x0),
            Px(top.y),
            Px((x1 - x0).max(0.5)),
            Px(bottom.y + bottom.h - top.y),
            trim(s.t, 2),
            duration_us(s.p50_us as f64),
            duration_us(s.p99_us as f64),
            duration_us(s.max_us as f64),
            group(s.requests),
            group(s.errors)
        );
    }
    out.push_str("</svg>\n");
}

/// Latency against percentile, the percentile axis spread as log10(1/(1-p)).
fn distribution_svg(out: &mut String, distribution: &[(f64, u64)]) {
    let points: Vec<(f64, u64)> = distribution
        .iter()
        .filter(|(p, _)| p.is_finite())
        .map(|&(p, us)| (p.clamp(0.0, 100.0), us))
        .collect();
    if points.is_empty() {
        placeholder_svg(
            out,
            "Latency by percentile",
            "No latency distribution in this report.",
        );
        return;
    }
    // Five nines by default; more when the data reaches further (the 100th percentile, the
    // maximum, sits on the right edge).
    let deepest = points
        .iter()
        .map(|&(p, _)| nines(p))
        .filter(|d| d.is_finite())
        .fold(0.0, f64::max);
    let decades = ((deepest - 1e-6).ceil()).clamp(5.0, 7.0);
    let xs = Scale::Linear {
        lo: 0.0,
        hi: decades,
        step: 1.0,
    };
    let ys = Scale::latency(points.iter().map(|&(_, us)| us as f64));

    let panel = Panel {
        x: LEFT,
        y: 44.0,
        w: W - LEFT - RIGHT,
        h: 330.0,
    };
    let height = panel.y + panel.h + 60.0;
    w!(
        out,
        "<svg viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"Latency by percentile\">\n",
        Px(W),
        Px(height)
    );
    w!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\">Latency by percentile ({})</text>\n",
        Px(panel.x),
        Px(panel.y - 16.0),
        ys.kind()
    );
    legend(
        out,
        panel.x + panel.w,
        panel.y - 16.0,
        &[(P50, "latency", Swatch::Line)],
    );

    // Minor lines at 50%, 80%, 95%, 98%, 99.5%, ...; major lines, labelled, at each nine.
    let mut decade = 0.0;
    while decade < decades {
        for minor in [2f64.log10(), 5f64.log10()] {
            let x = panel.x_at(&xs, decade + minor);
            w!(
                out,
                "<line class=\"minor\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n",
                Px(x),
                Px(x),
                Px(panel.y),
                Px(panel.y + panel.h)
            );
        }
        decade += 1.0;
    }
    for k in 0..=(decades as u32) {
        let x = panel.x_at(&xs, f64::from(k));
        w!(
            out,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            Px(x),
            Px(x),
            Px(panel.y),
            Px(panel.y + panel.h),
            Px(x),
            Px(panel.y + panel.h + 18.0),
            nines_label(k)
        );
    }
    w!(
        out,
        "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>\n",
        Px(panel.x + panel.w / 2.0),
        Px(panel.y + panel.h + 44.0)
    );
    y_axis(out, &panel, &ys, duration_us);

    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|&(p, us)| {
            (
                panel.x_at(&xs, nines(p).min(decades)),
                panel.y_at(&ys, us as f64),
            )
        })
        .collect();
    if xy.len() > 1 {
        polyline(out, &xy, P50);
    }
    if xy.len() <= 60 {
        for &(x, y) in &xy {
            w!(
                out,
                "<circle cx=\"{}\" cy=\"{}\" r=\"2.6\" fill=\"{P50}\"/>\n",
                Px(x),
                Px(y)
            );
        }
    }
    panel.frame(out);

    // Hover targets on (at most about 400 of) the points, always including the last.
    let stride = xy.len().div_ceil(400).max(1);
    for (i, (&(x, y), &(p, us))) in xy.iter().zip(&points).enumerate() {
        if i % stride != 0 && i + 1 != xy.len() {
            continue;
        }
        w!(
            out,
            "<circle class=\"hover\" cx=\"{}\" cy=\"{}\" r=\"5\"><title>p{}: {}</title></circle>\n",
            Px(x),
            Px(y),
            trim(p, 5),
            duration_us(us as f64)
        );
    }
    out.push_str("</svg>\n");
}

/// A small plot-shaped box saying there is nothing to draw.
fn placeholder_svg(out: &mut String, title: &str, message: &str) {
    w!(
        out,
        "<svg viewBox=\"0 0 {} 130\" role=\"img\" aria-label=\"{title}\">\n\
         <text class=\"title\" x=\"{}\" y=\"24\">{title}</text>\n\
         <rect class=\"frame\" x=\"{}\" y=\"38\" width=\"{}\" height=\"80\"/>\n\
         <text x=\"{}\" y=\"82\" text-anchor=\"middle\">{message}</text>\n</svg>\n",
        Px(W),
        Px(LEFT),
        Px(LEFT),
        Px(W - LEFT - RIGHT),
        Px(LEFT + (W - LEFT - RIGHT) / 2.0)
    );
}

/// Horizontal grid lines and labels for `scale` on `panel`'s left edge.
fn y_axis(out: &mut String, panel: &Panel, scale: &Scale, label: fn(f64) -> String) {
    for v in scale.ticks() {
        let y = panel.y_at(scale, v);
        w!(
            out,
            "<line class=\"grid\" x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" dy=\".32em\" text-anchor=\"end\">{}</text>\n",
            Px(panel.x),
            Px(panel.x + panel.w),
            Px(y),
            Px(y),
            Px(panel.x - 8.0),
            Px(y),
            label(v)
        );
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], color: &str) {
    out.push_str("<polyline class=\"line\" stroke=\"");
    out.push_str(color);
    out.push_str("\" points=\"");
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        w!(out, "{},{}", Px(x), Px(y));
    }
    out.push_str("\"/>\n");
}

#[derive(Clone, Copy, Debug)]
enum Swatch {
    Line,
    Box,
}

/// A one-line legend whose right end is at `right`, text baseline at `y`.
fn legend(out: &mut String, right: f64, y: f64, items: &[(&str, &str, Swatch)]) {
    // Labels are short ASCII; about 7 units a character at 12px.
    let width = |label: &str| 20.0 + 7.0 * label.len() as f64 + 16.0;
    let mut x = right - items.iter().map(|(_, label, _)| width(label)).sum::<f64>() + 16.0;
    for &(color, label, swatch) in items {
        match swatch {
            Swatch::Line => w!(
                out,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2.5\"/>\n",
                Px(x),
                Px(x + 14.0),
                Px(y - 4.0),
                Px(y - 4.0)
            ),
            Swatch::Box => w!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"10\" fill=\"{color}\"/>\n",
                Px(x + 1.0),
                Px(y - 9.0)
            ),
        }
        w!(
            out,
            "<text x=\"{}\" y=\"{}\">{label}</text>\n",
            Px(x + 20.0),
            Px(y)
        );
        x += width(label);
    }
}

/// The plotting area of one panel, in viewBox units.
#[derive(Clone, Copy, Debug)]
struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn x_at(&self, scale: &Scale, v: f64) -> f64 {
        self.x + scale.frac(v) * self.w
    }

    fn y_at(&self, scale: &Scale, v: f64) -> f64 {
        self.y + self.h - scale.frac(v) * self.h
    }

    fn frame(&self, out: &mut String) {
        w!(
            out,
            "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
            Px(self.x),
            Px(self.y),
            Px(self.w),
            Px(self.h)
        );
    }
}

/// Maps data values onto 0..=1 along an axis and chooses its ticks.
#[derive(Clone, Copy, Debug)]
enum Scale {
    Linear {
        lo: f64,
        hi: f64,
        step: f64,
    },
    /// Powers of ten from `10^lo` to `10^hi`.
    Log {
        lo: i32,
        hi: i32,
    },
}

impl Scale {
    /// Linear from `lo` to `hi`, ticks every round step of at least `min_step`.
    fn span(lo: f64, hi: f64, min_step: f64) -> Scale {
        let lo = if lo.is_finite() { lo } else { 0.0 };
        let hi = if hi.is_finite() && hi > lo {
            hi
        } else {
            lo + min_step
        };
        let step = round_step((hi - lo) / 8.0).max(min_step);
        Scale::Linear { lo, hi, step }
    }

    /// Linear from zero to `max` rounded up to a whole step of at least `min_step`.
    fn from_zero(max: f64, min_step: f64) -> Scale {
        let max = if max.is_finite() {
            max.max(min_step)
        } else {
            min_step
        };
        let step = round_step(max / 5.0).max(min_step);
        let hi = (max / step).ceil() * step;
        Scale::Linear { lo: 0.0, hi, step }
    }

    /// A latency axis: logarithmic when the values spread over more than a factor of 20 (a tail
    /// would flatten everything else on a linear axis), else linear from zero.
    fn latency(values: impl Iterator<Item = f64>) -> Scale {
        let (mut least, mut most) = (f64::INFINITY, 0f64);
        for v in values.filter(|v| v.is_finite()) {
            if v > 0.0 {
                least = least.min(v);
            }
            most = most.max(v);
        }
        if most > 0.0 && most / least > 20.0 {
            let lo = least.log10().floor().max(-3.0) as i32;
            let hi = (most.log10().ceil() as i32).max(lo + 1);
            Scale::Log { lo, hi }
        } else {
            Scale::from_zero(most, 1.0)
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Scale::Linear { .. } => "linear scale",
            Scale::Log { .. } => "log scale",
        }
    }

    /// Where `v` falls, 0 at the start of the axis and 1 at its end; clamped, never NaN.
    fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { lo, hi, .. } => (v - lo) / (hi - lo),
            Scale::Log { lo, hi } if v > 0.0 => {
                (v.log10() - f64::from(lo)) / (f64::from(hi) - f64::from(lo))
            }
            Scale::Log { .. } => 0.0,
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match *self {
            Scale::Linear { lo, hi, step } => {
                let first = (lo / step).ceil() * step;
                (0..64)
                    .map(|i| first + f64::from(i) * step)
                    .take_while(|v| *v <= hi + step * 1e-9)
                    .collect()
            }
            Scale::Log { lo, hi } => {
                let decades = hi - lo;
                if decades <= 3 {
                    let mut ticks: Vec<f64> = (lo..hi)
                        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                        .collect();
                    ticks.push(10f64.powi(hi));
                    ticks
                } else {
                    let stride = usize::try_from((decades + 7) / 8).unwrap_or(1).max(1);
                    (lo..=hi).step_by(stride).map(|k| 10f64.powi(k)).collect()
                }
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, near `raw`.
fn round_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    m * magnitude
}

/// How many nines percentile `p` has: log10(1/(1-p)); infinite at 100.
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        f64::INFINITY
    } else {
        (100.0 / (100.0 - p)).log10()
    }
}

/// `0%`, `90%`, `99%`, `99.9%`, ... for `k` nines.
fn nines_label(k: u32) -> String {
    match k {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        2 => "99%".to_owned(),
        _ => format!("99.{}%", "9".repeat(k as usize - 2)),
    }
}

/// A viewBox coordinate: one decimal, and 0 in place of anything non-finite.
#[derive(Clone, Copy, Debug)]
struct Px(f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() {
            self.0.clamp(-1e6, 1e6)
        } else {
            0.0
        };
        let v = (v * 10.0).round() / 10.0;
        if v == 0.0 {
            f.write_str("0")
        } else {
            write!(f, "{v}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text

const DASH: &str = "&#8212;";

/// `s` made safe for HTML text and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped `s`, or a dash when it is empty.
fn or_dash(s: &str) -> String {
    if s.is_empty() {
        DASH.to_owned()
    } else {
        esc(s)
    }
}

fn mode_name(mode: &str) -> String {
    match mode {
        "closed" => "closed loop".to_owned(),
        "open" => "open loop".to_owned(),
        other => or_dash(other),
    }
}

/// `v` with at most `decimals` decimals, trailing zeros dropped; `n/a` when not finite.
fn trim(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        let kept = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(kept);
    }
    if s == "-0" {
        s.remove(0);
    }
    s
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    group_digits(&n.to_string())
}

/// Like [`trim`], with the whole part grouped by thousands.
fn group_f(v: f64, decimals: usize) -> String {
    let s = trim(v, decimals);
    if !v.is_finite() {
        return s;
    }
    let (sign, unsigned) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", s.as_str()),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let mut out = format!("{sign}{}", group_digits(whole));
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

fn group_digits(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds with a fitting unit and about three significant digits: `812 µs`, `2.45 ms`.
fn duration_us(us: f64) -> String {
    if !us.is_finite() {
        return "n/a".to_owned();
    }
    let (v, unit) = if us.abs() < 1e3 {
        (us, "µs")
    } else if us.abs() < 1e6 {
        (us / 1e3, "ms")
    } else {
        (us / 1e6, "s")
    };
    let decimals = if v.abs() < 10.0 {
        2
    } else if v.abs() < 100.0 {
        1
    } else {
        0
    };
    let number = match unit {
        // Only a broken clock gets here; keep the label short.
        "s" if v.abs() >= 1e5 => {
            let mut exponent = v.abs().log10().floor();
            let mut mantissa = (v / 10f64.powf(exponent) * 100.0).round() / 100.0;
            if mantissa.abs() >= 10.0 {
                mantissa /= 10.0;
                exponent += 1.0;
            }
            format!("{}e{exponent}", trim(mantissa, 2))
        }
        "s" => group_f(v, decimals),
        _ => trim(v, decimals),
    };
    format!("{number} {unit}")
}

fn seconds(s: f64) -> String {
    if s.is_finite() {
        format!("{} s", trim(s, 3))
    } else {
        "n/a".to_owned()
    }
}

/// A request count for an axis: `800`, `12k`, `1.5M`.
fn count_label(v: f64) -> String {
    if v.abs() < 1e4 {
        trim(v, 0)
    } else if v.abs() < 1e6 {
        format!("{}k", trim(v / 1e3, 1))
    } else if v.abs() < 1e9 {
        format!("{}M", trim(v / 1e6, 1))
    } else {
        format!("{}G", group_f(v / 1e9, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadtest::report::{Summary, FORMAT};

    /// A 30-second closed-loop run with a latency spike at second 17 and a few timeouts.
    fn sample() -> Report {
        let timeline = (0..30u32)
            .map(|i| {
                let wave = (f64::from(i) * 0.7).sin();
                let spike = i == 17;
                Second {
                    t: f64::from(i),
                    requests: (48_200.0 + 900.0 * wave) as u64 - if spike { 9_000 } else { 0 },
                    errors: if spike { 3 } else { 0 },
                    p50_us: (810.0 + 40.0 * wave) as u64,
                    p99_us: if spike {
                        14_800
                    } else {
                        (2_400.0 + 300.0 * wave) as u64
                    },
                    max_us: if spike {
                        81_234
                    } else {
                        5_600 + (u64::from(i) * 397) % 4_000
                    },
                }
            })
            .collect();
        // Percentiles as HdrHistogram's iterator yields them: ever closer to 100, halving the
        // distance every five steps, ending with the maximum at 100.
        let mut distribution: Vec<(f64, u64)> = (0..90)
            .map(|k| {
                let p = 100.0 * (1.0 - 0.5f64.powf(f64::from(k) / 5.0));
                let d = nines(p);
                (p, (420.0 + 380.0 * d + 300.0 * d * d * d) as u64)
            })
            .collect();
        distribution.push((100.0, 81_234));
        Report {
            format: FORMAT,
            scenario: "authz".to_owned(),
            target: "http://127.0.0.1:8080/v1/authz".to_owned(),
            mode: "closed".to_owned(),
            rate: None,
            connections: 64,
            threads: 2,
            protocol: "http1".to_owned(),
            streams: None,
            duration_s: 30.0,
            warmup_s: 5.0,
            mix: vec![("ES256".to_owned(), 70.0), ("RS256".to_owned(), 30.0)],
            distinct: 10_000,
            invalid_pct: 5.0,
            batch: None,
            requests: 1_446_390,
            statuses: vec![("200".to_owned(), 1_374_071), ("401".to_owned(), 72_319)],
            errors: vec![("timeout".to_owned(), 3)],
            throughput: 48_213.0,
            latency_us: Summary {
                min: 212,
                mean: 903.4,
                p50: 812,
                p90: 1_530,
                p99: 2_450,
                p999: 6_020,
                max: 81_234,
            },
            timeline,
            distribution,
            notes: vec![
                "machine: 2 cores, Linux 6.1".to_owned(),
                "tessera-loadtest --scenario authz --connections 64 --duration 30s".to_owned(),
            ],
        }
    }

    fn assert_clean(html: &str) {
        assert!(!html.contains("NaN"), "NaN in output");
        assert!(!html.contains("inf"), "inf in output");
        assert_eq!(html.matches("<svg").count(), 2, "two plots");
        assert_eq!(html.matches("</svg>").count(), 2, "two closed plots");
    }

    #[test]
    fn realistic_report_shows_plots_and_key_numbers() {
        let html = render(&sample());
        assert_clean(&html);
        assert!(html.starts_with("<!doctype html>"));
        for needle in [
            "authz",
            "http://127.0.0.1:8080/v1/authz",
            "closed loop",
            "1,446,390",
            "48,213 req/s",
            "812 µs",
            "2.45 ms",
            "6.02 ms",
            "81.2 ms",
            "212 µs",
            "903 µs",
            "timeout",
            "1,374,071",
            "ES256&nbsp;70%",
            "10,000",
            "30 s",
            "5 s",
            "99.999%",
            "<polyline",
            "machine: 2 cores",
        ] {
            assert!(html.contains(needle), "missing {needle:?}");
        }
        // The page stands alone.
        for external in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!html.contains(external), "external resource {external:?}");
        }
    }

    #[test]
    fn report_strings_are_escaped() {
        let mut report = sample();
        report.scenario = "<script>alert(\"x\")</script>".to_owned();
        report.target = "http://h/?a=1&b=<2>".to_owned();
        report.mode = "<b>odd</b>".to_owned();
        report.protocol = "h'2".to_owned();
        report.mix = vec![("<ES256>".to_owned(), 100.0)];
        report.statuses = vec![("\"200\"<".to_owned(), 1)];
        report.errors = vec![("<io>&".to_owned(), 2)];
        report.notes = vec!["'quoted' \"double\" & <i>tag</i>".to_owned()];
        let html = render(&report);
        for raw in [
            "<script>", "<b>", "<ES256>", "\"200\"<", "<io>", "<i>", "h'2",
        ] {
            assert!(!html.contains(raw), "unescaped {raw:?}");
        }
        for escaped in [
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;",
            "http://h/?a=1&amp;b=&lt;2&gt;",
            "&lt;b&gt;odd&lt;/b&gt;",
            "h&#39;2",
            "&lt;ES256&gt;",
            "&quot;200&quot;&lt;",
            "&lt;io&gt;&amp;",
            "&#39;quoted&#39; &quot;double&quot; &amp; &lt;i&gt;tag&lt;/i&gt;",
        ] {
            assert!(html.contains(escaped), "missing {escaped:?}");
        }
    }

    #[test]
    fn empty_report_renders_without_nan() {
        let html = render(&Report::default());
        assert_clean(&html);
        assert!(html.contains("No per-second data"));
        assert!(html.contains("No latency distribution"));
    }

    #[test]
    fn one_second_timeline_renders_without_nan() {
        let mut report = sample();
        report.timeline.truncate(1);
        report.distribution = vec![(50.0, 800)];
        let html = render(&report);
        assert_clean(&html);
        assert!(html.contains("<circle"), "a lone point is drawn as a dot");
    }

    #[test]
    fn zero_latencies_render_without_nan() {
        let mut report = sample();
        report.latency_us = Summary::default();
        for s in &mut report.timeline {
            s.p50_us = 0;
            s.p99_us = 0;
            s.max_us = 0;
        }
        for point in &mut report.distribution {
            point.1 = 0;
        }
        assert_clean(&render(&report));
    }

    #[test]
    fn extreme_values_render_without_nan() {
        let mut report = sample();
        report.latency_us.max = u64::MAX;
        report.latency_us.mean = f64::NAN;
        report.throughput = f64::INFINITY;
        report.rate = Some(f64::NEG_INFINITY);
        report.duration_s = f64::NAN;
        report.invalid_pct = f64::NAN;
        report.mix = vec![("ES256".to_owned(), f64::NAN)];
        report.requests = u64::MAX;
        report.timeline[3].max_us = u64::MAX;
        report.timeline[4].requests = u64::MAX;
        report.timeline[5].t = f64::NAN;
        report.timeline[6].t = -1e300;
        report.distribution.push((f64::NAN, 5));
        report.distribution.push((f64::INFINITY, 5));
        report.distribution.push((100.0, u64::MAX));
        report.distribution.push((-3.0, 0));
        assert_clean(&render(&report));
    }

    #[test]
    fn all_timeline_points_at_one_instant() {
        let mut report = sample();
        for s in &mut report.timeline {
            s.t = 7.0;
        }
        assert_clean(&render(&report));
    }

    #[test]
    fn number_formats() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_446_390), "1,446,390");
        assert_eq!(group_f(-48_213.25, 1), "-48,213.2");
        assert_eq!(group_f(0.04, 1), "0");
        assert_eq!(trim(2.50, 2), "2.5");
        assert_eq!(trim(-0.001, 1), "0");
        assert_eq!(duration_us(0.0), "0 µs");
        assert_eq!(duration_us(812.0), "812 µs");
        assert_eq!(duration_us(2_450.0), "2.45 ms");
        assert_eq!(duration_us(81_234.0), "81.2 ms");
        assert_eq!(duration_us(1_000_000.0), "1 s");
        assert_eq!(duration_us(12_345_000_000.0), "12,345 s");
        assert_eq!(duration_us(u64::MAX as f64), "1.84e13 s");
        assert_eq!(duration_us(1e20), "1e14 s");
        assert_eq!(duration_us(9.999e20), "1e15 s");
        assert_eq!(duration_us(f64::NAN), "n/a");
        assert_eq!(count_label(50_000.0), "50k");
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(3), "99.9%");
        assert_eq!(nines_label(5), "99.999%");
        assert_eq!(Px(f64::NAN).to_string(), "0");
        assert_eq!(Px(-0.01).to_string(), "0");
        assert_eq!(Px(12.345).to_string(), "12.3");
    }

    /// With `TESSERA_HTML_SAMPLE` set, writes the sample page to the temporary directory, to look
    /// at in a browser.
    #[test]
    fn sample_page() {
        if std::env::var_os("TESSERA_HTML_SAMPLE").is_some() {
            let path = std::env::temp_dir().join("tessera-loadtest-sample.html");
            std::fs::write(&path, render(&sample())).expect("the temporary directory is writable");
            println!("wrote {}", path.display());
        }
    }
}
