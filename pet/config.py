"""Settings as frozen dataclasses, read from TOML and overridden by PET__* variables.

Shared by the coordinator and the gateway. A program describes its settings as
nested dataclasses whose fields all have defaults; `load` fills them from a
TOML file, `PET__SECTION__KEY` environment variables and command-line flags,
and raises SettingsError naming the key and where its value came from.
Value types beyond bool, int, float and str (e.g. a mask config written as its
name) are given as `ValueType`s.
"""

from __future__ import annotations

import copy
import logging
import difflib
import json
import tomllib
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["LOG_LEVELS", "LOG_FORMAT", "LogSettings", "configure_logging", "ENV_PREFIX", "SettingsError", "ValueType", "load", "has", "to_toml", "split_bind",
           "require", "at_least"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass(frozen=True)
class LogSettings:
    level: str = "info"


def configure_logging(level: str) -> None:
    """One log format for every pet command."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)

ENV_PREFIX = "PET__"


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


@dataclass(frozen=True)
class ValueType:
    """A setting written as a string and kept as something else.

    parse raises ValueError with a message for people; `expected` completes
    "<key> must be ...", `forms` (optional) lists the accepted spellings.
    """

    parse: Callable[[str], Any]
    format: Callable[[Any], str]
    expected: str
    forms: str = ""


# -- loading ------------------------------------------------------------------------------------

def load(cls: type, path: str | Path | None, env: Mapping[str, str],
         flags: Mapping[str, tuple[str, Any]] | None = None, *,
         types: Mapping[type, ValueType] | None = None,
         finish: Callable[[Any, dict], Any] | None = None) -> Any:
    """cls() with the TOML file at path (if any), then PET__* variables from env, then
    flags: {dotted key: (option, value)} from the command line; the option names the
    source in errors. finish(settings, merged data) may complete derived values; then
    settings.validate() runs (when cls has one) and errors name the source of the key.
    """
    types = dict(types or {})
    file_data = _read_toml(path) if path is not None else {}
    data = copy.deepcopy(file_data)  # env values and flags are merged into this copy
    sources: dict[str, str] = {}  # dotted key -> the variable or option that set it
    for name in sorted(env):
        if name.upper().startswith(ENV_PREFIX):
            key, value = _env_setting(cls, types, name, env[name])
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
            if path is not None and has(file_data, key):
                return str(path)
        return None

    try:
        settings = _build(cls, types, data, "", cls())
        if finish is not None:
            settings = finish(settings, data)
        if hasattr(settings, "validate"):
            settings = settings.validate()
        return settings
    except SettingsError as e:
        raise SettingsError(e.message, e.key, where(e), e.keys) from None


def has(data: dict, key: str) -> bool:
    """Whether the dotted key was given (in the merged file, variables and flags)."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"cannot read the settings file: {e.strerror}", source=str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"not valid TOML: {e}", source=str(path)) from None


def _env_setting(root: type, types: Mapping[type, ValueType], name: str, raw: str) -> tuple[str, Any]:
    """The dotted key a PET__* variable names, checked against the settings, and its value."""
    parts = name[len(ENV_PREFIX):].lower().split("__")
    cls, key = root, ""
    for part in parts:
        if cls is None or part not in _field_names(cls):
            full = ".".join(parts)
            known = _field_names(cls) if cls is not None else []
            raise SettingsError(_unknown_message(full, part, key, known),
                                key=full, source=f"environment variable {name}")
        key = f"{key}.{part}" if key else part
        hint = _hints(cls)[part]
        cls = hint if _is_table(hint, types) else None
    value = _toml_value_or_text(raw)
    if (hint is str or hint in types) and not isinstance(value, str):
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


def _is_table(hint: Any, types: Mapping[type, ValueType]) -> bool:
    """Settings classes are TOML tables; a ValueType's class is written as a string."""
    return is_dataclass(hint) and hint not in types


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


def _build(cls: type, types: Mapping[type, ValueType], data: dict, prefix: str, default: Any) -> Any:
    names = _field_names(cls)
    for key in data:
        if key not in names:
            raise SettingsError(_unknown_message(prefix + key, key, prefix.rstrip("."), names),
                                key=prefix + key)
    hints = _hints(cls)
    values = {name: _convert(hints[name], types, data[name], prefix + name, getattr(default, name))
              for name in names if name in data}
    return replace(default, **values)


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_OK = {bool: lambda v: isinstance(v, bool),
       int: lambda v: isinstance(v, int) and not isinstance(v, bool),
       float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
       str: lambda v: isinstance(v, str)}


def _convert(hint: Any, types: Mapping[type, ValueType], value: Any, key: str, default: Any) -> Any:
    if _is_table(hint, types):
        if not isinstance(value, dict):
            raise _wrong_type(key, "a table", value)
        return _build(hint, types, value, key + ".", default)
    if hint in types:
        vt = types[hint]
        if not isinstance(value, str):
            raise _wrong_type(key, vt.expected, value)
        try:
            return vt.parse(value)
        except ValueError as e:
            forms = f"; accepted forms: {vt.forms}" if vt.forms else ""
            raise SettingsError(f"{key}: {e}{forms}", key) from None
    if not _OK[hint](value):
        raise _wrong_type(key, _EXPECTED[hint], value)
    return float(value) if hint is float else value


def _wrong_type(key: str, expected: str, value: Any) -> SettingsError:
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", dict: "table",
             list: "array"}
    kind = kinds.get(type(value), type(value).__name__)
    return SettingsError(f"{key} must be {expected}, got {value!r} ({kind})", key)


# -- validation helpers -------------------------------------------------------------------------

def split_bind(bind: str) -> tuple[str, int]:
    """host:port, IPv6 hosts in brackets; ValueError saying what is wrong."""
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


def require(ok: bool, message: str, *keys: str) -> None:
    if not ok:
        raise SettingsError(message, keys[0], keys=keys)


def at_least(key: str, value: float, low: float, why: str = "") -> None:
    require(value >= low, f"{key} must be >= {low}{why}, got {value}", key)


# -- rendering ----------------------------------------------------------------------------------

def to_toml(settings: Any, *, inline: tuple[type, ...] = (),
            types: Mapping[type, ValueType] | None = None) -> str:
    """The settings as TOML: one [section] per nested dataclass, the `inline` classes as
    inline tables; fields with metadata {"secret": True} are shown as "***" when set."""
    types = dict(types or {})
    lines: list[str] = []

    def is_section(value: Any) -> bool:
        return _is_table(type(value), types) and not isinstance(value, inline)

    def toml(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, str):
            return json.dumps(value)
        if type(value) in types:
            return json.dumps(types[type(value)].format(value))
        return "{ " + ", ".join(f"{f.name} = {toml(getattr(value, f.name))}"
                                for f in fields(value)) + " }"

    def render(obj: Any, section: str) -> None:
        own = [f for f in fields(obj) if not is_section(getattr(obj, f.name))]
        if own:
            lines.append(f"[{section}]")
            for f in own:
                value = getattr(obj, f.name)
                if f.metadata.get("secret") and value:
                    value = "***"
                lines.append(f"{f.name} = {toml(value)}")
            lines.append("")
        for f in fields(obj):
            value = getattr(obj, f.name)
            if is_section(value):
                render(value, f"{section}.{f.name}" if section else f.name)

    render(settings, "")
    return "\n".join(lines).rstrip("\n") + "\n"
