"""What a participant keeps in its heap: nothing that grows with max_message_size.

A message is built, signed and sealed in a flash file a 256-byte window at a time
and published from there (upet.participant), so the largest message a participant
may send costs no heap, and a whole message, sent as one piece, goes out sealed
exactly as libsodium would seal it.
"""

import json

from nacl.bindings import crypto_box_seal_open, crypto_sign_open
from nacl.public import PrivateKey

from pet.wire import Message
from tests.firmware.conftest import run_upy


def participant_heap(tmp_path, size: int) -> int:
    """The live heap once a participant with this max_message_size is up."""
    root = tmp_path / f"dev{size}"
    root.mkdir()
    out = run_upy(f"""
        import gc, upet
        from upet.store import Store
        class Client:  # the participant only hands its message handler over while it starts
            def set_callback(self, cb):
                pass
        p = upet.Participant({json.dumps({"prefix": "pet", "max_message_size": size})},
                             store=Store({str(root)!r}), client=Client())
        gc.collect()
        print(gc.mem_alloc())
    """, tmp=tmp_path)
    return int(out.split()[0])


def test_the_largest_message_allowed_costs_no_heap(tmp_path):
    small, default, large = (participant_heap(tmp_path, size) for size in (1024, 3912, 1 << 20))
    assert max(small, default, large) - min(small, default, large) <= 256, (small, default, large)


def test_a_message_built_in_a_file_is_signed_and_sealed_as_libsodium_would(tmp_path):
    """A 650-weight Sum2 message, one piece (max_message_size 1 MiB): 2,700 bytes signed,
    sealed and published 256 at a time; libsodium opens it and checks its signature."""
    coordinator = PrivateKey.generate()
    root = tmp_path / "dev"
    root.mkdir()
    out = run_upy(f"""
        import upet
        from upet.participant import RoundParams
        from upet.store import Store
        class Client:
            def set_callback(self, cb):
                pass
            def publish_stream(self, topic, length, fill, qos=1, retain=False, timeout=60):
                parts = []
                fill(lambda data: parts.append(bytes(data)))
                sealed = b"".join(parts)
                print(len(sealed) == length, topic, sealed.hex())
        p = upet.Participant({{"prefix": "pet", "max_message_size": 1 << 20}}, store=Store({str(root)!r}),
                             client=Client())
        raw = bytearray(136)
        raw[0], raw[56] = 32, 32
        raw[8:40] = bytes.fromhex({bytes(coordinator.public_key).hex()!r})
        raw[96], raw[108], raw[112], raw[124] = 3, 10, 3, 10  # W32/F32/b0/m10, as four u32 each
        raw[128:136] = (650).to_bytes(8, "little")
        p.params, p.state, p.phase, p.sending = RoundParams(raw), {{"sum_sig": bytes(range(64))}}, "sum2", True
        p._agg = (bytearray(4 * 650), 0)  # the global mask: words, unit
        p._build()
        p._publish()
    """, tmp=tmp_path)
    ok, topic, sealed = out.split()[:3]
    assert ok == "True" and topic.startswith("pet/dev/")
    plain = crypto_box_seal_open(bytes.fromhex(sealed), bytes(coordinator.public_key), bytes(coordinator))
    msg = Message.decode(plain)
    assert crypto_sign_open(plain, msg.participant_pk) == plain[64:]
    assert msg.participant_pk.hex() == topic.split("/")[2] and len(plain) == 136 + 72 + 650 * 4 + 4 + 4
    assert (root / "round.msg").read_bytes() == bytes.fromhex(sealed)[48:]  # published from the file
