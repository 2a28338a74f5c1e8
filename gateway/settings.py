"""Gateway settings: dataclasses read from TOML, overridden by PET__* variables.

The loader is the coordinator's (pet.config). Everything is checked at
start-up, so a typo stops the gateway with a message naming the key instead
of leaving devices without answers later.
"""

from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from pet.config import (ENV_PREFIX, LOG_LEVELS, LogSettings, SettingsError, at_least, has, load, require,
                        split_bind, to_toml)

__all__ = ["ENV_PREFIX", "SettingsError", "GatewaySettings", "MqttSettings", "TlsSettings",
           "CoordinatorSettings", "QueueSettings", "HttpSettings", "LogSettings", "Settings",
           "load_settings", "LOG_LEVELS"]

DEFAULT_DATA_DIR = "pet-data"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _default_id() -> str:
    """The host name: one gateway per site, and a site's Raspberry Pi has its own name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]) or "gateway"


@dataclass(frozen=True)
class GatewaySettings:
    # Names this gateway: its status topic <prefix>/gw/<id>/status and its MQTT client id.
    id: str = field(default_factory=_default_id)


@dataclass(frozen=True)
class TlsSettings:
    enabled: bool = False
    ca_file: str = ""    # CA certificates to trust; empty: the system's
    cert_file: str = ""  # client certificate, for brokers that require one
    key_file: str = ""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", metadata={"secret": True})
    prefix: str = "pet"
    keepalive: int = 30
    # Fixed, so that the broker keeps this gateway's session (and the uplinks that arrive
    # while it is away) across restarts. Empty: "pet-gateway-<gateway.id>".
    client_id: str = ""
    # Seconds the broker keeps the session after the gateway disconnects.
    session_expiry: int = 7 * 24 * 3600
    tls: TlsSettings = TlsSettings()


@dataclass(frozen=True)
class CoordinatorSettings:
    url: str = "http://127.0.0.1:8081"
    token: str = field(default="", metadata={"secret": True})  # sent as Authorization: Bearer
    timeout: float = 10.0        # seconds for one HTTP request
    poll_interval: float = 0.25  # seconds between two looks at GET /status
    concurrency: int = 16        # requests in flight at once


@dataclass(frozen=True)
class QueueSettings:
    # The SQLite file of the store-and-forward queue. Empty: <data dir>/gateway-<id>.db.
    path: str = ""
    max_messages: int = 100_000
    max_bytes: int = 256 << 20
    max_message_bytes: int = 1 << 20  # largest uplink payload taken
    retry_min: float = 0.5   # seconds before the first retry while the coordinator is down
    retry_max: float = 30.0  # the longest wait between two retries


@dataclass(frozen=True)
class HttpSettings:
    bind: str = "127.0.0.1:8090"  # GET /health and GET /metrics; empty: no HTTP server


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings = GatewaySettings()
    mqtt: MqttSettings = MqttSettings()
    coordinator: CoordinatorSettings = CoordinatorSettings()
    queue: QueueSettings = QueueSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"pet-gateway-{self.gateway.id}"

    def validate(self) -> "Settings":
        """Raises SettingsError on the first rule broken; returns self."""
        _validate(self)
        return self

    def to_toml(self) -> str:
        """The effective settings as TOML; set secrets are shown as "***"."""
        return to_toml(self)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] = os.environ,
                  flags: Mapping[str, tuple[str, Any]] | None = None) -> Settings:
    """Defaults, then the TOML file at path (if any), then PET__* variables from env, then
    flags: {dotted key: (option, value)} from the command line."""
    def finish(settings: Settings, data: dict) -> Settings:
        if has(data, "queue.path") and settings.queue.path:
            return settings
        path = str(Path(DEFAULT_DATA_DIR, f"gateway-{settings.gateway.id}.db"))
        return replace(settings, queue=replace(settings.queue, path=path))

    return load(Settings, path, env, flags, finish=finish)


def _validate(s: Settings) -> None:
    require(bool(_NAME.fullmatch(s.gateway.id)),
            f"gateway.id must be letters, digits, '_', '.' or '-' (it is part of a topic), "
            f"got {s.gateway.id!r}", "gateway.id")

    m = s.mqtt
    require(bool(m.host) and not any(c.isspace() for c in m.host),
            f"mqtt.host must name the broker, got {m.host!r}", "mqtt.host")
    require(1 <= m.port <= 65535, f"mqtt.port must be from 1 to 65535, got {m.port}", "mqtt.port")
    levels = m.prefix.split("/")
    require(bool(m.prefix) and all(levels) and not any(c in m.prefix for c in "+#\0"),
            f"mqtt.prefix must be topic levels without wildcards or empty levels (e.g. \"pet\" "
            f"or \"site-a/pet\"), got {m.prefix!r}", "mqtt.prefix")
    require(5 <= m.keepalive <= 65535, f"mqtt.keepalive must be from 5 to 65535 seconds, "
            f"got {m.keepalive}", "mqtt.keepalive")
    require(not any(c in m.client_id for c in "+#/") and not any(c.isspace() for c in m.client_id),
            f"mqtt.client_id must not contain '+', '#', '/' or spaces, got {m.client_id!r}",
            "mqtt.client_id")
    require(0 <= m.session_expiry <= 2 ** 32 - 1, f"mqtt.session_expiry must be from 0 to "
            f"{2 ** 32 - 1} seconds, got {m.session_expiry}", "mqtt.session_expiry")
    require(not m.password or bool(m.username), "mqtt.password is set but mqtt.username is not",
            "mqtt.password", "mqtt.username")
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(m.tls, name)
        require(not value or os.path.isfile(value), f"mqtt.tls.{name}: no such file: {value}",
                f"mqtt.tls.{name}")
    require(m.tls.enabled or not (m.tls.ca_file or m.tls.cert_file or m.tls.key_file),
            "mqtt.tls files are given but mqtt.tls.enabled is false: set it to true to use TLS",
            "mqtt.tls.enabled")
    require(not m.tls.key_file or bool(m.tls.cert_file),
            "mqtt.tls.key_file is set but mqtt.tls.cert_file is not", "mqtt.tls.key_file")

    c = s.coordinator
    require(c.url.startswith(("http://", "https://")) and len(c.url.split("//", 1)[1]) > 0,
            f"coordinator.url must start with http:// or https://, got {c.url!r}", "coordinator.url")
    require(not any(ch.isspace() for ch in c.token),
            "coordinator.token must not contain whitespace (it is sent in an HTTP header)",
            "coordinator.token")
    for key, value in (("coordinator.timeout", c.timeout), ("coordinator.poll_interval", c.poll_interval)):
        require(value > 0 and math.isfinite(value), f"{key} must be a positive number of seconds, "
                f"got {value}", key)
    at_least("coordinator.concurrency", c.concurrency, 1)

    q = s.queue
    at_least("queue.max_messages", q.max_messages, 1)
    at_least("queue.max_message_bytes", q.max_message_bytes, 1)
    require(q.max_bytes >= q.max_message_bytes, f"queue.max_bytes must be >= "
            f"queue.max_message_bytes, got {q.max_bytes} < {q.max_message_bytes}",
            "queue.max_bytes", "queue.max_message_bytes")
    for key, value in (("queue.retry_min", q.retry_min), ("queue.retry_max", q.retry_max)):
        require(value > 0 and math.isfinite(value), f"{key} must be a positive number of seconds, "
                f"got {value}", key)
    require(q.retry_min <= q.retry_max, f"queue.retry_min must be <= queue.retry_max, got "
            f"{q.retry_min} > {q.retry_max}", "queue.retry_min", "queue.retry_max")

    if s.http.bind:
        try:
            split_bind(s.http.bind)
        except ValueError as e:
            raise SettingsError(f"http.bind must be host:port (e.g. 127.0.0.1:8090 or [::1]:8090) "
                                f"or empty: {e}, got {s.http.bind!r}", "http.bind") from None

    require(s.log.level.lower() in LOG_LEVELS,
            f"log.level must be one of {', '.join(LOG_LEVELS)}, got {s.log.level!r}", "log.level")
