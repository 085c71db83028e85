"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter

SMS_RESULTS = Counter(
    "smshub_provider_sends_total", "Send attempts by provider and outcome", ["provider", "outcome"]
)
SUBMITTED = Counter("smshub_submitted_total", "Messages accepted into the outbox", ["source"])
CALLBACKS = Counter(
    "smshub_callbacks_total",
    "Provider callbacks by provider, kind and HTTP status",
    ["provider", "kind", "status"],
)
REPORTS_REJECTED = Counter(
    "smshub_reports_rejected_total",
    "Delivery reports ignored because they do not match a message the provider was handed",
    ["provider", "reason"],
)
