"""Prometheus metrics, served at `/metrics` (cezbek/health.py).

What is exposed:
- `cezbek_http_request_duration_seconds{view, method, status}` — histogram of every request's
  latency, recorded by `cezbek.middleware.RequestMetricsMiddleware`. `view` is the URL pattern's
  name (`cashbacks`, `customer-tier`, `admin:index`, …), `unmatched` when no pattern matched.
- `cezbek_payouts{state, provider}` and `cezbek_payouts_amount_idr{state, provider}` — how many
  payouts are in each state, per provider (`none` before a route was chosen), and their total;
  computed at scrape time from the database with one GROUP BY.
- `cezbek_celery_queue_depth{queue}` — tasks waiting in each Celery queue, read from the broker at
  scrape time (a passive queue declare: LLEN over the queue's priority lists on Redis, a count of
  the queue's message files on the filesystem broker, the broker's own count on AMQP). Tasks a
  worker has already taken — including those with a countdown, which Redis hands to a worker at
  once — are not waiting and not counted.
- `cezbek_metrics_source_up{source}` — 1 when the database / broker answered this scrape, else 0
  (the gauges that need it are then absent, and the reason is logged).

Several gunicorn workers: each worker process records latency in its own memory, so a scrape
answered by one worker would see only its share. With `PROMETHEUS_MULTIPROC_DIR` set
(gunicorn.conf.py sets it to a fresh directory for each server unless the environment names one),
prometheus_client's multiprocess mode keeps every process's samples in files there and `/metrics`
merges them; gunicorn's `child_exit` hook does the bookkeeping for a dead worker. Without it (tests,
`manage.py runserver`) the process's own registry is served, with the process and GC collectors.
The scrape-time gauges are computed by whichever process answers, so they are the same either way.
"""

import logging
import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger("cezbek.metrics")

UNMATCHED_VIEW = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_PROVIDER = "none"

REQUEST_LATENCY = Histogram(
    "cezbek_http_request_duration_seconds",
    "Latency of HTTP requests, from the first middleware to the response, by view, method and status.",
    ["view", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def request_observe(*, view: str, method: str, status: int, seconds: float) -> None:
    """Records one request (unknown methods are counted as OTHER, to keep the label set small)."""
    REQUEST_LATENCY.labels(view, method if method in METHODS else "OTHER", str(status)).observe(seconds)


def payout_totals() -> list[tuple[str, str, int, float]]:
    """(state, provider code or `none`, count, total amount) for every state and provider with payouts."""
    from django.db.models import Count, Sum

    from wallets.models import Payout

    rows = (
        Payout.objects.order_by()  # the model's default ordering would split the groups
        .values_list("status", "provider__code")
        .annotate(count=Count("id"), total=Sum("amount"))
    )
    return [(status, provider or NO_PROVIDER, count, float(total)) for status, provider, count, total in rows]


def queue_depths(*, timeout: float = 2.0) -> dict[str, int]:
    """Messages waiting in each of the app's Celery queues, read from the broker."""
    from django.conf import settings
    from kombu.exceptions import ChannelError

    from cezbek.celery import app

    depths = {}
    with broker_connection(url=settings.CELERY_BROKER_URL, timeout=timeout) as connection:
        connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        for queue in sorted(app.amqp.queues):
            try:
                depths[queue] = connection.default_channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError as exc:
                if not queue_missing(exc):
                    raise
                depths[queue] = 0  # Redis keeps no empty list: a queue nobody wrote to yet holds nothing
    return depths


def broker_connection(*, url: str, timeout: float):
    """A kombu connection to the broker that gives up after `timeout` seconds instead of retrying."""
    from cezbek.celery import app

    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    return app.connection_for_read(url, connect_timeout=timeout, transport_options=options)


def queue_missing(exc: Exception) -> bool:
    return str(getattr(exc, "reply_code", "")) == "404" or getattr(exc, "code", None) == 404


class ScrapeTimeCollector:
    """Gauges read from the database and the broker when Prometheus scrapes."""

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("cezbek_metrics_source_up", "1 when the source answered this scrape, else 0.", labels=["source"])
        try:
            totals = payout_totals()
        except Exception:  # a scrape still answers, with the HTTP metrics, when the database is down
            logger.exception("metrics: payouts could not be counted")
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            count = GaugeMetricFamily("cezbek_payouts", "Payouts in each state, by provider (none: no route chosen yet).", labels=["state", "provider"])
            amount = GaugeMetricFamily("cezbek_payouts_amount_idr", "Total amount of the payouts in each state, by provider, in rupiah.", labels=["state", "provider"])
            for state, provider, n, total in totals:
                count.add_metric([state, provider], n)
                amount.add_metric([state, provider], total)
            yield count
            yield amount
        try:
            depths = queue_depths()
        except Exception:  # idem when the broker is down
            logger.exception("metrics: queue depth could not be read from the broker")
            up.add_metric(["broker"], 0)
        else:
            up.add_metric(["broker"], 1)
            depth = GaugeMetricFamily("cezbek_celery_queue_depth", "Tasks waiting in the Celery queue for a worker.", labels=["queue"])
            for queue, n in depths.items():
                depth.add_metric([queue], n)
            yield depth
        yield up


class _Scrape:
    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def scrape() -> _Scrape:
    """Everything one scrape exposes: every process's request metrics, then the scrape-time gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    return _Scrape(processes, ScrapeTimeCollector())
