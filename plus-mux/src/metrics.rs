//! Every connection's counters through the `metrics` facade (feature `metrics`), summed over
//! the process's connections, so any exporter (Prometheus and others) can publish them.
//!
//! Counters: `plus_mux_requests_sent_total`, `plus_mux_requests_served_total`,
//! `plus_mux_timeouts_total`, `plus_mux_late_responses_total`, `plus_mux_protocol_errors_total`,
//! `plus_mux_handler_errors_total`, `plus_mux_oversized_frames_total`,
//! `plus_mux_over_budget_frames_total`, `plus_mux_bytes_in_total`, `plus_mux_bytes_out_total`.
//! Gauges: `plus_mux_connections_open`, `plus_mux_in_flight` (peer requests being handled),
//! `plus_mux_pending` (our requests awaiting an answer).

use std::time::Duration;

use metrics::{counter, gauge};
use tokio::sync::watch;

use crate::counters::Counters;
use crate::error::CloseReason;

/// How often a connection adds what changed: often enough for any scrape interval, and never on
/// the request path.
const INTERVAL: Duration = Duration::from_secs(1);

/// A series' name and how to read its value from a connection's [`Counters`].
type Series = (&'static str, fn(&Counters) -> u64);

/// Each counter series.
const TOTALS: [Series; 10] = [
    ("plus_mux_requests_sent_total", |c| c.requests_sent),
    ("plus_mux_requests_served_total", |c| c.requests_served),
    ("plus_mux_timeouts_total", |c| c.timeouts),
    ("plus_mux_late_responses_total", |c| c.late_responses),
    ("plus_mux_protocol_errors_total", |c| c.protocol_errors),
    ("plus_mux_handler_errors_total", |c| c.handler_errors),
    ("plus_mux_oversized_frames_total", |c| c.oversized_frames),
    ("plus_mux_over_budget_frames_total", |c| c.over_budget_frames),
    ("plus_mux_bytes_in_total", |c| c.bytes_in),
    ("plus_mux_bytes_out_total", |c| c.bytes_out),
];

/// Each gauge series (this connection's share of it) and how to read it.
const LEVELS: [Series; 2] =
    [("plus_mux_in_flight", |c| c.in_flight), ("plus_mux_pending", |c| c.pending)];

/// Runs for the life of one connection: adds its changes every [`INTERVAL`] and once more when
/// it closes, then takes its share out of the gauges.
pub(crate) async fn report(
    read: impl Fn() -> Option<(Counters, bool)>,
    mut closed: watch::Receiver<Option<CloseReason>>,
) {
    gauge!("plus_mux_connections_open").increment(1.0);
    let mut last = Counters::default();
    // The connection's counters and whether it is closed, while it exists.
    while let Some((now, is_closed)) = read() {
        add_changes(&last, &now);
        last = now;
        if is_closed {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(INTERVAL) => {}
            _ = closed.wait_for(Option::is_some) => {}
        }
    }
    for (name, read) in LEVELS {
        gauge!(name).decrement(read(&last) as f64);
    }
    gauge!("plus_mux_connections_open").decrement(1.0);
}

fn add_changes(before: &Counters, now: &Counters) {
    for (name, read) in TOTALS {
        let change = read(now).saturating_sub(read(before));
        if change > 0 {
            counter!(name).increment(change);
        }
    }
    for (name, read) in LEVELS {
        let change = read(now) as f64 - read(before) as f64;
        if change != 0.0 {
            gauge!(name).increment(change);
        }
    }
}
