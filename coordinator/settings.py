"""Coordinator settings: dataclasses read from TOML, overridden by PET__* variables.

Every key has a default, so the file is optional. Everything is checked at
start-up: a bad value stops the coordinator before the first round, with a
message naming the key and where it came from, instead of failing mid-round.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from pet.mask.config import DEFAULT_MCU_CONFIG, MaskConfig, MaskConfigError
from pet.multipart import MIN_MESSAGE_SIZE

__all__ = [
    "ENV_PREFIX", "SettingsError", "Count", "Time", "ApiSettings", "SumSettings", "UpdateSettings",
    "Sum2Settings", "PetSettings", "MaskSettings", "ModelSettings", "StoreSettings",
    "HistorySettings", "MultipartSettings", "LogSettings", "Settings", "load_settings",
    "parse_mask_config",
]

ENV_PREFIX = "PET__"
LOG_LEVELS = ("debug", "info", "warning", "error")
STORE_KINDS = ("sqlite", "redis")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
MAX_MODEL_LENGTH = 2 ** 32 - 1
MAX_CHUNKS = 1 << 16  # chunk ids are u16
DEFAULT_DATA_DIR = "pet-data"
SQLITE_FILE = "coordinator.db"  # the sqlite file's name in store.data_dir


class SettingsError(Exception):
    """A setting that is unknown, of the wrong type or out of range.

    `key` is the dotted key at fault (None when no single key is), `source`
    the file or environment variable it came from (None for a default).
    """

    def __init__(self, message: str, key: str | None = None, source: str | None = None,
                 keys: tuple[str, ...] = ()):
        self.message = message
        self.key = key
        self.source = source
        self.keys = keys or ((key,) if key else ())
        super().__init__(f"{source}: {message}" if source else message)


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

    @property
    def host(self) -> str:
        return _split_bind(self.bind)[0]

    @property
    def port(self) -> int:
        return _split_bind(self.bind)[1]


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
class LogSettings:
    level: str = "info"


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
        lines: list[str] = []
        _render(self, "", lines)
        return "\n".join(lines).rstrip("\n") + "\n"


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


# -- loading ------------------------------------------------------------------------------------

def load_settings(path: str | Path | None = None, env: Mapping[str, str] = os.environ,
                  flags: Mapping[str, tuple[str, Any]] | None = None) -> Settings:
    """Defaults, then the TOML file at path (if any), then PET__* variables from env, then
    flags: {dotted key: (option, value)} from the command line, e.g.
    {"store.data_dir": ("--data-dir", "/var/lib/pet")}; the option names the source in errors.
    """
    file_data = _read_toml(path) if path is not None else {}
    data = copy.deepcopy(file_data)  # env values and flags are merged into this copy
    sources: dict[str, str] = {}  # dotted key -> the variable or option that set it
    for name in sorted(env):
        if name.upper().startswith(ENV_PREFIX):
            key, value = _env_setting(name, env[name])
            sources[key] = f"environment variable {name}"
            _put(data, key, value, sources[key])
    for key, (option, value) in (flags or {}).items():
        sources[key] = f"command-line option {option}"
        _put(data, key, value, sources[key])

    def where(e: SettingsError) -> str | None:
        for key in e.keys:
            for set_key, source in reversed(sources.items()):  # flags before variables
                if key == set_key or key.startswith(set_key + "."):
                    return source
            if path is not None and _has(file_data, key):
                return str(path)
        return None

    try:
        settings = _build(Settings, data, "", Settings())
        if not _has(data, "store.path"):
            store = settings.store
            settings = replace(settings, store=replace(store, path=str(Path(store.data_dir, SQLITE_FILE))))
        return settings.validate()
    except SettingsError as e:
        raise SettingsError(e.message, e.key, where(e), e.keys) from None


def _read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"cannot read the settings file: {e.strerror}", source=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"not valid TOML: {e}", source=str(path)) from None


def _env_setting(name: str, raw: str) -> tuple[str, Any]:
    """The dotted key a PET__* variable names, checked against the settings, and its value."""
    parts = name[len(ENV_PREFIX):].lower().split("__")
    cls, key = Settings, ""
    for part in parts:
        if cls is None or part not in _field_names(cls):
            full = ".".join(parts)
            known = _field_names(cls) if cls is not None else []
            raise SettingsError(_unknown_message(full, part, key, known),
                                key=full, source=f"environment variable {name}")
        key = f"{key}.{part}" if key else part
        hint = _hints(cls)[part]
        cls = hint if _is_table(hint) else None
    value = _toml_value_or_text(raw)
    if hint in (str, MaskConfig) and not isinstance(value, str):
        value = raw  # PET__API__TOKEN=123 is the string "123"
    return key, value


def _toml_value_or_text(raw: str) -> Any:
    try:
        doc = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    return doc["v"] if list(doc) == ["v"] else raw


def _put(data: dict, key: str, value: Any, source: str) -> None:
    *tables, last = key.split(".")
    node = data
    for i, part in enumerate(tables):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            table = ".".join(tables[:i + 1])
            raise SettingsError(f"{table} is not a table, so {key} cannot be set",
                                key=key, source=source)
    node[last] = value


def _has(data: dict, key: str) -> bool:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _is_table(hint: Any) -> bool:
    """Settings classes are TOML tables; a MaskConfig is written as its name."""
    return is_dataclass(hint) and hint is not MaskConfig


def _field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_message(full: str, part: str, prefix: str, known: list[str]) -> str:
    match = difflib.get_close_matches(part.lower(), known, n=1)
    dot = f"{prefix}." if prefix else ""
    if match:
        return f"unknown key {full} (did you mean {dot}{match[0]}?)"
    if known:
        return f"unknown key {full}; known keys{' in ' + prefix if prefix else ''}: {', '.join(known)}"
    return f"unknown key {full}: {prefix} takes no sub-keys"


def _build(cls: type, data: dict, prefix: str, default: Any) -> Any:
    names = _field_names(cls)
    for key in data:
        if key not in names:
            raise SettingsError(_unknown_message(prefix + key, key, prefix.rstrip("."), names),
                                key=prefix + key)
    hints = _hints(cls)
    values = {name: _convert(hints[name], data[name], prefix + name, getattr(default, name))
              for name in names if name in data}
    return replace(default, **values)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             MaskConfig: "a string naming a mask config"}


def _convert(hint: Any, value: Any, key: str, default: Any) -> Any:
    if _is_table(hint):
        if not isinstance(value, dict):
            raise _wrong_type(key, "a table", value)
        return _build(hint, value, key + ".", default)
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str),
          MaskConfig: lambda v: isinstance(v, str)}[hint]
    if not ok(value):
        raise _wrong_type(key, _EXPECTED[hint], value)
    if hint is float:
        return float(value)
    if hint is MaskConfig:
        try:
            return parse_mask_config(value)
        except ValueError as e:
            raise SettingsError(f"{key}: {e}; accepted forms: {MASK_FORMS}", key) from None
    return value


def _wrong_type(key: str, expected: str, value: Any) -> SettingsError:
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table",
             list: "array"}
    kind = kinds.get(type(value), type(value).__name__)
    return SettingsError(f"{key} must be {expected}, got {value!r} ({kind})", key)


# -- validation ---------------------------------------------------------------------------------

def _split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:8081
    elif ":" in host:
        raise ValueError("an IPv6 host needs brackets")
    if not sep or not host or any(c.isspace() for c in host):
        raise ValueError("no host or no port")
    if not (port.isdigit() and int(port) <= 65535):
        raise ValueError("the port must be a number from 0 to 65535")
    return host, int(port)


def _require(ok: bool, message: str, *keys: str) -> None:
    if not ok:
        raise SettingsError(message, keys[0], keys=keys)


def _at_least(key: str, value: float, low: float, why: str = "") -> None:
    _require(value >= low, f"{key} must be >= {low}{why}, got {value}", key)


def _validate(s: Settings) -> None:
    try:
        _split_bind(s.api.bind)
    except ValueError as e:
        raise SettingsError(f"api.bind must be host:port (e.g. 127.0.0.1:8081 or [::1]:8081): "
                            f"{e}, got {s.api.bind!r}", "api.bind") from None
    _require(not any(c.isspace() for c in s.api.token),
             "api.token must not contain whitespace (it is sent in an HTTP header)", "api.token")
    _at_least("api.max_body_bytes", s.api.max_body_bytes, MIN_MESSAGE_SIZE,
              " (the smallest sealed message)")
    _at_least("api.workers", s.api.workers, 1)

    pet = s.pet
    _require(0 < pet.sum.prob < 1, f"pet.sum.prob must be > 0 and < 1, got {pet.sum.prob}",
             "pet.sum.prob")
    _require(0 < pet.update.prob <= 1,
             f"pet.update.prob must be > 0 and <= 1, got {pet.update.prob}", "pet.update.prob")
    # XayNet also requires 0 < sum + update - sum*update <= 1; the two rules above imply it.
    for name, phase, floor in (("sum", pet.sum, 1), ("update", pet.update, 3), ("sum2", pet.sum2, 1)):
        count, time = f"pet.{name}.count", f"pet.{name}.time"
        _at_least(f"{count}.min", phase.count.min, floor)
        _require(phase.count.min <= phase.count.max,
                 f"{count}.min must be <= {count}.max, got {phase.count.min} > {phase.count.max}",
                 f"{count}.min", f"{count}.max")
        for end in ("min", "max"):
            seconds = getattr(phase.time, end)
            _require(math.isfinite(seconds), f"{time}.{end} must be a finite number of seconds, "
                     f"got {seconds}", f"{time}.{end}")
        _at_least(f"{time}.min", phase.time.min, 0)
        _require(phase.time.min <= phase.time.max,
                 f"{time}.min must be <= {time}.max, got {phase.time.min} > {phase.time.max}",
                 f"{time}.min", f"{time}.max")
    _require(pet.sum2.count.min <= pet.sum.count.max,
             f"pet.sum2.count.min must be <= pet.sum.count.max, got {pet.sum2.count.min} > "
             f"{pet.sum.count.max} (Sum2 messages come from sum participants)",
             "pet.sum2.count.min", "pet.sum.count.max")
    _require(pet.sum2.count.max <= pet.sum.count.max,
             f"pet.sum2.count.max must be <= pet.sum.count.max, got {pet.sum2.count.max} > "
             f"{pet.sum.count.max} (Sum2 messages come from sum participants)",
             "pet.sum2.count.max", "pet.sum.count.max")
    _at_least("pet.sum.dropout_margin", pet.sum.dropout_margin, 0)
    needed = pet.sum2.count.min + pet.sum.dropout_margin
    _require(needed <= pet.sum.count.max,
             f"pet.sum.dropout_margin is too large: pet.sum2.count.min ({pet.sum2.count.min}) + "
             f"pet.sum.dropout_margin ({pet.sum.dropout_margin}) = {needed} sum participants "
             f"needed, more than pet.sum.count.max ({pet.sum.count.max}) accepted",
             "pet.sum.dropout_margin", "pet.sum2.count.min", "pet.sum.count.max")
    capacity = s.mask.config.max_models
    _require(pet.update.count.max <= capacity,
             f"pet.update.count.max is {pet.update.count.max} but mask config {s.mask.name} can "
             f"aggregate at most {capacity} models: lower pet.update.count.max to {capacity} or "
             f"less, or choose a mask config with a larger model count",
             "pet.update.count.max", "mask.config")

    _require(1 <= s.model.length <= MAX_MODEL_LENGTH,
             f"model.length must be from 1 to {MAX_MODEL_LENGTH}, got {s.model.length}",
             "model.length")

    store = s.store
    _require(store.kind in STORE_KINDS,
             f"store.kind must be one of {', '.join(STORE_KINDS)}, got {store.kind!r}", "store.kind")
    _require(bool(store.data_dir), 'store.data_dir must name a directory ("." for the working '
             'directory)', "store.data_dir")
    if store.kind == "sqlite":
        _require(bool(store.path), "store.path must name the sqlite file", "store.path")
    else:
        _require(store.url.startswith(REDIS_SCHEMES),
                 f"store.url must start with {', '.join(REDIS_SCHEMES)}, got {store.url!r}",
                 "store.url")

    _at_least("history.keep", s.history.keep, 1)

    mp = s.multipart
    _at_least("multipart.max_message_bytes", mp.max_message_bytes, 1)
    _at_least("multipart.max_chunks", mp.max_chunks, 1)
    _require(mp.max_chunks <= MAX_CHUNKS, f"multipart.max_chunks must be <= {MAX_CHUNKS} (chunk "
             f"ids are 16-bit), got {mp.max_chunks}", "multipart.max_chunks")
    _require(mp.max_age > 0 and math.isfinite(mp.max_age),
             f"multipart.max_age must be a positive number of seconds, got {mp.max_age}",
             "multipart.max_age")
    _at_least("multipart.max_pending_messages", mp.max_pending_messages, 1)
    _at_least("multipart.max_pending_bytes", mp.max_pending_bytes, 1)

    _require(s.log.level.lower() in LOG_LEVELS,
             f"log.level must be one of {', '.join(LOG_LEVELS)}, got {s.log.level!r}", "log.level")


# -- rendering ----------------------------------------------------------------------------------

def _render(obj: Any, section: str, lines: list[str]) -> None:
    """One [section] with obj's values; Count and Time inline, other tables as their own sections."""
    own = [f for f in fields(obj) if not _is_section(getattr(obj, f.name))]
    if own:
        lines.append(f"[{section}]")
        for f in own:
            value = getattr(obj, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            lines.append(f"{f.name} = {_toml(value)}")
        lines.append("")
    for f in fields(obj):
        value = getattr(obj, f.name)
        if _is_section(value):
            _render(value, f"{section}.{f.name}" if section else f.name, lines)


def _is_section(value: Any) -> bool:
    return _is_table(type(value)) and not isinstance(value, (Count, Time))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, MaskConfig):
        return json.dumps(value.name)
    return "{ " + ", ".join(f"{f.name} = {_toml(getattr(value, f.name))}"
                            for f in fields(value)) + " }"
