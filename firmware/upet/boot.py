"""A participant's start (loaded through upet.transient, so this code leaves the heap once
the participant runs): the signing key, the MQTT client and the round saved in flash.
"""

import json
import os

from upet import ed25519, transient
from upet.participant import RoundParams
from upet.store import KEY, ROUND, WEIGHTS

_SECRETS = ("params", "sum_sig", "update_sig", "ephm_sk", "mask_seed", "seal_sk")


def signing_key(store):
    """(seed, pk): the provisioned key file, or a new key written on first boot."""
    raw = store.read(KEY)
    if raw is None:
        seed = os.urandom(32)
        pk = ed25519.public_key(seed)
        store.write(KEY, seed + pk)
        return seed, pk
    if len(raw) != 64:
        raise ValueError("%s: expected 64 bytes (seed || public key), got %d" % (store.path(KEY), len(raw)))
    seed, pk = raw[:32], ed25519.public_key(raw[:32])  # the object upet.ed25519 keeps anyway
    if pk != raw[32:]:
        raise ValueError("%s: the public key does not belong to the seed" % store.path(KEY))
    return seed, pk


def saved_round(store):
    """The round saved by Store.save_round, or None (none saved, or not JSON). Parsed from the
    file as it is read: no file-sized string in the heap."""
    try:
        with open(store.path(ROUND)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def client(p, c):
    """The MQTT client for config c's broker (TLS with the CA in ca.crt when configured)."""
    from upet.mqtt import MQTTClient
    b = c["broker"]
    ssl = None
    if b.get("tls"):
        ssl = {"server_hostname": b["host"]}
        ca = p.store.read("ca.crt")
        if ca:
            ssl["cadata"] = ca
        else:
            p.log("broker.tls without", p.store.path("ca.crt") + ": the broker's certificate is not checked")
    user = c.get("username") or p.me
    return MQTTClient(user, b["host"], port=b.get("port", 8883 if ssl else 1883), user=user,
                      password=c.get("password"), ssl_params=ssl)


def start(p, config, store, mqtt):
    """Fills in participant p from the config (which it does not keep: what it needs is in
    p's attributes and client), the key and the saved round to resume."""
    p.store = store
    c = config if config is not None else store.config()
    try:
        transient("config", "check", c, mqtt is None)
    except ValueError as e:
        raise ValueError("%s: %s" % (store.path("config.json"), e)) from None
    if c.get("table_rows"):  # Ed25519 fixed-base table: 864 bytes a row (default 4), fewer is slower
        ed25519.table_rows = c["table_rows"]  # before the key check below builds the table
    p.seed, p.pk = signing_key(store)
    p.me = p.pk.hex()
    p.prefix = c.get("prefix", "pet") + "/"
    # payload bytes per message: max sealed size - header 136 - seal 48
    p.max_payload = int(c.get("max_message_size") or 3912) - 184
    p.ack_ms = int(c.get("ack_timeout", 30) * 1000)
    p.sleep_s = c.get("deep_sleep_s") or 0
    p.awake_ms = int(c.get("awake_s", 10) * 1000)
    p.client = mqtt or client(p, c)
    p.client.set_callback(p._on_message)
    s = saved_round(store) or {}
    for k in _SECRETS:
        if s.get(k):
            s[k] = bytes.fromhex(s[k])
    p.state = s
    p.phase, p.sending, p.chunk = s.get("phase", "awaiting"), s.get("sending"), s.get("chunk", 0)
    p.params = RoundParams(s["params"]) if s.get("params") else None
    if p.phase == "update" and p.sending:
        try:
            os.stat(store.path(WEIGHTS))
        except OSError:  # the update to send is lost
            p.phase = "awaiting"
    if p.phase == "sum2":  # the global mask is not saved: build it again, send it from chunk 0
        p.sending, p.chunk = False, 0
    if p.phase != "awaiting":
        p.log("resuming", p.phase, "chunk", p.chunk)
