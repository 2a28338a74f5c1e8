"""Prometheus metrics of one gateway (its own registry, so tests can run several in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Why an uplink left the gateway without reaching the coordinator (docs/gateway.md).
DROP_REASONS = ("bad_topic", "empty", "too_large", "queue_full", "round_ended")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("pet_gateway_uplinks_received_total",
                                "Uplinks delivered by the broker (a redelivery counts again)", registry=r)
        self.relayed = Counter("pet_gateway_uplinks_relayed_total",
                               "Uplinks the coordinator answered, by verdict", ["verdict"], registry=r)
        self.rejected = Counter("pet_gateway_uplinks_rejected_total",
                                "Uplinks the coordinator rejected, by reason", ["reason"], registry=r)
        self.dropped = Counter("pet_gateway_uplinks_dropped_total",
                               "Uplinks the gateway answered itself without forwarding them, by reason",
                               ["reason"], registry=r)
        self.queued = Gauge("pet_gateway_queue_messages", "Uplinks waiting in the queue", registry=r)
        self.queued_bytes = Gauge("pet_gateway_queue_bytes", "Payload bytes waiting in the queue",
                                  registry=r)
        self.latency = Histogram("pet_gateway_coordinator_seconds",
                                 "Time the coordinator took to answer POST /message or /messages",
                                 registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.coordinator_errors = Counter("pet_gateway_coordinator_errors_total",
                                          "Requests to the coordinator that failed and will be retried",
                                          ["route"], registry=r)
        self.coordinator_up = Gauge("pet_gateway_coordinator_up",
                                    "1 when the last request to the coordinator was answered", registry=r)
        self.downlink = Counter("pet_gateway_downlink_publishes_total",
                                "Retained messages published, by topic kind (clear: an emptied topic)",
                                ["topic"], registry=r)
        self.mqtt_connected = Gauge("pet_gateway_mqtt_connected", "1 while connected to the broker",
                                    registry=r)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)  # present at 0, so that alerts see them

    def render(self) -> bytes:
        return generate_latest(self.registry)
