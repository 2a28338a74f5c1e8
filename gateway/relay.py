"""Uplinks: broker -> on-disk queue -> coordinator -> verdict on the device's ack topic.

Intake (a thread) takes what paho hands over, checks the topic and payload,
stores the uplinks in the queue in one transaction per batch and only then
sends the PUBACKs. Relay (an asyncio task) forwards the oldest queued uplinks
to the coordinator (several in one POST /messages when they are waiting, else
POST /message), publishes each verdict on <prefix>/dev/<pk_hex>/ack and
removes the uplink from the queue. While the coordinator cannot answer, the
uplinks stay queued and Relay retries with capped, jittered backoff.

Drop policy (each drop is counted in pet_gateway_uplinks_dropped_total{reason}):
  bad_topic    the topic is not <prefix>/dev/<64 hex>/msg: no device to answer, logged
  empty        an empty payload: ack `malformed`
  too_large    larger than queue.max_message_bytes: ack `too_large`
  queue_full   the queue is at max_messages or max_bytes: ack `queue_full`, send again later
  round_ended  queued before the round changed: the coordinator could not open it any more,
               so the gateway answers `undecryptable` itself
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue as thread_queue
import random
import threading
from typing import Callable

from coordinator.ratelog import RateLimitedLog
from gateway.api import CoordinatorApi, Unavailable
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink, Received
from gateway.queue import FULL, Incoming, Uplink, UplinkQueue, message_id
from pet.verdict import Verdict

log = logging.getLogger("gateway.relay")

BATCH = 256  # uplinks stored in one transaction at most
SEND_MESSAGES = 32    # uplinks in one POST /messages at most
SEND_BYTES = 1 << 20  # and their payload bytes (a larger uplink goes alone)
QUEUE_FULL = Verdict(False, "queue_full", "the gateway's queue is full; send the message again later")
ROUND_ENDED = Verdict(False, "undecryptable", "the round ended before the gateway could deliver "
                                              "the message")


def ack_payload(verdict: Verdict, msg: str) -> bytes:
    """The ack topic's JSON: the verdict of pet.verdict plus the uplink's message id."""
    return _verdict_json(verdict)[:-1] + b', "msg": "' + msg.encode() + b'"}'


@functools.lru_cache(maxsize=256)
def _verdict_json(verdict: Verdict) -> bytes:
    """Most acks carry one of a few verdicts: encode each once."""
    return verdict.to_json()


class Intake:
    """Uplinks from paho's thread into the queue, PUBACK after the commit."""

    def __init__(self, queue: UplinkQueue, link: MqttLink, metrics: Metrics, max_message_bytes: int,
                 round_pk: Callable[[], bytes | None], wake: Callable[[], None]):
        self.queue, self.link, self.metrics = queue, link, metrics
        self.max_message_bytes = max_message_bytes
        self.round_pk = round_pk  # the round key the gateway knows now (Downlink)
        self.wake = wake          # tells Relay that there is something new
        self._inbox: thread_queue.SimpleQueue[Received | None] = thread_queue.SimpleQueue()
        self._stopping = threading.Event()
        self._ratelog = RateLimitedLog(log, interval=5.0)
        self._thread = threading.Thread(target=self._run, name="gateway-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(None)
        self._thread.join(10)

    def submit(self, message: Received) -> None:
        """paho's on_uplink: hand over and return at once."""
        self._inbox.put(message)

    def _run(self) -> None:
        while True:
            batch = [self._inbox.get()]
            while len(batch) < BATCH and not self._inbox.empty():
                batch.append(self._inbox.get())
            stop = None in batch
            batch = [m for m in batch if m is not None]
            if batch:
                self._take(batch)
            if stop:
                return

    def _take(self, batch: list[Received]) -> None:
        self.metrics.received.inc(len(batch))
        valid: list[tuple[Received, str]] = []
        refused: list[tuple[str, str, Verdict]] = []  # (device, msg, verdict)
        for m in batch:
            device = self.link.topics.device_of(m.topic)
            if device is None:
                self._drop("bad_topic", "ignored an uplink on a topic that is not "
                           "<prefix>/dev/<64 lowercase hex>/msg: %r", m.topic[:200])
            elif not m.payload:
                self._drop("empty", "refused an empty uplink from %s", device[:16])
                refused.append((device, message_id(m.payload),
                                Verdict(False, "malformed", "the payload is empty")))
            elif len(m.payload) > self.max_message_bytes:
                self._drop("too_large", "refused an uplink of %d bytes from %s", len(m.payload), device[:16])
                refused.append((device, message_id(m.payload), Verdict(
                    False, "too_large", f"{len(m.payload)} bytes, at most {self.max_message_bytes}")))
            else:
                valid.append((m, device))
        if valid:
            outcome = self._store([Incoming(device, m.payload) for m, device in valid])
            if outcome is None:
                return  # stopping: no PUBACK, the broker keeps these uplinks for the next run
            for (m, device), result in zip(valid, outcome):
                if result == FULL:
                    self._drop("queue_full", "refused an uplink from %s: the queue is full "
                               "(%d messages, %d bytes)", device[:16], self.queue.count, self.queue.bytes)
                    refused.append((device, message_id(m.payload), QUEUE_FULL))
        for m in batch:
            self.link.ack(m)  # the uplinks are on disk (or answered below): the broker may forget them
        for device, msg, verdict in refused:
            self.link.publish(self.link.topics.ack(device), ack_payload(verdict, msg))
        self.metrics.queued.set(self.queue.count)
        self.metrics.queued_bytes.set(self.queue.bytes)
        if valid:
            self.wake()

    def _store(self, items: list[Incoming]) -> list[str] | None:
        """Retry until the queue takes them (None if the gateway stops first): without the
        PUBACK the broker keeps the messages, so a full disk or a locked file delays uplinks
        but loses none."""
        delay = 0.5
        while True:
            try:
                return self.queue.put(items, self.round_pk())
            except Exception as e:
                log.error("cannot store %d uplinks in %s: %s; retrying in %.1f s",
                          len(items), self.queue.path, e, delay)
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, 30.0)

    def _drop(self, reason: str, message: str, *args) -> None:
        self.metrics.dropped.labels(reason).inc()
        self._ratelog.warning(reason, message, *args)


