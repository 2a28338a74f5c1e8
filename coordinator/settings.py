"""Coordinator settings: dataclasses read from TOML, overridden by PET__* variables.

Every key has a default, so the file is optional. Everything is checked at
start-up: a bad value stops the coordinator before the first round, with a
message naming the key and where it came from, instead of failing mid-round.
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from pet.config import (ENV_PREFIX, LOG_LEVELS, LogSettings, SettingsError, ValueType, at_least, has, load,
                        require, split_bind, to_toml)
from pet.mask.config import DEFAULT_MCU_CONFIG, MaskConfig, MaskConfigError
from pet.multipart import MIN_MESSAGE_SIZE

__all__ = [
    "ENV_PREFIX", "SettingsError", "Count", "Time", "ApiSettings", "SumSettings", "UpdateSettings",
    "Sum2Settings", "PetSettings", "MaskSettings", "ModelSettings", "StoreSettings",
    "HistorySettings", "MultipartSettings", "LogSettings", "Settings", "load_settings",
    "parse_mask_config", "load_hook",
]

STORE_KINDS = ("sqlite", "redis")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
MAX_MODEL_LENGTH = 2 ** 32 - 1
MAX_CHUNKS = 1 << 16  # chunk ids are u16
DEFAULT_DATA_DIR = "pet-data"
SQLITE_FILE = "coordinator.db"  # the sqlite file's name in store.data_dir


# -- the settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Count:
    """Accepted messages in a phase: at least min to end it, never more than max."""

    min: int
    max: int


@dataclass(frozen=True)
class Time:
    """Seconds a phase lasts: at least min, and it fails if count.min is not reached by max."""

    min: float
    max: float


@dataclass(frozen=True)
class ApiSettings:
    bind: str = "127.0.0.1:8081"
    # Empty: POST /message is open. Set: it needs "Authorization: Bearer <token>".
    token: str = field(default="", metadata={"secret": True})
    max_body_bytes: int = 16 << 20
    workers: int = 2  # threads for decryption, signature checks and aggregation
    # Processes that judge messages on bind: the leader and processes - 1 worker processes
    # it starts, sharing the port (SO_REUSEPORT). Above 1 needs the redis store.
    processes: int = 1

    @property
    def host(self) -> str:
        return split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return split_bind(self.bind)[1]


@dataclass(frozen=True)
class SumSettings:
    prob: float = 0.5
    count: Count = Count(1, 100)
    time: Time = Time(5.0, 3600.0)
    # Sum participants that may vanish before Sum2 without the round failing.
    dropout_margin: int = 0


@dataclass(frozen=True)
class UpdateSettings:
    prob: float = 0.9
    # Not XayNet's 10000: at most what the mask config can aggregate, and 1000 fits both
    # the default W32/F32/b2/m10 (1024 models) and XayNet's Prime/F32/B0/M3 (1000).
    count: Count = Count(3, 1000)
    time: Time = Time(10.0, 3600.0)


@dataclass(frozen=True)
class Sum2Settings:
    count: Count = Count(1, 100)
    time: Time = Time(5.0, 3600.0)


@dataclass(frozen=True)
class PetSettings:
    sum: SumSettings = SumSettings()
    update: UpdateSettings = UpdateSettings()
    sum2: Sum2Settings = Sum2Settings()

    @property
    def sum_count_min(self) -> int:
        """Sum messages the Sum phase waits for: enough that Sum2 can still reach
        its minimum when dropout_margin sum participants disappear."""
        return max(self.sum.count.min, self.sum2.count.min + self.sum.dropout_margin)


@dataclass(frozen=True)
class MaskSettings:
    # Written in the file as a name, e.g. "W32/F32/b2/m10" or "Prime/F32/B0/M3".
    config: MaskConfig = DEFAULT_MCU_CONFIG

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class ModelSettings:
    length: int = 650
    # "package.module:function" scoring each new global model: called with its weights
    # (numpy float64), it returns figures such as {"accuracy": 0.93}. Empty: none.
    evaluate: str = ""


@dataclass(frozen=True)
class StoreSettings:
    kind: str = "sqlite"
    data_dir: str = DEFAULT_DATA_DIR  # holds the sqlite file unless path is given
    # The sqlite file (or ":memory:"). load_settings sets it to data_dir/coordinator.db
    # when it is not given, so it always names the file that is used.
    path: str = f"{DEFAULT_DATA_DIR}/{SQLITE_FILE}"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "pet:"  # redis key prefix, so one redis can serve several coordinators
    resume: bool = True  # continue an interrupted round after a restart


@dataclass(frozen=True)
class HistorySettings:
    keep: int = 10  # global models kept


@dataclass(frozen=True)
class MultipartSettings:
    """Bounds on incomplete multipart messages (pet.multipart.Reassembler)."""

    max_message_bytes: int = 64 << 20
    max_chunks: int = MAX_CHUNKS
    max_age: float = 600.0
    max_pending_messages: int = 10_000
    max_pending_bytes: int = 256 << 20


@dataclass(frozen=True)
class Settings:
    api: ApiSettings = ApiSettings()
    pet: PetSettings = PetSettings()
    mask: MaskSettings = MaskSettings()
    model: ModelSettings = ModelSettings()
    store: StoreSettings = StoreSettings()
    history: HistorySettings = HistorySettings()
    multipart: MultipartSettings = MultipartSettings()
    log: LogSettings = LogSettings()

    def validate(self) -> "Settings":
        """Raises SettingsError on the first rule broken; returns self."""
        _validate(self)
        return self

    def to_toml(self) -> str:
        """The effective settings as TOML; a set api.token is shown as "***"."""
        return to_toml(self, inline=(Count, Time), types=TYPES)


# -- mask config names --------------------------------------------------------------------------

MASK_FORMS = ('XayNet style "<Integer|Prime|Power2>/<F32|F64|I32|I64>/<B0|B2|B4|B6|Bmax>/'
              '<M3|M6|M9|M12>" (e.g. "Prime/F32/B0/M3"), or MCU style "W32/F32/b<k>/m<k>" or '
              '"W64/F32/b<k>/m<k>" (e.g. "W32/F32/b2/m10")')
_XAYNET_NAMES = {n.lower(): n for n in ("Integer", "Prime", "Power2", "F32", "F64", "I32", "I64",
                                        "B0", "B2", "B4", "B6", "Bmax", "M3", "M6", "M9", "M12")}


def parse_mask_config(text: str) -> MaskConfig:
    """A MaskConfig from its name (case does not matter); ValueError otherwise."""
    parts = text.strip().lower().split("/")
    if len(parts) != 4:
        raise ValueError(f"expected four parts separated by '/', got {text!r}")
    group, data, bound, model = parts
    try:
        if group in ("w32", "w64"):
            if data != "f32":
                raise ValueError(f"the MCU profile masks F32 data only, got {text!r}")
            if not (bound[:1] == "b" and bound[1:].isdigit()
                    and model[:1] == "m" and model[1:].isdigit()):
                raise ValueError(f"MCU bound and model must be b<k> and m<k>, got {text!r}")
            return MaskConfig.mcu(int(bound[1:]), int(model[1:]), wide=group == "w64")
        names = [_XAYNET_NAMES.get(p) for p in parts]
        if None in names:
            raise ValueError(f"unknown name {parts[names.index(None)]!r} in {text!r}")
        return MaskConfig.xaynet(*names)
    except MaskConfigError as e:
        raise ValueError(f"{str(e).removeprefix('mask config: ')} ({text!r})") from None


# -- the evaluation hook ------------------------------------------------------------------------

def load_hook(spec: str):
    """The function "package.module:function" names; ValueError saying what is wrong."""
    module_name, colon, name = spec.partition(":")
    if not (colon and module_name.strip() and name.strip()):
        raise ValueError('expected "package.module:function", e.g. "digits.evaluate:accuracy"')
    try:
        target = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name} ({e})") from None
    except Exception as e:  # the module itself raised while it was imported
        raise ValueError(f"importing {module_name} failed: {type(e).__name__}: {e}") from None
    for part in name.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no {name}") from None
    if not callable(target):
        raise ValueError(f"{module_name}:{name} is a {type(target).__name__}, not a function")
    return target


# -- loading ------------------------------------------------------------------------------------

MASK_CONFIG = ValueType(parse_mask_config, lambda config: config.name,
                        "a string naming a mask config", MASK_FORMS)
TYPES = {MaskConfig: MASK_CONFIG}


def load_settings(path: str | Path | None = None, env: Mapping[str, str] = os.environ,
                  flags: Mapping[str, tuple[str, Any]] | None = None) -> Settings:
    """Defaults, then the TOML file at path (if any), then PET__* variables from env, then
    flags: {dotted key: (option, value)} from the command line, e.g.
    {"store.data_dir": ("--data-dir", "/var/lib/pet")}; the option names the source in errors.
    """
    def finish(settings: Settings, data: dict) -> Settings:
        if has(data, "store.path"):
            return settings
        store = settings.store
        return replace(settings, store=replace(store, path=str(Path(store.data_dir, SQLITE_FILE))))

    return load(Settings, path, env, flags, types=TYPES, finish=finish)


# -- validation ---------------------------------------------------------------------------------

def _validate(s: Settings) -> None:
    try:
        split_bind(s.api.bind)
    except ValueError as e:
        raise SettingsError(f"api.bind must be host:port (e.g. 127.0.0.1:8081 or [::1]:8081): "
                            f"{e}, got {s.api.bind!r}", "api.bind") from None
    require(not any(c.isspace() for c in s.api.token),
             "api.token must not contain whitespace (it is sent in an HTTP header)", "api.token")
    at_least("api.max_body_bytes", s.api.max_body_bytes, MIN_MESSAGE_SIZE,
              " (the smallest sealed message)")
    at_least("api.workers", s.api.workers, 1)
    at_least("api.processes", s.api.processes, 1)

    pet = s.pet
    require(0 < pet.sum.prob < 1, f"pet.sum.prob must be > 0 and < 1, got {pet.sum.prob}",
             "pet.sum.prob")
    require(0 < pet.update.prob <= 1,
             f"pet.update.prob must be > 0 and <= 1, got {pet.update.prob}", "pet.update.prob")
    # XayNet also requires 0 < sum + update - sum*update <= 1; the two rules above imply it.
    for name, phase, floor in (("sum", pet.sum, 1), ("update", pet.update, 3), ("sum2", pet.sum2, 1)):
        count, time = f"pet.{name}.count", f"pet.{name}.time"
        at_least(f"{count}.min", phase.count.min, floor)
        require(phase.count.min <= phase.count.max,
                 f"{count}.min must be <= {count}.max, got {phase.count.min} > {phase.count.max}",
                 f"{count}.min", f"{count}.max")
        for end in ("min", "max"):
            seconds = getattr(phase.time, end)
            require(math.isfinite(seconds), f"{time}.{end} must be a finite number of seconds, "
                     f"got {seconds}", f"{time}.{end}")
        at_least(f"{time}.min", phase.time.min, 0)
        require(phase.time.min <= phase.time.max,
                 f"{time}.min must be <= {time}.max, got {phase.time.min} > {phase.time.max}",
                 f"{time}.min", f"{time}.max")
    require(pet.sum2.count.min <= pet.sum.count.max,
             f"pet.sum2.count.min must be <= pet.sum.count.max, got {pet.sum2.count.min} > "
             f"{pet.sum.count.max} (Sum2 messages come from sum participants)",
             "pet.sum2.count.min", "pet.sum.count.max")
    require(pet.sum2.count.max <= pet.sum.count.max,
             f"pet.sum2.count.max must be <= pet.sum.count.max, got {pet.sum2.count.max} > "
             f"{pet.sum.count.max} (Sum2 messages come from sum participants)",
             "pet.sum2.count.max", "pet.sum.count.max")
    at_least("pet.sum.dropout_margin", pet.sum.dropout_margin, 0)
    needed = pet.sum2.count.min + pet.sum.dropout_margin
    require(needed <= pet.sum.count.max,
             f"pet.sum.dropout_margin is too large: pet.sum2.count.min ({pet.sum2.count.min}) + "
             f"pet.sum.dropout_margin ({pet.sum.dropout_margin}) = {needed} sum participants "
             f"needed, more than pet.sum.count.max ({pet.sum.count.max}) accepted",
             "pet.sum.dropout_margin", "pet.sum2.count.min", "pet.sum.count.max")
    capacity = s.mask.config.max_models
    require(pet.update.count.max <= capacity,
             f"pet.update.count.max is {pet.update.count.max} but mask config {s.mask.name} can "
             f"aggregate at most {capacity} models: lower pet.update.count.max to {capacity} or "
             f"less, or choose a mask config with a larger model count",
             "pet.update.count.max", "mask.config")

    require(1 <= s.model.length <= MAX_MODEL_LENGTH,
             f"model.length must be from 1 to {MAX_MODEL_LENGTH}, got {s.model.length}",
             "model.length")
    if s.model.evaluate:
        try:
            load_hook(s.model.evaluate)
        except ValueError as e:
            raise SettingsError(f"model.evaluate {s.model.evaluate!r}: {e}", "model.evaluate") from None

    store = s.store
    require(store.kind in STORE_KINDS,
             f"store.kind must be one of {', '.join(STORE_KINDS)}, got {store.kind!r}", "store.kind")
    require(bool(store.data_dir), 'store.data_dir must name a directory ("." for the working '
             'directory)', "store.data_dir")
    if store.kind == "sqlite":
        require(bool(store.path), "store.path must name the sqlite file", "store.path")
    else:
        require(store.url.startswith(REDIS_SCHEMES),
                 f"store.url must start with {', '.join(REDIS_SCHEMES)}, got {store.url!r}",
                 "store.url")
    require(s.api.processes == 1 or store.kind == "redis",
             f"api.processes is {s.api.processes}, but several processes need the redis store "
             f"(store.kind = \"redis\", or --redis URL): they share the round through Redis",
             "api.processes", "store.kind")

    at_least("history.keep", s.history.keep, 1)

    mp = s.multipart
    at_least("multipart.max_message_bytes", mp.max_message_bytes, 1)
    at_least("multipart.max_chunks", mp.max_chunks, 1)
    require(mp.max_chunks <= MAX_CHUNKS, f"multipart.max_chunks must be <= {MAX_CHUNKS} (chunk "
             f"ids are 16-bit), got {mp.max_chunks}", "multipart.max_chunks")
    require(mp.max_age > 0 and math.isfinite(mp.max_age),
             f"multipart.max_age must be a positive number of seconds, got {mp.max_age}",
             "multipart.max_age")
    at_least("multipart.max_pending_messages", mp.max_pending_messages, 1)
    at_least("multipart.max_pending_bytes", mp.max_pending_bytes, 1)

    require(s.log.level.lower() in LOG_LEVELS,
             f"log.level must be one of {', '.join(LOG_LEVELS)}, got {s.log.level!r}", "log.level")
