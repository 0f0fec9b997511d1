//! Prometheus metrics: one registry per process, served at `/metrics`.
//!
//! The HTTP families live here; each service registers its own families
//! into the same registry when it starts.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The path with ids replaced by `{id}`, to keep cardinality bounded.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("duet");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", http_requests.clone());
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        registry.register("http_request_duration_seconds", "HTTP request latency", http_duration.clone());
        Metrics { registry: Mutex::new(registry), http_requests, http_duration }
    }

    /// Adds a service's metric to the process registry.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().expect("metrics registry poisoned").register(name, help, metric);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String");
        out
    }
}

/// Buckets from 100 µs to about 26 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 19)
}

/// The routes a process serves, as the `route` label names them
/// (`/conversations/{id}/messages`). Any other path is labelled
/// `unmatched`, so requests to made-up paths cannot grow the metrics.
/// Each route keeps the methods it answers, for the `Allow` header of a 405.
#[derive(Clone, Debug, Default)]
pub struct Routes(std::collections::HashMap<String, String>);

impl Routes {
    /// `templates`: each route template with the methods it answers (`GET`, `POST`, …).
    pub fn new<M: AsRef<str>>(templates: impl IntoIterator<Item = (String, Vec<M>)>) -> Self {
        let allow = |methods: Vec<M>| {
            let mut methods: Vec<String> = methods.iter().map(|m| m.as_ref().to_ascii_uppercase()).collect();
            methods.sort();
            methods.dedup();
            methods.join(", ")
        };
        Routes(templates.into_iter().map(|(route, methods)| (route_label(&route), allow(methods))).collect())
    }

    /// The methods `route` (a label) answers, as an `Allow` header value.
    pub fn allow(&self, route: &str) -> Option<&str> {
        self.0.get(route).map(String::as_str)
    }

    /// The label of a request to `path`.
    pub fn label(&self, path: &str) -> String {
        let route = route_of(path);
        if self.0.contains_key(&route) { route } else { "unmatched".to_owned() }
    }
}

/// A route template as its label: every parameter reads `{id}`, as
/// [`route_of`] writes an id (`/conversations/{id}/messages/{messageId}` →
/// `/conversations/{id}/messages/{id}`).
pub fn route_label(template: &str) -> String {
    let segments: Vec<&str> =
        template.split('/').map(|segment| if segment.starts_with('{') && segment.ends_with('}') { "{id}" } else { segment }).collect();
    segments.join("/")
}

/// `/conversations/3f0c…/messages` → `/conversations/{id}/messages`.
fn route_of(path: &str) -> String {
    let mut route = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        route.push('/');
        if uuid::Uuid::parse_str(segment).is_ok() || segment.parse::<u64>().is_ok() {
            route.push_str("{id}");
        } else {
            route.push_str(segment);
        }
    }
    if route.is_empty() { "/".into() } else { route }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_of_hides_ids() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(super::route_of(&format!("/conversations/{id}/messages")), "/conversations/{id}/messages");
        assert_eq!(super::route_of("/"), "/");
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let routes = super::Routes::new([("/conversations/{id}/messages/{messageId}".to_owned(), vec!["patch", "delete"])]);
        assert_eq!(routes.label(&format!("/conversations/{a}/messages/{b}")), "/conversations/{id}/messages/{id}");
        assert_eq!(routes.allow("/conversations/{id}/messages/{id}"), Some("DELETE, PATCH"));
    }

    #[test]
    fn unknown_paths_share_one_label() {
        let routes = super::Routes::new([("/conversations/{id}".to_owned(), vec!["get", "post"])]);
        assert_eq!(routes.allow("/conversations/{id}"), Some("GET, POST"));
        assert_eq!(routes.label(&format!("/conversations/{}", uuid::Uuid::new_v4())), "/conversations/{id}");
        assert_eq!(routes.label("/conversations/not-an-id"), "unmatched");
        assert_eq!(routes.label("/random/404"), "unmatched");
    }
}
