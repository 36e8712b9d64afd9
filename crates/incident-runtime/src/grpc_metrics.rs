//! Latency histograms of gRPC requests by method, measured in a tower layer in front of the
//! routes (time to the response headers) and written in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Bucket upper bounds, seconds.
pub const BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct GrpcMetrics {
    by_method: Mutex<BTreeMap<String, Histogram>>,
}

impl GrpcMetrics {
    pub fn record(&self, path: &str, seconds: f64) {
        // only known services get their own label, so random paths cannot grow the map
        let method = if path.starts_with("/incident.v1.") || path.starts_with("/grpc.") {
            path
        } else {
            "other"
        };
        if let Ok(mut m) = self.by_method.lock() {
            let h = m.entry(method.to_owned()).or_default();
            for (i, bound) in BOUNDS.iter().enumerate() {
                if seconds <= *bound {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// Appends `incident_grpc_request_duration_seconds` to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        let name = "incident_grpc_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} gRPC request latency to the response headers, by method."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        let Ok(m) = self.by_method.lock() else { return };
        for (method, h) in m.iter() {
            for (bound, n) in BOUNDS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{method=\"{method}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "{name}_sum{{method=\"{method}\"}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{method=\"{method}\"}} {}", h.count);
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<GrpcMetrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Measured<S>;
    fn layer(&self, inner: S) -> Measured<S> {
        Measured {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, B> tower_service::Service<http::Request<B>> for Measured<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            metrics.record(&path, started.elapsed().as_secs_f64());
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_unknown_paths_share_a_label() {
        let m = GrpcMetrics::default();
        m.record("/incident.v1.IntakeService/OpenIncident", 0.003);
        m.record("/incident.v1.IntakeService/OpenIncident", 0.2);
        m.record("/random/garbage", 0.001);
        m.record("/more/garbage", 0.001);
        let mut out = String::new();
        m.render(&mut out);
        let open = "method=\"/incident.v1.IntakeService/OpenIncident\"";
        assert!(
            out.contains(&format!("_bucket{{{open},le=\"0.005\"}} 1")),
            "{out}"
        );
        assert!(
            out.contains(&format!("_bucket{{{open},le=\"0.25\"}} 2")),
            "{out}"
        );
        assert!(out.contains(&format!("_count{{{open}}} 2")), "{out}");
        assert!(out.contains("_count{method=\"other\"} 2"), "{out}");
    }
}
