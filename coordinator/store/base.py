"""What the coordinator keeps, and the interface every store implements.

One round at a time: the round's state, its sum dict, seed dict (one column
per sum participant), the partial aggregate of masked models, the Sum2 votes;
plus the history of global models. Every method is atomic on its own: a
crash between two calls leaves a state the coordinator can resume from.
Methods are synchronous; the coordinator calls them from worker threads.
"""

from __future__ import annotations

import abc
import json
from dataclasses import asdict, dataclass, field


class StoreError(Exception):
    """The store is unreachable or holds something it cannot read."""


@dataclass
class RoundState:
    """The coordinator's own state; small, rewritten at every phase change."""

    round_id: int
    phase: str                # "idle" | "sum" | "update" | "sum2" | "unmask" | "failure"
    round_sk: bytes           # X25519 secret key of the round
    seed: bytes               # round seed (32)
    params: bytes             # RoundParameters, bincode (136)
    phase_started: float      # unix time the phase began (deadlines continue after a restart)
    counters: dict = field(default_factory=dict)  # per phase: accepted / rejected / discarded

    def to_json(self) -> str:
        d = asdict(self)
        for k in ("round_sk", "seed", "params"):
            d[k] = d[k].hex()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RoundState":
        try:
            d = json.loads(text)
            for k in ("round_sk", "seed", "params"):
                d[k] = bytes.fromhex(d[k])
            return cls(**d)
        except (ValueError, TypeError, KeyError) as e:
            raise StoreError(f"stored round state is unreadable: {e}") from None


@dataclass
class GlobalModel:
    """One unmasked global model and what is known about it."""

    round_id: int
    weights: bytes            # float64 little-endian
    created: float            # unix time
    meta: dict = field(default_factory=dict)  # participants per role, duration, evaluation...


class Store(abc.ABC):
    shared = False  # True: several coordinator processes can judge messages into it (Redis)

    # -- round state -----------------------------------------------------------------------

    @abc.abstractmethod
    def load_state(self) -> RoundState | None:
        """The saved state, or None for a fresh store."""

    @abc.abstractmethod
    def save_state(self, state: RoundState) -> None: ...

    @abc.abstractmethod
    def clear_round(self) -> None:
        """Forget the sum dict, seed dict, aggregate and votes (a new round begins)."""

    # -- Sum ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        """Add to the sum dict; False if pk is already in it."""

    @abc.abstractmethod
    def sum_dict(self) -> dict[bytes, bytes]: ...

    # -- Update -------------------------------------------------------------------------------

    @abc.abstractmethod
    def add_updates(self, updates: list[tuple[bytes, dict[bytes, bytes]]], aggregate: bytes,
                    nb_models: int) -> list[bytes]:
        """In one transaction: record each update participant pk, add its encrypted
        seeds (sum_pk -> 80 bytes) to the seed dict, and replace the partial
        aggregate (MaskObject bytes) and its model count. If any pk already sent
        an update this round, change nothing and return those pks; else []."""

    def add_update(self, pk: bytes, seeds: dict[bytes, bytes], aggregate: bytes, nb_models: int) -> bool:
        """One update; False, changing nothing, if pk already sent one."""
        return not self.add_updates([(pk, seeds)], aggregate, nb_models)

    @abc.abstractmethod
    def update_participants(self) -> set[bytes]:
        """The pks that sent an update this round (a resumed coordinator reloads them)."""

    @abc.abstractmethod
    def update_count(self) -> int: ...

    @abc.abstractmethod
    def aggregate(self) -> tuple[bytes, int] | None:
        """The partial aggregate (MaskObject bytes) and its model count, if any."""

    @abc.abstractmethod
    def seed_column(self, sum_pk: bytes) -> dict[bytes, bytes]:
        """update_pk -> encrypted seed for one sum participant."""

    # -- Sum2 ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def add_vote(self, sum_pk: bytes, mask: bytes) -> bool:
        """Count one vote for a global mask (MaskObject bytes); False if sum_pk already voted."""

    @abc.abstractmethod
    def votes(self) -> list[tuple[bytes, int]]:
        """(mask bytes, vote count), most votes first."""

    # -- global models ------------------------------------------------------------------------

    @abc.abstractmethod
    def add_global_model(self, model: GlobalModel, keep: int) -> None:
        """Store a global model and keep only the newest `keep`."""

    @abc.abstractmethod
    def global_models(self, limit: int | None = None) -> list[GlobalModel]:
        """Newest first."""

    @abc.abstractmethod
    def update_model_meta(self, round_id: int, meta: dict) -> None:
        """Merge meta into a stored model's meta (e.g. an evaluation score)."""

    def latest_global_model(self) -> GlobalModel | None:
        models = self.global_models(1)
        return models[0] if models else None

    def close(self) -> None:
        pass
