"""The leader: the round state machine of a coordinator on Redis, whose messages any
number of processes judge (coordinator/worker.py).

The leader runs the phases, their deadlines and the round keys, serves the read
routes, and judges messages itself with a Worker of its own. It learns what
the other processes accepted from the store: the counts every REPORT_INTERVAL
(and its own worker's at once), and the workers' verdicts and refused messages
for /status and /metrics. A phase ends in two steps: the next phase is saved
first (the fence: the store's scripts then refuse anything more for the phase
that ended), and only then does the leader read what the phase produced (the
sum dict; the partial aggregates, which it adds up; the votes).

`WorkerProcesses` starts the worker processes of `--processes N` on this machine
and starts one again when it dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import time
from dataclasses import replace

from coordinator.rounds import SUM, SUM2, UNMASK, UPDATE, Coordinator, PhaseFailed
from coordinator.worker import LEADER_PARTIAL, Worker, agreed_settings
from pet.errors import DecodeError
from pet.mask import Aggregation, AggregationError, MaskObject

log = logging.getLogger("coordinator.leader")

REPORT_INTERVAL = 0.1   # seconds between two looks at what the workers did
WORKER_SILENCE = 5.0    # a worker not heard from for this long is no longer listed
_COUNT_OF_PHASE = {SUM: "sums", UPDATE: "updates", SUM2: "sum2"}


def merge(partials: list[tuple[bytes, int]], config, length: int) -> Aggregation:
    """The round's aggregate: the sum, modulo the group order, of the partial aggregates."""
    total = Aggregation(config, config, length)
    for mask, nb_models in partials:
        try:
            partial = MaskObject.from_bytes(mask)
            total.validate(partial)
        except (DecodeError, AggregationError) as e:
            raise PhaseFailed(f"a stored partial aggregate is unusable: {e}") from None
        total.aggregate(partial, validated=True)  # counts it as one model; it holds nb_models
        total.nb_models += nb_models - 1
    return total


