"""Golden test vectors: the reference implementation's bytes, for everybody else to reproduce.

Every input is derived from fixed labels (no randomness), so the files only
change when the protocol's bytes or maths change. The firmware tests read them
under the MicroPython Unix port; `tests/test_vectors.py` regenerates them and
fails on any difference.

    pet-vectors [--out tests/vectors] [--check]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import nacl.bindings as sodium
import numpy as np

from pet import crypto
from pet.crypto import EncryptKeyPair, SigningKeyPair
from pet.mask import (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG, Aggregation, MaskConfig, aggregate_masks,
                      derive_mask, mask_model, unmask)
from pet.mask.fixed import as_weights, clamp_scalar, fixed_array, unit_fixed
from pet.mask.rng import keystream_words
from pet.multipart import encode_messages
from pet.sortition import is_eligible, select_task
from pet.wire import (LocalSeedDict, MaskConfigPair, Model, RoundParameters, Sum, Sum2, SumDict, Update,
                      UpdateSeedDict)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors"

MASK_CONFIGS = [
    DEFAULT_MCU_CONFIG,
    MaskConfig.mcu(0, 20, wide=True),
    DEFAULT_CONFIG,
    MaskConfig.xaynet("Power2", "F32", "B2", "M6"),
    MaskConfig.xaynet("Integer", "F32", "B6", "M3"),
    MaskConfig.xaynet("Prime", "F64", "B0", "M3"),
    MaskConfig.xaynet("Prime", "I32", "B0", "M3"),
]


def label_bytes(label: str, n: int = 32) -> bytes:
    """Deterministic bytes for a label."""
    out = b""
    counter = 0
    while len(out) < n:
        out += crypto.sha256(f"pet-vectors/{label}/{counter}".encode())
        counter += 1
    return out[:n]


def signing_keys(label: str) -> SigningKeyPair:
    return SigningKeyPair.from_seed(label_bytes(label))


def encrypt_keys(label: str) -> EncryptKeyPair:
    return EncryptKeyPair.from_seed(label_bytes(label))


def test_weights(n: int, label: str) -> np.ndarray:
    """float32 weights in [-1, 1] with a few edge values, from a fixed seed."""
    rs = np.random.default_rng(int.from_bytes(label_bytes(label, 8), "little"))
    w = rs.uniform(-1, 1, n).astype(np.float32)
    edges = np.array([0.0, -0.0, 1.0, -1.0, 2 ** -20, -2 ** -20, 1e-40, 3.5], dtype=np.float32)
    w[:min(n, len(edges))] = edges[:n]
    return w


# -- the vector sets ----------------------------------------------------------------------------

def keys_vectors() -> dict:
    cases = []
    for i in range(4):
        s = signing_keys(f"signing/{i}")
        e = encrypt_keys(f"encrypt/{i}")
        cases.append({"ed25519_seed": s.seed.hex(), "ed25519_pk": s.public_key.hex(),
                      "ed25519_sk": s.secret_key.hex(), "x25519_seed": label_bytes(f"encrypt/{i}").hex(),
                      "x25519_sk": e.secret_key.hex(), "x25519_pk": e.public_key.hex()})
    dh = []
    for i in range(4):
        a, b = encrypt_keys(f"dh/a/{i}"), encrypt_keys(f"dh/b/{i}")
        dh.append({"scalar": a.secret_key.hex(), "u": b.public_key.hex(),
                   "shared": sodium.crypto_scalarmult(a.secret_key, b.public_key).hex()})
    return {"about": "Ed25519 key pairs from seeds (libsodium layout sk = seed || pk); X25519 key pairs "
                     "from seeds (crypto_box_seed_keypair) and raw X25519(scalar, u).",
            "keys": cases, "x25519": dh}


def signature_vectors() -> dict:
    cases = []
    for i, n in enumerate([0, 1, 35, 38, 64, 200, 1000]):
        keys = signing_keys(f"signing/{i % 4}")
        msg = label_bytes(f"message/{i}", n)
        cases.append({"seed": keys.seed.hex(), "pk": keys.public_key.hex(), "message": msg.hex(),
                      "signature": keys.sign(msg).hex()})
    return {"about": "Ed25519 detached signatures (RFC 8032, as libsodium).", "cases": cases}


def sealed_vectors() -> dict:
    cases = []
    for i, n in enumerate([0, 32, 100, 300]):
        recipient = encrypt_keys(f"seal/recipient/{i}")
        eph = encrypt_keys(f"seal/ephemeral/{i}")
        msg = label_bytes(f"seal/message/{i}", n)
        box = crypto.seal_with_ephemeral(msg, recipient.public_key, eph)
        cases.append({"recipient_pk": recipient.public_key.hex(), "recipient_sk": recipient.secret_key.hex(),
                      "ephemeral_sk": eph.secret_key.hex(), "ephemeral_pk": eph.public_key.hex(),
                      "message": msg.hex(), "sealed": box.hex()})
    eph = encrypt_keys("seal/one-ephemeral")
    seed = label_bytes("seal/mask-seed")
    many = []
    for i in range(3):
        r = encrypt_keys(f"seal/sum-participant/{i}")
        many.append({"recipient_pk": r.public_key.hex(), "recipient_sk": r.secret_key.hex(),
                     "sealed": crypto.seal_with_ephemeral(seed, r.public_key, eph).hex()})
    return {"about": "libsodium sealed boxes with a chosen ephemeral key: eph_pk || crypto_box(m, "
                     "nonce = BLAKE2b-192(eph_pk || recipient_pk)). 'one_ephemeral_many_recipients' seals "
                     "one mask seed to several sum participants with one ephemeral key, as the boards do.",
            "cases": cases,
            "one_ephemeral_many_recipients": {"ephemeral_sk": eph.secret_key.hex(),
                                              "ephemeral_pk": eph.public_key.hex(),
                                              "mask_seed": seed.hex(), "recipients": many}}


def sortition_vectors() -> dict:
    cases = []
    for i in range(6):
        keys = signing_keys(f"signing/{i % 4}")
        sig = keys.sign(label_bytes(f"sortition/{i}"))
        h = int.from_bytes(crypto.sha256(sig), "little")
        exact = Fraction(h, 2 ** 256 - 1)
        near = float(exact)
        for p in (math.nextafter(near, 0), near, math.nextafter(near, 2), 0.0, 0.5, 1.0, 0.01, 0.99):
            cases.append({"signature": sig.hex(), "probability": p, "probability_hex": p.hex(),
                          "eligible": is_eligible(sig, p)})
    tasks = []
    seed = label_bytes("sortition/round-seed")
    for i in range(12):
        keys = signing_keys(f"task/{i}")
        sel = select_task(keys, seed, 0.3, 0.6)
        tasks.append({"seed": keys.seed.hex(), "round_seed": seed.hex(), "sum": 0.3, "update": 0.6,
                      "task": sel.task.value, "sum_signature": sel.sum_signature.hex(),
                      "update_signature": sel.update_signature.hex() if sel.update_signature else None})
    return {"about": "eligible = int_le(SHA-256(signature)) / (2^256 - 1) <= probability, exactly; "
                     "threshold cases use the nearest doubles around the exact ratio. "
                     "Tasks: sign round_seed||'sum', then round_seed||'update'.",
            "cases": cases, "tasks": tasks}


def round_seed_vectors() -> dict:
    cases = []
    seed = bytes(32)
    for i in range(3):
        sk = encrypt_keys(f"round/{i}").secret_key
        new = crypto.next_round_seed(seed, sk, 0.5, 0.9)
        cases.append({"old_seed": seed.hex(), "round_sk": sk.hex(), "sum": 0.5, "update": 0.9,
                      "new_seed": new.hex()})
        seed = new
    return {"about": "new_seed = SHA-256(Ed25519_sign(seed = round X25519 sk, old_seed || f64le(sum) || "
                     "f64le(update))).", "cases": cases}


def _float_bits(w: np.ndarray) -> list[str]:
    if w.dtype == np.float32:
        return [f"{b:08x}" for b in w.view(np.uint32).tolist()]
    if w.dtype == np.float64:
        return [f"{b:016x}" for b in w.view(np.uint64).tolist()]
    return [str(int(x)) for x in w]


def mask_vectors() -> dict:
    out = []
    for cfg in MASK_CONFIGS:
        n = 12
        seed = label_bytes(f"mask/{cfg.name}/seed")
        if cfg.data_type == 2:
            weights = np.array([0, 1, -1, 1, 0, -1, 1, 1, 0, 0, -1, 1], dtype=np.int32)
        else:
            weights = test_weights(n, f"mask/{cfg.name}")
            if cfg.data_type == 1:
                weights = weights.astype(np.float64) / 3
        entries = []
        for scalar in (1.0, 0.375, 0.1):
            s = clamp_scalar(scalar, cfg)
            fixed = fixed_array(as_weights(weights, cfg), s, cfg)
            _, masked = mask_model(weights, scalar, cfg, seed=seed)
            entries.append({"scalar": scalar, "fixed": [str(int(v)) for v in fixed],
                            "unit_fixed": str(unit_fixed(s, cfg)), "masked": masked.to_bytes().hex()})
        mask = derive_mask(seed, n, cfg)
        words_needed = 32 if cfg.is_mcu else 64
        out.append({"config": cfg.to_bytes().hex(), "name": cfg.name, "order": str(cfg.order),
                    "bytes_per_number": cfg.bytes_per_number, "add_shift": str(cfg.add_shift),
                    "exp_shift": str(cfg.exp_shift), "max_models": str(cfg.max_models),
                    "mask_seed": seed.hex(), "keystream_words": keystream_words(seed, 0, words_needed).tolist(),
                    "weights": [float(x) for x in weights.tolist()], "weight_bits": _float_bits(weights),
                    "mask": mask.to_bytes().hex(), "masked": entries})
    return {"about": "Masks and masked models (MaskObject bytes) for fixed mask seeds: the scalar's mask "
                     "first, then one draw per weight. 'fixed' are the fixed-point values before masking.",
            "configs": out}


def aggregation_vectors() -> dict:
    out = []
    for cfg in (DEFAULT_MCU_CONFIG, DEFAULT_CONFIG):
        n = 8
        models, seeds = [], []
        agg = Aggregation(cfg, cfg, n)
        for j, scalar in enumerate((1.0, 0.5, 0.25)):
            w = test_weights(n, f"agg/{cfg.name}/{j}")
            seed = label_bytes(f"agg/{cfg.name}/seed/{j}")
            _, m = mask_model(w, scalar, cfg, seed=seed)
            agg.aggregate(m)
            models.append({"scalar": scalar, "weight_bits": _float_bits(w), "mask_seed": seed.hex(),
                           "masked": m.to_bytes().hex()})
            seeds.append(seed)
        global_mask = aggregate_masks(seeds, n, cfg)
        result = unmask(agg.object, global_mask, len(seeds))
        out.append({"config": cfg.to_bytes().hex(), "models": models,
                    "aggregate": agg.object.to_bytes().hex(), "global_mask": global_mask.to_bytes().hex(),
                    "global_model": [float(x) for x in result]})
    return {"about": "Aggregation of masked models and of masks, and the unmasked global model (float64).",
            "cases": out}


def _round_fixture():
    participant = signing_keys("message/participant")
    coordinator = encrypt_keys("message/coordinator")
    sums = [(signing_keys(f"message/sum/{i}"), encrypt_keys(f"message/ephemeral/{i}")) for i in range(2)]
    round_seed = label_bytes("message/round-seed")
    return participant, coordinator, sums, round_seed


def _signed_and_sealed(messages, participant, coordinator, label):
    out = []
    for i, m in enumerate(messages):
        signed = crypto.sign_message(m.encode(), participant)
        eph = encrypt_keys(f"{label}/seal/{i}")
        out.append({"unsigned": m.encode().hex(), "signed": signed.hex(),
                    "seal_ephemeral_sk": eph.secret_key.hex(),
                    "sealed": crypto.seal_with_ephemeral(signed, coordinator.public_key, eph).hex()})
    return out


def message_vectors() -> dict:
    participant, coordinator, sums, round_seed = _round_fixture()
    cfg = DEFAULT_MCU_CONFIG
    sum_sig = participant.sign(round_seed + b"sum")
    update_sig = participant.sign(round_seed + b"update")
    weights = test_weights(10, "message/weights")
    mask_seed = label_bytes("message/mask-seed")
    _, masked = mask_model(weights, 1.0, cfg, seed=mask_seed)
    one_eph = encrypt_keys("message/seed-ephemeral")
    seeds = LocalSeedDict((pk.public_key, crypto.seal_with_ephemeral(mask_seed, eph.public_key, one_eph))
                          for pk, eph in sums)
    payloads = {
        "sum": Sum(sum_sig, encrypt_keys("message/own-ephemeral").public_key),
        "update": Update(sum_sig, update_sig, masked, seeds),
        "sum2": Sum2(sum_sig, derive_mask(mask_seed, 10, cfg)),
    }
    out = {}
    for name, payload in payloads.items():
        messages = encode_messages(participant.public_key, coordinator.public_key, payload, 0)
        out[name] = _signed_and_sealed(messages, participant, coordinator, f"message/{name}")[0]
        out[name]["payload"] = payload.to_bytes().hex()
    chunked = encode_messages(participant.public_key, coordinator.public_key, payloads["update"], 200,
                              message_id=0x1234)
    return {"about": "Sum, Update and Sum2 messages of one participant: unsigned, signed (Ed25519 over "
                     "bytes [64, length)) and sealed to the coordinator with a chosen ephemeral key. "
                     "'update_chunked' is the same Update with max payload size 200 and message id 0x1234.",
            "participant_seed": participant.seed.hex(), "coordinator_sk": coordinator.secret_key.hex(),
            "coordinator_pk": coordinator.public_key.hex(), "round_seed": round_seed.hex(),
            "mask_config": cfg.to_bytes().hex(), "weight_bits": _float_bits(weights),
            "mask_seed": mask_seed.hex(), "seed_ephemeral_sk": one_eph.secret_key.hex(),
            "sum_participants": [{"pk": pk.public_key.hex(), "ephm_pk": eph.public_key.hex(),
                                  "ephm_sk": eph.secret_key.hex()} for pk, eph in sums],
            "messages": out,
            "update_chunked": _signed_and_sealed(chunked, participant, coordinator, "message/chunk")}


def rest_vectors() -> dict:
    participant, coordinator, sums, round_seed = _round_fixture()
    params = [RoundParameters(coordinator.public_key, 0.5, 0.9, round_seed, MaskConfigPair(c, c), 650)
              for c in (DEFAULT_CONFIG, DEFAULT_MCU_CONFIG)]
    sum_dict = SumDict((pk.public_key, eph.public_key) for pk, eph in sums)
    seed_dict = UpdateSeedDict((signing_keys(f"rest/update/{i}").public_key, label_bytes(f"rest/seed/{i}", 80))
                               for i in range(3))
    model = Model([Fraction(1, 2), Fraction(-1, 4), Fraction(0), Fraction(3, 10 ** 12),
                   Fraction(2 ** 70 + 1, 3)])
    return {"about": "bincode 1.x encodings of GET /params, /sums, /seeds and /model.",
            "params": [{"mask_config": p.mask_config.vect.to_bytes().hex(), "sum": p.sum, "update": p.update,
                        "model_length": p.model_length, "pk": p.pk.hex(), "seed": p.seed.hex(),
                        "bytes": p.to_bytes().hex()} for p in params],
            "sums": {"entries": {k.hex(): v.hex() for k, v in sum_dict.items()}, "bytes": sum_dict.to_bytes().hex()},
            "seeds": {"entries": {k.hex(): v.hex() for k, v in seed_dict.items()},
                      "bytes": seed_dict.to_bytes().hex()},
            "model": {"fractions": [f"{f.numerator}/{f.denominator}" for f in model],
                      "bytes": model.to_bytes().hex()}}


VECTOR_SETS = {
    "keys": keys_vectors, "signatures": signature_vectors, "sealed": sealed_vectors,
    "sortition": sortition_vectors, "round_seed": round_seed_vectors, "masks": mask_vectors,
    "aggregation": aggregation_vectors, "messages": message_vectors, "rest": rest_vectors,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text for every vector set."""
    return {f"{name}.json": json.dumps(make(), indent=1) + "\n" for name, make in VECTOR_SETS.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the golden test vectors.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder (default {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    files = render_all()
    if args.check:
        stale = [n for n, text in files.items()
                 if not (args.out / n).exists() or (args.out / n).read_text() != text]
        for name in stale:
            print(f"{args.out / name}: differs from what the reference implementation makes")
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
