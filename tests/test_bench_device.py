"""bench/device.py and bench/latency.py, small: their rows are complete and consistent.

No timings are asserted. bench/device.py --quick runs the smallest cases on the Unix
port; the bytes it counts must be the sizes docs/protocol.md gives, and the messages
the device published must open with the round key, verify and reassemble into the
Update or Sum2 the case asked for. bench/latency.py --quick runs real rounds with 4
devices (the fewest a round takes: one sum participant and three updates).
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from pet import crypto
from pet.mask import DEFAULT_MCU_CONFIG as cfg
from pet.mask import Aggregation, aggregate_masks, unmask
from pet.multipart import Reassembler
from pet.wire import Message, Sum, Sum2, Update

ROOT = Path(__file__).resolve().parent.parent
ROW_KEYS = {"what", "ours", "unit", "reference", "reference_what", "ratio", "target", "met"}


def protocol_update_bytes(n: int, sums: int) -> tuple[int, int]:
    """docs/protocol.md: an Update is 280 + (n+1)*4 + 112 S bytes with its header; a payload
    above 3912 - 184 bytes goes in chunks of 3720 bytes, each with header 136, chunk header 8
    and seal 48."""
    payload = 280 + (n + 1) * 4 + 112 * sums - 136
    if payload <= 3912 - 184:
        return payload + 136 + 48, 1
    chunks = math.ceil(payload / (3912 - 184 - 8))
    return payload + chunks * (136 + 8 + 48), chunks


def sealed_messages(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4:at + 4 + length])
        at += 4 + length
    return out


def opened_payload(case: Path):
    """The payload the device's first round published, opened, checked and reassembled."""
    keys = json.loads((case / "keys.json").read_text())
    round_sk = bytes.fromhex(keys["round_sk"][0])
    round_pk = crypto.EncryptKeyPair.from_secret_key(round_sk).public_key
    reassembler, payloads = Reassembler(), []
    for sealed in sealed_messages(case / "device" / "sent.bin"):
        signed = crypto.seal_open(sealed, round_pk, round_sk)
        assert crypto.verify_message(signed)
        message = Message.decode(signed)
        assert message.participant_pk.hex() == keys["device_pk"]
        done = reassembler.add(message) if message.is_multipart else message
        if done is not None:
            payloads.append(done.payload)
    return keys, payloads


def test_device_bench_quick_rows_match_the_protocol(tmp_path):
    out, keep = tmp_path / "device.json", tmp_path / "cases"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "device.py"), "--quick", "--keep", str(keep),
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["id"]: r for r in json.loads(out.read_text())}
    assert all(ROW_KEYS <= r.keys() for r in rows.values())
    times = {i: r for i, r in rows.items() if i.endswith("/time")}
    assert set(times) == {"device/update/1000/1/time", "device/update/1000/2/time", "device/sum/1000/10/time"}
    for r in times.values():
        assert r["ours"] > 0 and r["reference"] > 0 and math.isclose(r["ratio"], r["ours"] / r["reference"])
        assert r["sent_bytes"] == r["protocol_bytes"] == r["reference_bytes"]  # device, formula, reference
        assert r["messages"] == r["protocol_messages"]
    for s in (1, 2):
        r = times[f"device/update/1000/{s}/time"]
        assert (r["sent_bytes"], r["messages"]) == protocol_update_bytes(1000, s)
        wire = rows[f"device/update/1000/{s}/wire"]
        assert math.isclose(wire["ours"], r["sent_bytes"] / 1000)
        assert math.isclose(wire["ratio"], r["sent_bytes"] / (4 * 1000 + 112 * s))
        assert wire["overhead_bytes"] == r["sent_bytes"] - 4 * 1000 - 112 * s
        assert wire["met"] is (wire["ratio"] <= 1)
    # the Sum role: a Sum message (232 bytes, sealed 280), then Sum2: 212 + (n+1)*4 bytes with
    # its header, a payload of 4,080 bytes here, so two chunks
    assert times["device/sum/1000/10/time"]["sent_bytes"] == 280 + 4080 + 2 * (136 + 8 + 48)
    assert all(rows[i.replace("/time", "/heap")]["ours"] > 0 for i in times)

    # what the device published opens with the round key, verifies and unmasks to its weights
    keys, payloads = opened_payload(keep / "update-1000-2")
    assert len(payloads) == 1 and isinstance(payloads[0], Update)
    update = payloads[0]
    assert len(update.local_seed_dict) == 2
    seeds = {crypto.seal_open(box, crypto.EncryptKeyPair.from_secret_key(bytes.fromhex(sk)).public_key,
                              bytes.fromhex(sk))
             for box, sk in zip(update.local_seed_dict.values(), keys["sum_sk"])}
    assert len(seeds) == 1
    aggregation = Aggregation(cfg, cfg, 1000)
    aggregation.aggregate(update.masked_model)
    model = unmask(aggregation.object, aggregate_masks(list(seeds), 1000, cfg), 1)
    weights = np.frombuffer((keep / "update-1000-2" / "device" / "weights.f32").read_bytes(), "<f4")
    assert np.allclose(model, weights, atol=1e-5)
    _, payloads = opened_payload(keep / "sum-1000-10")
    assert [type(p) for p in payloads] == [Sum, Sum2]
    assert len(payloads[1].model_mask) == 1000


def test_latency_bench_quick_completes_a_round(tmp_path):
    out = tmp_path / "latency.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "latency.py"), "--quick", "--keep",
                           str(tmp_path / "run"), "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and ROW_KEYS <= rows[0].keys()
    r = rows[0]
    assert r["participants"] == {"sum": 1, "update": 3, "sum2": 1}
    assert r["ours"] > 0 and r["slowest_cpu_s"] > 0
    assert math.isclose(r["reference"], r["slowest_cpu_s"] + 3 * 0.25)
    assert set(r["phases_s"]) == {"sum", "update", "sum2"}
    assert not list((tmp_path / "run").glob("fleet-4/devices/*/*.tmp"))
