"""Prometheus metrics of one coordinator (its own registry, so several can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("pet_messages_total", "Messages by phase, verdict and reason",
                                ["phase", "verdict", "reason"], registry=r)
        self.chunks = Counter("pet_chunks_total", "Chunks accepted into reassembly", registry=r)
        self.latency = Histogram("pet_message_seconds", "Time to answer one message", registry=r,
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.rounds = Counter("pet_rounds_total", "Rounds by outcome", ["outcome"], registry=r)
        self.round_id = Gauge("pet_round_id", "Current round id", registry=r)
        self.phase = Gauge("pet_phase", "Current phase (0 idle, 1 sum, 2 update, 3 sum2, 4 unmask, "
                                        "5 failure, 6 shutdown)", registry=r)
        self.participants = Gauge("pet_participants", "Participants of the last phase that ended, by role",
                                  ["role"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GatewayReports:
    """What the gateways said of themselves when they last read GET /status (their
    X-Pet-Gateway headers): the dashboard shows which are alive. Bounded: the gateway
    heard from longest ago is forgotten first."""

    def __init__(self, keep: int = 100):
        self.keep = keep
        self._reports: dict[str, dict] = {}  # gateway id -> report, least recently heard first

    def heard(self, gateway_id: str, address: str | None, mqtt: str | None, queued: int | None,
              when: float) -> None:
        self._reports.pop(gateway_id, None)
        self._reports[gateway_id] = {"id": gateway_id, "address": address, "mqtt": mqtt,
                                     "queued": queued, "last_seen": when}
        while len(self._reports) > self.keep:
            del self._reports[next(iter(self._reports))]

    def list(self) -> list[dict]:
        """Every gateway heard from, by id."""
        return [dict(self._reports[k]) for k in sorted(self._reports)]