class Leader(Coordinator):
    def __init__(self, settings, store, *, leader_url: str | None = None, **options):
        super().__init__(settings, store, **options)
        self.leader_url = leader_url  # where workers pass on the routes they do not serve
        self.worker = Worker(settings, store, name=LEADER_PARTIAL, reports=self, executor=self.executor,
                             clock=self.clock)
        self.workers: dict[str, dict] = {}  # worker name -> its last report of itself
        self.messages = 0                   # judged in this process
        self._pending_chunk_count = 0
        self._fenced = False                # the next phase is saved, this one not left yet
        self._reports: asyncio.Task | None = None

    # -- start and stop -----------------------------------------------------------------------------

    async def start(self) -> None:
        state = await self._thread(self.store.load_state)
        if state and state.phase == UNMASK:  # stopped while unmasking: the votes are in, unmask again
            await self._thread(self.store.save_state, replace(state, phase=SUM2))
        await self._thread(self.store.publish_setup, {
            "settings": agreed_settings(self.settings), "leader_url": self.leader_url,
            "pid": os.getpid(), "host": socket.gethostname(), "started": self.clock()})
        await super().start()
        await self.worker.refresh()
        self._reports = asyncio.create_task(self._take_reports(), name="leader-reports")

    async def stop(self) -> None:
        if self._reports:
            self._reports.cancel()
            try:
                await self._reports
            except asyncio.CancelledError:
                pass
        await self.worker.stop()
        await super().stop()

    # -- messages: judged by the worker of this process ---------------------------------------------

    async def handle(self, sealed: bytes):
        return await self.worker.handle(sealed)

    def record(self, verdict, phase=None, seconds=None) -> None:
        self.messages += 1
        super().record(verdict, phase, seconds)

    def chunk_received(self) -> None:
        self.metrics.chunks.inc()

    def counted(self, round_id: int, phase: str, count: int) -> None:
        """The store holds count messages of this phase (counts only grow within a phase)."""
        if self.state and (self.state.round_id, self.state.phase) == (round_id, phase) and count > self.accepted:
            self.accepted = count
            self._progress.set()

    def partial_stored(self, round_id: int, partial: Aggregation) -> None:
        """This process's worker stored a batch. Until Update ends, self.aggregation is this
        process's share (the whole aggregate when no worker process takes part); then it is
        the sum of every process's share."""
        if self.state and self.state.round_id == round_id and self.phase == UPDATE and not self._fenced:
            self.aggregation = partial

    # -- phases ---------------------------------------------------------------------------------------

    async def _enter(self, phase: str) -> None:
        self._fenced = False
        await super()._enter(phase)
        await self.worker.refresh()

    async def _fence(self, phase: str) -> None:
        """Save the next phase before taking it up here: no process adds to the one that ends."""
        self._fenced = True
        fenced = replace(self.state, phase=phase, phase_started=self.clock(), counters=dict(self.counters))
        await self._thread(self.store.save_state, fenced)

    async def _end_sum(self) -> None:
        await self._fence(UPDATE)
        self.sum_dict = await self._thread(self.store.sum_dict)
        await super()._end_sum()

    async def _end_update(self) -> None:
        await self._fence(SUM2)
        self.aggregation = await self._stored_aggregation()
        await super()._end_update()

    async def _end_sum2(self) -> None:
        await self._fence(UNMASK)
        await super()._end_sum2()

    async def _stored_aggregation(self) -> Aggregation:
        partials = await self._thread(self.store.partial_aggregates)
        return await self._thread(merge, partials, self.config, self.length)

    # -- what the workers did -----------------------------------------------------------------------

    async def _take_reports(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            try:
                round_id, phase = self.state.round_id, self.phase
                reports = await self._thread(self.store.take_reports,
                                             self.clock() - self.settings.multipart.max_age)
                if phase in _COUNT_OF_PHASE:
                    self.counted(round_id, phase, reports[_COUNT_OF_PHASE[phase]])
                self._pending_chunk_count = reports["chunks"]
                self._take_tally(reports["tally"])
                for rejection in reports["rejected"]:
                    self.recent_rejections.appendleft(rejection)
                await self._take_workers(reports["workers"])
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the store is away: the round loop says so too
                self.rejections_log.warning("reports", "cannot take the workers' reports: %s", e)

    def _take_tally(self, tally: dict[str, int]) -> None:
        for field, count in tally.items():
            round_id, phase, kind, reason = field.split("|", 3)
            if kind == "chunk":
                self.metrics.chunks.inc(count)
                continue
            verdict = "accepted" if kind == "accepted" else "rejected"
            self.metrics.messages.labels(phase=phase, verdict=verdict, reason=reason or "accepted").inc(count)
            if int(round_id) != self.state.round_id:
                continue
            if phase == self.phase:
                self.counters[kind] += count
            self.round_messages[kind] += count
            if kind != "accepted":
                self.round_reasons[reason] += count

    async def _take_workers(self, workers: dict[str, dict]) -> None:
        now = self.clock()
        silent = [name for name, about in workers.items() if now - about.get("seen", 0) > WORKER_SILENCE]
        self.workers = {name: about for name, about in workers.items() if name not in silent}
        if silent:
            await self._thread(self.store.forget_workers, silent)

    # -- what the routes show -----------------------------------------------------------------------

    def _participants(self) -> dict:
        participants = super()._participants()
        if self.phase == UPDATE:  # the updates are in the workers' partial aggregates until Update ends
            participants["updates"] = self.accepted
        return participants

    def _pending_chunks(self) -> int:
        return self._pending_chunk_count

    def status(self) -> dict:
        status = super().status()
        status["processes"] = [
            {"name": "leader", "pid": os.getpid(), "host": socket.gethostname(), "messages": self.messages,
             "seen": self.clock()},
            *({"name": name, **about} for name, about in sorted(self.workers.items()))]
        return status


class WorkerProcesses:
    """The worker processes `--processes N` starts beside the leader (N - 1), each started
    again when it dies, at most once every RESTART_PAUSE seconds."""

    RESTART_PAUSE = 5.0

    def __init__(self, command: list[str], count: int):
        self.command = command
        self.procs: list[subprocess.Popen] = []
        self.started: list[float] = []
        self.count = count
        self._task: asyncio.Task | None = None

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(self.command, stdin=subprocess.DEVNULL)

    async def lifecycle(self, app):
        """For the app's cleanup_ctx: started after the leader, stopped before it."""
        self.procs = [self._spawn() for _ in range(self.count)]
        self.started = [time.monotonic()] * self.count
        log.info("started %d worker processes: pids %s", self.count, ", ".join(str(p.pid) for p in self.procs))
        self._task = asyncio.create_task(self._watch(), name="worker-processes")
        yield
        self._task.cancel()
        for proc in self.procs:
            proc.terminate()
        deadline = time.monotonic() + 10
        while any(p.poll() is None for p in self.procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and time.monotonic() - self.started[i] >= self.RESTART_PAUSE:
                    log.warning("worker process %d ended (exit status %s); starting another", proc.pid,
                                proc.returncode)
                    self.procs[i], self.started[i] = self._spawn(), time.monotonic()
