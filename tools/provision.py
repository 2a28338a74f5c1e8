"""pet-provision: device identities, gateway credentials and the broker's password and ACL files.

Everything lives under one output directory, which holds the fleet's secrets:

    DIR/devices.json                 registry: name and public key of every device (no secrets)
    DIR/devices/<name>/key           64-byte Ed25519 secret key (seed || public key), mode 0600
    DIR/devices/<name>/config.json   what the firmware reads: broker, MQTT login, topic prefix, mode 0600
    DIR/gateways/<id>.json           a gateway's MQTT login, mode 0600
    DIR/mosquitto/passwd, acl        made from all of the above by `pet-provision broker`
    DIR/mosquitto/mosquitto.conf     a broker to try them with

A device's MQTT username is the hex of its public key, so the broker's ACL can
confine it to its own topics with one `%u` pattern per topic instead of one
block per device. Secrets are written to files and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from pet.crypto import SigningKeyPair

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # also a path part and an MQTT topic level


class ProvisionError(Exception):
    """Something the person running pet-provision has to fix; the message says what."""


# -- files ------------------------------------------------------------------------------------


def _write_secret(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only, from the first byte on (no chmod afterwards)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover .tmp from a crash
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise ProvisionError(f"cannot read {path}: {e}") from None


def _new_password() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 bits, no ':' (mosquitto's separator)


def _check_name(kind: str, name: str) -> str:
    if not NAME_RE.match(name):
        raise ProvisionError(f"{kind} {name!r} may only use letters, digits, '-' and '_' (at most 64)")
    return name


# -- devices ----------------------------------------------------------------------------------


def load_registry(out: Path) -> list[dict]:
    path = out / "devices.json"
    return _read_json(path) if path.exists() else []


def device_config(name: str, pk_hex: str, password: str, host: str, port: int, tls: bool,
                  prefix: str) -> dict:
    """The file the firmware reads at boot; docs/raspberry-pi.md describes every field."""
    return {
        "name": name,
        "broker": {"host": host, "port": port, "tls": tls},
        "username": pk_hex,
        "password": password,
        "prefix": prefix,
        "wifi": {"ssid": "", "password": ""},
        "scalar": 1.0,
    }


def provision_devices(out: Path, count: int, name_prefix: str = "dev", host: str = "raspberrypi.local",
                      port: int | None = None, tls: bool = False, prefix: str = "pet") -> list[dict]:
    """Add `count` devices next to the ones already provisioned; returns the new registry entries."""
    _check_name("--name-prefix", name_prefix)
    _check_topic_prefix(prefix)
    if count < 0:
        raise ProvisionError("--count must not be negative")
    if port is None:
        port = 8883 if tls else 1883
    registry = load_registry(out)
    taken = {d["name"] for d in registry}
    added, index = [], 1
    for _ in range(count):
        # A directory without a registry entry is left over from an interrupted run: skip its name.
        while (name := f"{name_prefix}{index:03d}") in taken or (out / "devices" / name).exists():
            index += 1
        keys = SigningKeyPair.generate()
        pk_hex = keys.public_key.hex()
        folder = out / "devices" / name
        folder.mkdir(parents=True, mode=0o700)
        _write_secret(folder / "key", keys.secret_key)
        config = device_config(name, pk_hex, _new_password(), host, port, tls, prefix)
        _write_secret(folder / "config.json", _json_bytes(config))
        added.append({"name": name, "pk": pk_hex})
    if added or not (out / "devices.json").exists():
        _write_text(out / "devices.json", json.dumps(registry + added, indent=2) + "\n")
    return added


# -- gateways ---------------------------------------------------------------------------------


def provision_gateway(out: Path, gateway_id: str = "site1") -> tuple[Path, bool]:
    """The gateway's MQTT login; an existing one is kept, so a running gateway stays logged in.
    Returns (path, created)."""
    _check_name("gateway id", gateway_id)
    path = out / "gateways" / f"{gateway_id}.json"
    if path.exists():
        return path, False
    creds = {"id": gateway_id, "username": f"gateway-{gateway_id}", "password": _new_password()}
    _write_secret(path, _json_bytes(creds))
    return path, True


# -- broker -----------------------------------------------------------------------------------


def _check_topic_prefix(prefix: str) -> str:
    if not all(prefix.split("/")) or any(c in prefix for c in "+#\0"):
        raise ProvisionError(f"topic prefix {prefix!r} must be topic levels without wildcards or empty "
                             f"levels, e.g. \"pet\" or \"site-a/pet\"")
    return prefix


def acl_text(prefix: str, gateway_usernames: list[str]) -> str:
    """mosquitto 2.0 ACL: `pattern` lines hold for every user, `topic` lines only for the
    `user` above them, and no `topic` line before the first `user`, so anonymous gets nothing."""
    p = _check_topic_prefix(prefix)
    lines = [
        "# Written by pet-provision broker; regenerate rather than edit.",
        "# Devices log in with the hex of their public key as username (%u): each may publish",
        "# only its own uplink, and read its own acks, its own seed column and the round state.",
        f"pattern write {p}/dev/%u/msg",
        f"pattern read {p}/dev/%u/ack",
        f"pattern read {p}/round/params",
        f"pattern read {p}/round/sums",
        f"pattern read {p}/round/seeds/%u",
        f"pattern read {p}/model/global",
        f"pattern read {p}/gw/+/status",
        "",
        "# Gateways relay everything under the prefix.",
    ]
    for username in gateway_usernames:
        lines += [f"user {username}", f"topic readwrite {p}/#", ""]
    return "\n".join(lines) + "\n"


def broker_conf_text(mosquitto_dir: Path) -> str:
    d = mosquitto_dir.resolve()
    return f"""\
