//! The gateway's Prometheus families, registered in the process registry.

use duet_common::metrics::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub code: u16,
}

#[derive(Clone, Default)]
pub struct GatewayMetrics {
    /// Open WebSocket connections (authenticated or not).
    pub connections: Gauge,
    /// Connections the server closed, by close code.
    pub closes: Family<CloseLabels, Counter>,
    /// `chat.message.new` frames pushed live.
    pub pushed: Counter,
    /// Messages pushed from PostgreSQL to fill a gap in live delivery.
    pub filled: Counter,
    /// Handshakes refused (rate limit or origin).
    pub refused: Counter,
}

impl GatewayMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let m = GatewayMetrics::default();
        metrics.register("ws_connections", "Open WebSocket connections", m.connections.clone());
        metrics.register("ws_closes", "WebSocket connections closed by the server, by close code", m.closes.clone());
        metrics.register("ws_messages_pushed", "Messages pushed live", m.pushed.clone());
        metrics.register("ws_messages_filled", "Messages pushed from PostgreSQL to fill live gaps", m.filled.clone());
        metrics.register("ws_handshakes_refused", "WebSocket handshakes refused", m.refused.clone());
        m
    }

    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&CloseLabels { code }).inc();
    }
}
