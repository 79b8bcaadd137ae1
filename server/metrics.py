"""What ``GET /metrics`` shows, in Prometheus's text format, through prometheus_client.

A leaf: it imports nothing of gossipy. The parts call into it, never the reverse:

* the per-message paths (a websocket's reads and flushes, a socket's joins, pubsub's
  broadcasts) add to plain int attributes of the :class:`Counts` they were handed. An
  attribute add costs a few tens of nanoseconds, where a prometheus_client ``Counter.inc``
  takes a lock; a delivery to one socket must not pay that (bench/README.md, "Figures behind
  the code's choices");
* what other parts already know (how many websockets are open, the cluster's links) is read
  from them when Prometheus scrapes, through the callables of :class:`Sources`.

One :class:`Metrics` per server, each with its own ``CollectorRegistry`` (never the global
default), so several nodes in one test process keep their numbers apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Counts:
    """Totals since the node started, added to by the parts that see each event."""

    __slots__ = ("messages_received", "messages_sent", "written_bytes", "slow_consumers",
                 "joins", "channels", "local_broadcasts")

    def __init__(self) -> None:
        # websocket messages (data and control) read from clients, and written to them
        self.messages_received = 0
        self.messages_sent = 0
        self.written_bytes = 0
        self.slow_consumers = 0
        self.joins = 0
        # channels joined now: a gauge, added to on a join and taken from when a channel ends
        self.channels = 0
        # broadcasts published on this node (by a channel or the backend API; not the server's
        # own, such as presence's, on reserved topics)
        self.local_broadcasts = 0


def _none() -> Mapping[str, int]:
    return {}


def _zero() -> int:
    return 0


@dataclass(frozen=True)
class Sources:
    """Read at scrape time. The cluster's default to nothing, as on a node that is not
    distributed."""

    connections: Callable[[], int]
    # broadcasts that arrived from peer nodes
    peer_broadcasts: Callable[[], int] = _zero
    # peer node name -> bytes waiting in its send queue, for each peer link that is up
    peer_queues: Callable[[], Mapping[str, int]] = _none
    # handshake Reason value -> refusals since the node started
    refusals: Callable[[], Mapping[str, int]] = _none


class Metrics:
    """``Metrics(Sources(...))``: ``counts`` for the parts to add to, ``exposition()`` for
    the handler."""

    def __init__(self, sources: Sources) -> None:
        self.counts = Counts()
        self.sources = sources
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        # CPU seconds, resident memory and open descriptors (against the limit) of the process.
        ProcessCollector(namespace="gossipy", registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counts, sources = self._metrics.counts, self._metrics.sources
        yield GaugeMetricFamily("gossipy_websocket_connections", "Websockets open now.",
                                sources.connections())
        yield CounterMetricFamily("gossipy_websocket_messages_received", "Websocket messages read from clients "
                                  "(data and control).", counts.messages_received)
        yield CounterMetricFamily("gossipy_websocket_messages_sent", "Websocket messages written to clients "
                                  "(data and control).", counts.messages_sent)
        yield CounterMetricFamily("gossipy_websocket_written_bytes", "Bytes of websocket frames written to "
                                  "clients.", counts.written_bytes)
        yield CounterMetricFamily("gossipy_websocket_slow_consumers_dropped", "Websockets dropped for going over "
                                  "endpoint.outbound_buffer (a client that stopped reading).", counts.slow_consumers)
        yield CounterMetricFamily("gossipy_channel_joins", "Channel joins accepted.", counts.joins)
        yield GaugeMetricFamily("gossipy_channels_joined", "Channels joined now, over all websockets.",
                                counts.channels)
        broadcasts = CounterMetricFamily("gossipy_pubsub_broadcasts", "Broadcasts dispatched on this node, by "
                                         "where they were published: here (local) or on a peer node (peer).",
                                         labels=["origin"])
        broadcasts.add_metric(["local"], counts.local_broadcasts)
        broadcasts.add_metric(["peer"], sources.peer_broadcasts())
        yield broadcasts
        queues = sources.peer_queues()
        yield GaugeMetricFamily("gossipy_cluster_peer_links_up", "Peer nodes connected now.", len(queues))
        queued = GaugeMetricFamily("gossipy_cluster_peer_send_queue_bytes", "Bytes waiting to be sent to a peer "
                                   "node.", labels=["peer"])
        for peer, size in sorted(queues.items()):
            queued.add_metric([peer], size)
        yield queued
        refused = CounterMetricFamily("gossipy_cluster_handshake_refusals", "Peer handshakes this node refused, or "
                                      "was refused in, by the handshake's reason.", labels=["reason"])
        for reason, count in sorted(sources.refusals().items()):
            refused.add_metric([reason], count)
        yield refused