# Written by pet-provision broker: a broker to try the provisioned fleet with,
#   mosquitto -c {d / "mosquitto.conf"}
# Start it as the owner of these files: started as root, mosquitto switches to the
# user "mosquitto" first, who cannot read them. On a Raspberry Pi use
# deploy/mosquitto/mosquitto.conf instead (TLS for the devices); see docs/raspberry-pi.md.
per_listener_settings false
allow_anonymous false
password_file {d / "passwd"}
acl_file {d / "acl"}
persistence true
persistence_location {d}/

# Devices and the gateway, unencrypted: only on a network you trust.
listener 1883
"""


def _logins(out: Path, prefix: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(device logins, gateway logins) as (username, password), read back from the secret files."""
    def login(path: Path, creds: dict) -> tuple[str, str]:
        if not isinstance(creds.get("username"), str) or not isinstance(creds.get("password"), str):
            raise ProvisionError(f"{path} lacks a username or password")
        return creds["username"], creds["password"]

    devices = []
    for entry in load_registry(out):
        path = out / "devices" / entry["name"] / "config.json"
        config = _read_json(path)
        if config.get("username") != entry["pk"]:
            raise ProvisionError(f"{path}: username does not match the public key in devices.json")
        if config.get("prefix") != prefix:
            raise ProvisionError(f"device {entry['name']} uses topic prefix {config.get('prefix')!r}, "
                                 f"not {prefix!r}: pass --prefix {config.get('prefix')}")
        devices.append(login(path, config))
    gateways = [login(path, _read_json(path)) for path in sorted((out / "gateways").glob("*.json"))]
    return devices, gateways