class Backoff:
    """Capped exponential backoff with full jitter: a fleet of gateways does not retry in step."""

    def __init__(self, low: float, high: float, rng: random.Random | None = None):
        self.low, self.high = low, high
        self.rng = rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        ceiling = min(self.high, self.low * 2 ** self.failures)
        self.failures += 1
        return self.rng.uniform(self.low, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Relay:
    """Forwards queued uplinks, oldest first, with at most `concurrency` requests in flight.

    Uplinks are read from the queue in order (a cursor: the newest one handed out), sent
    in groups of those waiting (one request each) and removed in batches once answered.
    When the coordinator cannot answer a request, no new ones are sent; once those in
    flight are done, reading starts again from the oldest uplink still queued, after a
    backoff delay.
    """

    def __init__(self, queue: UplinkQueue, api: CoordinatorApi, link: MqttLink, metrics: Metrics,
                 concurrency: int, retry_min: float, retry_max: float,
                 round_pk: Callable[[], bytes | None]):
        self.queue, self.api, self.link, self.metrics = queue, api, link, metrics
        self.concurrency = concurrency
        self.backoff = Backoff(retry_min, retry_max)
        self.round_pk = round_pk
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._in_flight: set[asyncio.Task] = set()
        self._answered: list[int] = []  # ids answered and acked, not yet removed from the queue
        self._failed = False            # the coordinator could not answer an uplink
        self._ratelog = RateLimitedLog(log, interval=10.0)
        self.last_error: str | None = None

    def wake(self) -> None:
        """From any thread: new uplinks are queued. (Before run() starts there is nothing to
        wake: run() looks at the queue first.)"""
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop has closed: the gateway is stopping
                pass

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.concurrency)
        cursor = 0  # the newest uplink handed out
        try:
            while True:
                if self._failed:
                    await self._retry_later()
                    cursor = 0
                self._wake.clear()
                try:
                    await self._remove_answered()
                    batch = await asyncio.to_thread(self.queue.head, 4 * self.concurrency, cursor)
                except Exception as e:  # the queue's file: keep trying, the uplinks are in it
                    self.last_error, self._failed = f"queue {self.queue.path}: {e}", True
                    continue
                if not batch:
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    except TimeoutError:
                        pass
                    continue
                for group in self._groups(batch):
                    await self._slots.acquire()
                    if self._failed:
                        self._slots.release()
                        break
                    cursor = group[-1].id
                    task = asyncio.create_task(self._handle(group))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._remove_answered(quiet=True)

    def _groups(self, uplinks: list[Uplink]):
        """Consecutive uplinks, as many in one group as one request may carry."""
        most = SEND_MESSAGES if self.api.batch else 1
        group, size = [], 0
        for uplink in uplinks:
            if group and (len(group) == most or size + len(uplink.payload) > SEND_BYTES):
                yield group
                group, size = [], 0
            group.append(uplink)
            size += len(uplink.payload)
        if group:
            yield group

    async def _retry_later(self) -> None:
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._remove_answered(quiet=True)
        delay = self.backoff.next()
        self._ratelog.warning("unavailable", "the coordinator cannot take uplinks (%s); %d queued, "
                              "retrying in %.1f s", self.last_error, self.queue.count, delay)
        await asyncio.sleep(delay)
        self._failed = False

    async def _remove_answered(self, quiet: bool = False) -> None:
        """Remove the answered uplinks from the queue; quiet: log a failure instead of raising
        (they stay queued and are sent again, to be answered `duplicate`)."""
        if not self._answered:
            return
        done, self._answered = self._answered, []  # tasks keep appending meanwhile
        try:
            await asyncio.to_thread(self.queue.remove, done)
        except Exception as e:
            self._answered = done + self._answered
            if not quiet:
                raise
            log.error("cannot remove %d answered uplinks from the queue: %s", len(done), e)
            return
        self.metrics.queued.set(self.queue.count)
        self.metrics.queued_bytes.set(self.queue.bytes)

    async def _handle(self, group: list[Uplink]) -> None:
        try:
            current = self.round_pk()
            send = []
            for uplink in group:
                if uplink.round_pk is not None and current is not None and uplink.round_pk != current:
                    self.metrics.dropped.labels("round_ended").inc()
                    self._answer(uplink, ROUND_ENDED)
                else:
                    send.append(uplink)
            if send:
                try:
                    verdicts = await self._deliver(send)
                except Exception as e:  # a bug must not lose the uplinks: they stay queued
                    log.exception("failed to forward %d uplinks", len(send))
                    self.last_error, verdicts = repr(e), None
                if verdicts is None:
                    self._failed = True
                    self._wake.set()
                    return
                if self.backoff.failures:
                    log.info("the coordinator answers again; %d uplinks queued", self.queue.count)
                    self.backoff.reset()
                for uplink, verdict in zip(send, verdicts):
                    self._answer(uplink, verdict)
            if len(self._in_flight) <= 1:  # the last one (this task leaves the set when done)
                self._wake.set()           # so that run() removes the answered ones now
        finally:
            self._slots.release()

    def _answer(self, uplink: Uplink, verdict: Verdict) -> None:
        self.link.publish(self.link.topics.ack(uplink.device), ack_payload(verdict, uplink.msg))
        self._answered.append(uplink.id)

    async def _deliver(self, uplinks: list[Uplink]) -> list[Verdict] | None:
        """The verdicts for these uplinks, or None when they have to stay queued."""
        try:
            verdicts = await self.api.post_messages([uplink.payload for uplink in uplinks])
        except Unavailable as e:
            self.last_error = str(e)
            return None
        for verdict in verdicts:
            self.metrics.relayed.labels("accepted" if verdict.accepted else "rejected").inc()
            if not verdict.accepted:
                self.metrics.rejected.labels(verdict.reason).inc()
        return verdicts
