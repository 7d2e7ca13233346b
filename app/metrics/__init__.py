"""Metrics: OpenTelemetry instruments exported at ``/metrics``, samples and the metrics page."""