def write_broker_files(out: Path, prefix: str = "pet") -> tuple[int, int]:
    """(Re)write passwd, acl and mosquitto.conf under out/mosquitto; returns (devices, gateways)."""
    _check_topic_prefix(prefix)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise ProvisionError("mosquitto_passwd not found: install mosquitto "
                             "(sudo apt-get install mosquitto mosquitto-clients)")
    devices, gateways = _logins(out, prefix)
    folder = out / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    # Plain-text logins first, then mosquitto_passwd -U hashes the file in place: one process
    # for the whole fleet instead of one per login.
    plain = folder / "passwd.new"
    _write_secret(plain, "".join(f"{u}:{p}\n" for u, p in devices + gateways).encode())
    try:
        run = subprocess.run([tool, "-U", str(plain)], capture_output=True, text=True)
        if run.returncode != 0:
            raise ProvisionError(f"mosquitto_passwd -U failed: {(run.stderr or run.stdout).strip()}")
        os.chmod(plain, 0o600)
        os.replace(plain, folder / "passwd")
    finally:
        plain.unlink(missing_ok=True)
    _write_text(folder / "acl", acl_text(prefix, [u for u, _ in gateways]))
    _write_text(folder / "mosquitto.conf", broker_conf_text(folder))
    return len(devices), len(gateways)


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pet-provision",
        description="Create device identities and gateway logins, and the mosquitto password and "
                    "ACL files for them. All output goes under --out DIR, which holds secrets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("devices", help="add devices: key pair, MQTT login, config.json",
                         description="Add COUNT new devices under DIR/devices/ (existing ones are kept) "
                                     "and list them in DIR/devices.json. Each gets an Ed25519 key pair "
                                     "(DIR/devices/NAME/key) and the config its firmware reads "
                                     "(DIR/devices/NAME/config.json). Broker options apply to the new "
                                     "devices only.")
    dev.add_argument("--out", required=True, type=Path, metavar="DIR", help="provisioning directory")
    dev.add_argument("--count", required=True, type=int, metavar="N", help="how many devices to add")
    dev.add_argument("--name-prefix", default="dev", metavar="P", help="names are P001, P002, ... (default: dev)")
    dev.add_argument("--broker", default="raspberrypi.local", metavar="HOST",
                     help="broker host name or address the devices connect to (default: raspberrypi.local)")
    dev.add_argument("--port", type=int, metavar="PORT", help="broker port (default: 8883 with --tls, else 1883)")
    dev.add_argument("--tls", action="store_true", help="devices connect with TLS")
    dev.add_argument("--prefix", default="pet", metavar="P", help="MQTT topic prefix (default: pet)")

    gw = sub.add_parser("gateway", help="a gateway's MQTT login",
                        description="Write the MQTT login of gateway ID (username gateway-ID) to "
                                    "DIR/gateways/ID.json. An existing login is kept.")
    gw.add_argument("--out", required=True, type=Path, metavar="DIR", help="provisioning directory")
    gw.add_argument("--id", default="site1", dest="gateway_id", metavar="ID", help="gateway id (default: site1)")

    br = sub.add_parser("broker", help="mosquitto passwd, acl and an example mosquitto.conf",
                        description="(Re)write DIR/mosquitto/passwd (hashed by mosquitto_passwd), "
                                    "DIR/mosquitto/acl and an example DIR/mosquitto/mosquitto.conf "
                                    "from every provisioned device and gateway.")
    br.add_argument("--out", required=True, type=Path, metavar="DIR", help="provisioning directory")
    br.add_argument("--prefix", default="pet", metavar="P", help="MQTT topic prefix (default: pet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out
    try:
        if args.command == "devices":
            added = provision_devices(out, args.count, args.name_prefix, args.broker, args.port,
                                      args.tls, args.prefix)
            for d in added:
                print(f"{d['name']}  {d['pk']}  {out / 'devices' / d['name']}/")
            total = len(load_registry(out))
            print(f"{len(added)} added, {total} in {out / 'devices.json'}; "
                  f"run `pet-provision broker --out {out}` to update the broker's logins")
        elif args.command == "gateway":
            path, created = provision_gateway(out, args.gateway_id)
            print(f"{'wrote' if created else 'kept existing'} {path}")
        else:
            n_devices, n_gateways = write_broker_files(out, args.prefix)
            folder = out / "mosquitto"
            print(f"wrote {folder / 'passwd'} ({n_devices} devices, {n_gateways} gateways), "
                  f"{folder / 'acl'}, {folder / 'mosquitto.conf'}")
            if n_gateways == 0:
                print(f"warning: no gateway login yet: run `pet-provision gateway --out {out}`", file=sys.stderr)
    except ProvisionError as e:
        print(f"pet-provision: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
