"""Observability: the appliance's Prometheus metrics and their scrape endpoint."""

from appliance.metrics.registry import DIRECTIONS, METHODS, MODES, REJECT_REASONS, ROUTES, Metrics
from appliance.metrics.server import CONTENT_TYPE, MetricsServer, start_metrics_server

__all__ = [
    "CONTENT_TYPE",
    "DIRECTIONS",
    "METHODS",
    "MODES",
    "REJECT_REASONS",
    "ROUTES",
    "Metrics",
    "MetricsServer",
    "start_metrics_server",
]
