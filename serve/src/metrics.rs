//! Prometheus metrics, written in the text exposition format by hand (a few counters and
//! histograms do not need a client library).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds of the batch size histogram.
const BATCH_BUCKETS: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
/// The window `atelier_images_per_second` averages over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Histogram {
    /// Counts per bucket (not cumulative), plus one for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len() + 1];
        }
        let bucket = bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// Requests by (route, status).
    requests: BTreeMap<(String, u16), u64>,
    /// Latency by route.
    latency: BTreeMap<String, Histogram>,
    batches: Histogram,
    network_seconds: f64,
    images: u64,
    /// When recent images finished, for the rate.
    recent: VecDeque<Instant>,
}

/// The server's counters, shared by the handlers and the network worker.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        *inner
            .requests
            .entry((route.to_string(), status))
            .or_default() += 1;
        inner
            .latency
            .entry(route.to_string())
            .or_default()
            .observe(&LATENCY_BUCKETS, seconds);
    }

    /// A network call of `size` images that took `seconds`.
    pub fn record_batch(&self, size: usize, seconds: f64) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.batches.observe(&BATCH_BUCKETS, size as f64);
        inner.network_seconds += seconds;
        inner.images += size as u64;
        let now = Instant::now();
        for _ in 0..size {
            inner.recent.push_back(now);
        }
        prune(&mut inner.recent, now);
    }

    /// The text exposition format; `queue_depth` and `in_flight` are read by the caller.
    pub fn render(&self, queue_depth: usize, in_flight: usize) -> String {
        let mut out = String::new();
        let Ok(mut inner) = self.inner.lock() else {
            return out;
        };
        let now = Instant::now();
        prune(&mut inner.recent, now);
        out.push_str(
            "# HELP atelier_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE atelier_requests_total counter\n");
        for ((route, status), count) in &inner.requests {
            let _ = writeln!(
                out,
                "atelier_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP atelier_request_duration_seconds Time from request to answer.\n");
        out.push_str("# TYPE atelier_request_duration_seconds histogram\n");
        for (route, histogram) in &inner.latency {
            let labels = format!("route=\"{route}\"");
            histogram.write(
                &mut out,
                "atelier_request_duration_seconds",
                &labels,
                &LATENCY_BUCKETS,
            );
        }
        out.push_str("# HELP atelier_queue_depth Images waiting for the network.\n");
        out.push_str("# TYPE atelier_queue_depth gauge\n");
        let _ = writeln!(out, "atelier_queue_depth {queue_depth}");
        out.push_str(
            "# HELP atelier_requests_in_flight Stylize requests admitted and not yet answered.\n",
        );
        out.push_str("# TYPE atelier_requests_in_flight gauge\n");
        let _ = writeln!(out, "atelier_requests_in_flight {in_flight}");
        out.push_str("# HELP atelier_batch_size Images per network call.\n");
        out.push_str("# TYPE atelier_batch_size histogram\n");
        inner
            .batches
            .write(&mut out, "atelier_batch_size", "", &BATCH_BUCKETS);
        out.push_str("# HELP atelier_images_total Images stylized.\n");
        out.push_str("# TYPE atelier_images_total counter\n");
        let _ = writeln!(out, "atelier_images_total {}", inner.images);
        out.push_str("# HELP atelier_network_seconds_total Time spent in network calls, summed over the workers.\n");
        out.push_str("# TYPE atelier_network_seconds_total counter\n");
        let _ = writeln!(
            out,
            "atelier_network_seconds_total {}",
            inner.network_seconds
        );
        out.push_str(
            "# HELP atelier_images_per_second Images stylized per second over the last 10 s.\n",
        );
        out.push_str("# TYPE atelier_images_per_second gauge\n");
        let rate = inner.recent.len() as f64 / RATE_WINDOW.as_secs_f64();
        let _ = writeln!(out, "atelier_images_per_second {rate}");
        out
    }
}

fn prune(recent: &mut VecDeque<Instant>, now: Instant) {
    while recent
        .front()
        .is_some_and(|&t| now.duration_since(t) > RATE_WINDOW)
    {
        recent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let metrics = Metrics::default();
        metrics.record_request("/v1/stylize", 200, 0.2);
        metrics.record_request("/v1/stylize", 200, 3.0);
        metrics.record_request("/v1/stylize", 503, 0.001);
        metrics.record_batch(4, 0.5);
        let text = metrics.render(2, 3);
        assert!(text.contains("atelier_requests_total{route=\"/v1/stylize\",status=\"200\"} 2\n"));
        assert!(text.contains("atelier_requests_total{route=\"/v1/stylize\",status=\"503\"} 1\n"));
        assert!(text.contains(
            "atelier_request_duration_seconds_bucket{route=\"/v1/stylize\",le=\"0.25\"} 2\n"
        ));
        assert!(text.contains(
            "atelier_request_duration_seconds_bucket{route=\"/v1/stylize\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("atelier_batch_size_bucket{le=\"2\"} 0\n"));
        assert!(text.contains("atelier_batch_size_bucket{le=\"4\"} 1\n"));
        assert!(text.contains("atelier_queue_depth 2\n"));
        assert!(text.contains("atelier_images_total 4\n"));
        assert!(text.contains("atelier_images_per_second 0.4\n"));
    }
}
