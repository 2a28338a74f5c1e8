"""The golden vectors are what the reference implementation makes, and independent libraries agree."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl.public import PrivateKey, SealedBox

from pet import crypto
from pet.mask import MaskConfig, MaskObject
from pet.multipart import Reassembler
from pet.wire import Message, RoundParameters, Tag
from tools import vectors

VECTORS = Path(__file__).parent / "vectors"


def load(name):
    return json.loads((VECTORS / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(vectors.VECTOR_SETS))
def test_committed_vectors_are_current(name):
    made = json.dumps(vectors.VECTOR_SETS[name](), indent=1) + "\n"
    assert (VECTORS / f"{name}.json").read_text() == made, \
        f"tests/vectors/{name}.json is stale: run `make vectors` and review the diff"


def test_check_mode_reports_differences(tmp_path, capsys):
    assert vectors.main(["--out", str(tmp_path)]) == 0
    assert vectors.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "masks.json").write_text("{}")
    assert vectors.main(["--out", str(tmp_path), "--check"]) == 1
    assert "masks.json" in capsys.readouterr().out


def test_signatures_verify_with_openssl():
    for case in load("signatures")["cases"]:
        pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(case["pk"]))
        pk.verify(bytes.fromhex(case["signature"]), bytes.fromhex(case["message"]))  # raises if bad


def test_x25519_agrees_with_openssl():
    for case in load("keys")["x25519"]:
        sk = X25519PrivateKey.from_private_bytes(bytes.fromhex(case["scalar"]))
        shared = sk.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(case["u"])))
        assert shared.hex() == case["shared"]


def test_sealed_boxes_open_with_libsodium():
    data = load("sealed")
    for case in data["cases"]:
        box = SealedBox(PrivateKey(bytes.fromhex(case["recipient_sk"])))
        assert box.decrypt(bytes.fromhex(case["sealed"])).hex() == case["message"]
    many = data["one_ephemeral_many_recipients"]
    for r in many["recipients"]:
        box = SealedBox(PrivateKey(bytes.fromhex(r["recipient_sk"])))
        assert box.decrypt(bytes.fromhex(r["sealed"])).hex() == many["mask_seed"]


def test_messages_decode_and_open():
    data = load("messages")
    coordinator_sk = bytes.fromhex(data["coordinator_sk"])
    coordinator_pk = bytes.fromhex(data["coordinator_pk"])
    for name, tag in (("sum", Tag.SUM), ("update", Tag.UPDATE), ("sum2", Tag.SUM2)):
        case = data["messages"][name]
        plain = crypto.seal_open(bytes.fromhex(case["sealed"]), coordinator_pk, coordinator_sk)
        assert plain.hex() == case["signed"]
        assert crypto.verify_message(plain)
        msg = Message.decode(plain)
        assert msg.tag is tag and msg.coordinator_pk == coordinator_pk
    reassembler = Reassembler()
    results = []
    for chunk in data["update_chunked"]:
        plain = crypto.seal_open(bytes.fromhex(chunk["sealed"]), coordinator_pk, coordinator_sk)
        assert crypto.verify_message(plain)
        results.append(reassembler.add(Message.decode(plain)))
    assert results[-1] is not None and all(r is None for r in results[:-1])
    assert results[-1].payload.to_bytes().hex() == data["messages"]["update"]["payload"]
    # the seeds inside open with each sum participant's ephemeral key
    for sp in data["sum_participants"]:
        box = results[-1].payload.local_seed_dict[bytes.fromhex(sp["pk"])]
        seed = crypto.seal_open(box, bytes.fromhex(sp["ephm_pk"]), bytes.fromhex(sp["ephm_sk"]))
        assert seed.hex() == data["mask_seed"]


def test_mask_vectors_decode():
    for case in load("masks")["configs"]:
        cfg = MaskConfig.from_bytes(bytes.fromhex(case["config"]))
        assert str(cfg.order) == case["order"]
        for entry in case["masked"]:
            obj = MaskObject.from_bytes(bytes.fromhex(entry["masked"]))
            assert obj.vect.config == cfg and len(obj.vect) == len(case["weights"])


def test_rest_vectors_decode():
    for case in load("rest")["params"]:
        params = RoundParameters.from_bytes(bytes.fromhex(case["bytes"]))
        assert params.model_length == case["model_length"]
        assert params.mask_config.vect.to_bytes().hex() == case["mask_config"]
