//! Prometheus text exposition of the server's state: requests by route and status,
//! tokens, queue depth, running sequences, KV blocks, prefix-cache hits, and the
//! time-to-first-token and inter-token latency histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use wazn_engine::ServiceCounters;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram of durations.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or under each bound of [`LATENCY_BUCKETS_S`].
    counts: [u64; LATENCY_BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(self.counts.iter_mut()) {
            if s <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum_s += s;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(self.counts.iter()) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum_s);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Answers by (route, status code).
    requests: BTreeMap<(String, u16), u64>,
    ttft: Histogram,
    inter_token: Histogram,
}

/// What the HTTP side measures; the engine side is read from [`ServiceCounters`].
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner
                .requests
                .entry((route.to_string(), status))
                .or_default() += 1;
        }
    }

    pub fn observe_ttft(&self, d: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.ttft.observe(d);
        }
    }

    pub fn observe_inter_token(&self, d: Duration) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.inter_token.observe(d);
        }
    }

    /// The Prometheus text of everything.
    pub fn render(&self, engine: &ServiceCounters) -> String {
        let mut out = String::new();
        let load = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        let load64 = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let used = load(&engine.kv_blocks_used);
        let total = load(&engine.kv_blocks_total);
        let lookups = load64(&engine.prefix_lookup_tokens);
        let hits = load64(&engine.prefix_hit_tokens);
        let hit_rate = if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        };
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        metric(
            "wazn_prompt_tokens_total",
            "counter",
            "Prompt tokens computed.",
            load64(&engine.prompt_tokens).to_string(),
        );
        metric(
            "wazn_generation_tokens_total",
            "counter",
            "Tokens generated.",
            load64(&engine.generated_tokens).to_string(),
        );
        metric(
            "wazn_queue_depth",
            "gauge",
            "Requests waiting for a place in the engine.",
            load(&engine.queued).to_string(),
        );
        metric(
            "wazn_running_sequences",
            "gauge",
            "Sequences being computed.",
            load(&engine.running).to_string(),
        );
        metric(
            "wazn_kv_blocks_used",
            "gauge",
            "KV cache blocks held by running sequences.",
            used.to_string(),
        );
        metric(
            "wazn_kv_blocks_free",
            "gauge",
            "KV cache blocks available (including cached prefixes that may be evicted).",
            total.saturating_sub(used).to_string(),
        );
        metric(
            "wazn_prefix_cache_queries_total",
            "counter",
            "Prompt tokens looked up in the prefix cache.",
            lookups.to_string(),
        );
        metric(
            "wazn_prefix_cache_hits_total",
            "counter",
            "Prompt tokens found in the prefix cache (not computed again).",
            hits.to_string(),
        );
        metric(
            "wazn_prefix_cache_hit_rate",
            "gauge",
            "Share of looked-up prompt tokens found in the prefix cache.",
            hit_rate.to_string(),
        );
        metric(
            "wazn_engine_steps_total",
            "counter",
            "Steps of the engine loop.",
            load64(&engine.steps).to_string(),
        );
        if let Ok(inner) = self.inner.lock() {
            let _ = writeln!(
                out,
                "# HELP wazn_requests_total HTTP requests answered, by route and status."
            );
            let _ = writeln!(out, "# TYPE wazn_requests_total counter");
            for ((route, status), n) in &inner.requests {
                let _ = writeln!(
                    out,
                    "wazn_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
            inner.ttft.render(
                &mut out,
                "wazn_time_to_first_token_seconds",
                "Time from a request's arrival to its first generated token.",
            );
            inner.inter_token.render(
                &mut out,
                "wazn_inter_token_latency_seconds",
                "Time between consecutive generated tokens of a sequence.",
            );
        }
        out
    }
}
