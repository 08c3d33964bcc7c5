"""The service's metrics in the Prometheus format, counted in every process that serves.

What is counted where it happens (in the process that happens to do it: the main process, an
HL7 worker, an HTTP worker): HL7 messages by event and outcome and the time to their ACK, DICOM
associations and operations, HTTP requests by route template and status, and the refusals of
the load limits. What is a state of the database (job backlogs, the review queue, fixity
errors) is read when the metrics are scraped.

Several processes: `mpi serve` names a folder (``<data dir>/metrics``, emptied at start) in
``PROMETHEUS_MULTIPROC_DIR`` before it starts its helper processes, which inherit it; every
process then writes its counts to its own memory-mapped files there, and the scrape adds them
up (prometheus-client's multiprocess mode). Without that folder (a command, a test of one
part) the counts stay in the process.

Labels never hold patient data: an HL7 event outside the known ones is ``other``, a route is
its template, a status its code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["ServiceMetrics", "metrics", "use_metrics_directory", "leave_metrics_directory",
           "exposition", "StateReader", "CONTENT_TYPE", "MULTIPROCESS_VARIABLE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# The HL7 events a label may name (message type^trigger); anything else is "other", so that a
# sender cannot make the series grow without bound.
_HL7_TYPES = frozenset({"ADT", "QBP", "ACK"})
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The counters and histograms of one process (see :func:`metrics`)."""

    def __init__(self) -> None:
        self.hl7_messages = Counter(
            "mpi_hl7_messages", "HL7 v2 messages answered, by event and ACK code",
            ["event", "outcome"], registry=None)
        self.hl7_ack_seconds = Histogram(
            "mpi_hl7_ack_seconds", "Seconds from a message's receipt to its ACK",
            registry=None, buckets=_ACK_BUCKETS)
        self.mllp_refused = Counter(
            "mpi_mllp_connections_refused", "MLLP connections closed at once: too many open",
            registry=None)
        self.dicom_associations = Counter(
            "mpi_dicom_associations", "DICOM associations, accepted or rejected (and why)",
            ["outcome"], registry=None)
        self.dicom_operations = Counter(
            "mpi_dicom_operations", "DIMSE operations answered, by operation and outcome "
            "(a C-STORE's status code)", ["operation", "outcome"], registry=None)
        self.http_requests = Counter(
            "mpi_http_requests", "HTTP requests answered, by method, route template and "
            "status", ["method", "route", "status"], registry=None)
        self.http_seconds = Histogram(
            "mpi_http_request_seconds", "Seconds to answer an HTTP request, by route template",
            ["route"], registry=None, buckets=_ACK_BUCKETS)
        self.http_overloaded = Counter(
            "mpi_http_overloaded", "HTTP requests answered 503: too many at once",
            registry=None)

    def collectors(self) -> tuple[Collector, ...]:
        return (self.hl7_messages, self.hl7_ack_seconds, self.mllp_refused,
                self.dicom_associations, self.dicom_operations, self.http_requests,
                self.http_seconds, self.http_overloaded)

    def hl7_message(self, message_type: str | None, outcome: str, seconds: float) -> None:
        """Count one answered HL7 message (``ADT^A28^ADT_A05``: its event is ``ADT^A28``)."""
        parts = (message_type or "").split("^")
        event = "^".join(parts[:2]) if parts[0] in _HL7_TYPES and len(parts) >= 2 else "other"
        if not (len(event) <= 7 and event.replace("^", "").isalnum()):
            event = "other"
        self.hl7_messages.labels(event, outcome if outcome in ("AA", "AE", "AR") else "other").inc()
        self.hl7_ack_seconds.observe(seconds)

    def dicom_operation(self, operation: str, outcome: str | int) -> None:
        shown = f"0x{outcome:04X}" if isinstance(outcome, int) else outcome
        self.dicom_operations.labels(operation, shown).inc()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)


_lock = threading.Lock()
_current: ServiceMetrics | None = None


def metrics() -> ServiceMetrics:
    """This process's metrics, made on first use (in the folder of
    ``PROMETHEUS_MULTIPROC_DIR`` when it is set)."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                values.ValueClass = values.get_value_class()
                _current = ServiceMetrics()
    return _current


def use_metrics_directory(directory: Path) -> None:
    """Count in ``directory`` from now on, in this process and the processes it starts:
    the folder is made, or emptied of an earlier run's files (whose processes are gone)."""
    global _current
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink(missing_ok=True)
    with _lock:
        os.environ[MULTIPROCESS_VARIABLE] = str(directory.resolve())
        _current = None


def leave_metrics_directory() -> None:
    """Count in this process again (when the service that named the folder stops)."""
    global _current
    with _lock:
        os.environ.pop(MULTIPROCESS_VARIABLE, None)
        _current = None


# A reader of the database's state at scrape time: gauges as (name, help, labels, value);
# a value None (unknown now: the database is down) leaves the sample out.
StateReader = Callable[[], Iterable[tuple[str, str, dict[str, str], float | None]]]


class _StateCollector(Collector):
    def __init__(self, read: StateReader) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, documentation, labels, value in self.read():
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, documentation,
                                                             labels=sorted(labels))
            if value is not None:
                family.add_metric([labels[key] for key in sorted(labels)], value)
        return list(families.values())


def exposition(state: StateReader | None = None) -> bytes:
    """The text a scrape gets: every process's counts (one process's, when no folder is
    named), and the state ``state`` reads now."""
    registry = CollectorRegistry(auto_describe=False)
    folder = os.environ.get(MULTIPROCESS_VARIABLE)
    current = metrics()
    if folder and os.path.isdir(folder):
        MultiProcessCollector(registry, path=folder)
    else:
        for collector in current.collectors():
            registry.register(collector)
    if state is not None:
        registry.register(_StateCollector(state))
    return generate_latest(registry)
