//! Prometheus metrics. Labels are bounded: plugin codes, statuses, reasons,
//! HTTP methods and route templates; never ids.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `warden_executions_total` | counter | plugin, status |
//! | `warden_execution_duration_seconds` | histogram | plugin |
//! | `warden_executions_rejected_total` | counter | reason |
//! | `warden_executions_in_flight` | gauge | |
//! | `warden_plugin_failures_total` | counter | plugin, reason |
//! | `warden_plugin_active_count` | gauge | trust_level |
//! | `warden_plugin_load_duration_ms` | histogram | trust_level (verify, unpack, compile schemas and wasm: once per version and node) |
//! | `warden_plugin_versions` | gauge | status |
//! | `warden_pool_boxes` | gauge | state (idle, busy, starting) |
//! | `warden_sandbox_process_restarts_total` | counter | |
//! | `warden_warm_calls_total`, `warden_cold_fallbacks_total` | counter | |
//! | `warden_http_requests_total` | counter | method, route, status |
//! | `warden_http_request_duration_seconds` | histogram | method, route |

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use warden_core::Store;

use crate::AppState;
use crate::error::{Outcome, PluginFailure};

/// The process-wide recorder (installed once; tests start many servers).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_ms".into()),
                        &[
                            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => {
                    // Histogram samples wait in the recorder until a scrape
                    // or an upkeep drains them: without this, a node nobody
                    // scrapes keeps every request's samples.
                    let upkeep = h.clone();
                    let _ = std::thread::Builder::new()
                        .name("warden-metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        });
                    h
                }
                // Another recorder is installed (embedding): keep a private one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Update the gauges that are read rather than counted.
pub async fn refresh(s: &AppState) {
    let pool = s.runner.pool_stats();
    metrics::gauge!("warden_pool_boxes", "state" => "idle").set(pool.idle as f64);
    metrics::gauge!("warden_pool_boxes", "state" => "busy").set(pool.busy as f64);
    metrics::gauge!("warden_pool_boxes", "state" => "starting").set(pool.starting as f64);
    metrics::counter!("warden_sandbox_process_restarts_total").absolute(pool.restarts_total);
    metrics::counter!("warden_warm_calls_total").absolute(pool.warm_calls_total);
    metrics::counter!("warden_cold_fallbacks_total").absolute(pool.cold_fallbacks_total);
    metrics::gauge!("warden_executions_in_flight").set(s.exec.in_flight() as f64);
    if let Ok(counts) = s.store.counts().await {
        for level in warden_core::TrustLevel::NAMES {
            let n = counts
                .active_by_trust
                .iter()
                .find(|(t, _)| t.as_str() == *level)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("warden_plugin_active_count", "trust_level" => *level).set(n as f64);
        }
        for status in ["draft", "pending", "active", "rejected", "inactive", "failed"] {
            let n = counts
                .versions
                .iter()
                .find(|(st, _)| st.as_str() == status)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("warden_plugin_versions", "status" => status).set(n as f64);
        }
    }
}

/// Count one plugin failure: the one place `warden_plugin_failures_total`
/// is incremented (executions that fail, and requests whose answer carries
/// a [`PluginFailure`], such as an integrity failure).
pub fn plugin_failure(failure: PluginFailure) {
    metrics::counter!("warden_plugin_failures_total", "plugin" => failure.plugin, "reason" => failure.reason)
        .increment(1);
}

/// Count and time every request by its route template, and count the
/// plugin failure its answer carries, if any (see [`crate::error::Outcome`]).
pub async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    if let Some(failure) = response
        .extensions()
        .get::<Outcome>()
        .and_then(|o| o.plugin_failure.clone())
    {
        plugin_failure(failure);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("warden_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("warden_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
