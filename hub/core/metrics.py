"""Prometheus metrics, exposed at /metrics (the api port) and on the ops port of every role.

Counters are process-wide: each instance reports its own, Prometheus adds them up. Gauges
about the shared outbox (queue depth, oldest queued) are computed at scrape time by
``hub.runtime.ops_http``, from the database every instance shares.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SMS_RESULTS = Counter(
    "smshub_provider_sends_total", "Send attempts by provider and outcome", ["provider", "outcome"]
)
# By door: api, console, cli, smtp, imap, calendar, campaign, reply, optout, autoreply, alert...
# Counted after the commit that queued them (hub.sending.submit), whichever door it was.
SUBMITTED = Counter("smshub_submitted_total", "Messages accepted into the outbox", ["source"])
CALLBACKS = Counter(
    "smshub_callbacks_total",
    "Provider callbacks by provider, kind and HTTP status",
    ["provider", "kind", "status"],
)
# Claims: a dispatcher renews the lease of the batch it holds while it sends; a claim whose
# lease ran out (its holder died or hung) is taken back by recovery.
CLAIMS_RENEWED = Counter(
    "smshub_claims_renewed_total", "Claimed messages whose lease this instance renewed"
)
CLAIMS_EXPIRED = Counter(
    "smshub_claims_expired_total", "Claimed messages recovered after their lease ran out"
)
PROVIDER_LATENCY = Histogram(
    "smshub_provider_send_seconds",
    "Time a provider took to answer one send request",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
REPORT_LAG = Histogram(
    "smshub_report_lag_seconds",
    "Time from handing a message to its provider to storing its delivery report",
    ["provider"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 48 * 3600),
)
# Computed at scrape time (hub.runtime.ops_http) from the shared outbox.
QUEUE_DEPTH = Gauge("smshub_queue_depth", "Messages queued and due now (every instance's)")
OLDEST_QUEUED = Gauge(
    "smshub_oldest_queued_seconds", "Age of the oldest message queued and due now (0: none)"
)
IN_FLIGHT = Gauge("smshub_submitting", "Messages claimed by a dispatcher (status submitting)")
MAIL_QUEUE_DEPTH = Gauge("smshub_mail_queue_depth", "Outgoing e-mails waiting to be delivered")
LEADER = Gauge(
    "smshub_scheduler_leader",
    "1 when this instance runs the periodic jobs (holds the leader lock), else 0",
)
READY = Gauge("smshub_ready", "1 when this instance's last readiness check passed, else 0")
REPORTS_REJECTED = Counter(
    "smshub_reports_rejected_total",
    "Delivery reports ignored because they do not match a message the provider was handed",
    ["provider", "reason"],
)
