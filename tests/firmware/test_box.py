"""Sealed boxes on the board (upet.box, upet.crypto) against libsodium.

Expected values come from libsodium: PyNaCl where it exposes the function,
otherwise the same library through ctypes (PyNaCl's own build exports the
primitives it does not wrap). Each `upy` test runs with the viper kernels and
with the Python fallback; `test_kernels_with_32_bit_words` runs the viper
sources in CPython with 32-bit arithmetic, as the boards do.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import struct
import sys
import types

import nacl._sodium
import nacl.bindings as sodium
from nacl.public import PrivateKey, SealedBox

from tests.firmware.conftest import FIRMWARE, VECTORS

LENGTHS = (0, 1, 63, 64, 65, 300, 4000)

_lib = ctypes.CDLL(nacl._sodium.__file__)
_lib.crypto_stream_salsa20_xor_ic.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
                                              ctypes.c_char_p, ctypes.c_uint64, ctypes.c_char_p]
_lib.crypto_core_hsalsa20.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p]
_lib.crypto_stream_xsalsa20.argtypes = [ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p, ctypes.c_char_p]
_lib.crypto_onetimeauth_poly1305.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong,
                                             ctypes.c_char_p]


def salsa20_xor_ic(msg: bytes, nonce8: bytes, counter: int, key: bytes) -> bytes:
    out = ctypes.create_string_buffer(len(msg))
    assert _lib.crypto_stream_salsa20_xor_ic(out, msg, len(msg), nonce8, counter, key) == 0
    return out.raw


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    out = ctypes.create_string_buffer(32)
    assert _lib.crypto_core_hsalsa20(out, nonce16, key, None) == 0
    return out.raw


def xsalsa20(n: int, nonce24: bytes, key: bytes) -> bytes:
    out = ctypes.create_string_buffer(n)
    assert _lib.crypto_stream_xsalsa20(out, n, nonce24, key) == 0
    return out.raw


def poly1305(msg: bytes, key: bytes) -> bytes:
    out = ctypes.create_string_buffer(16)
    assert _lib.crypto_onetimeauth_poly1305(out, msg, len(msg), key) == 0
    return out.raw


def det(n: int, seed: int) -> bytes:
    """n reproducible pseudo-random bytes."""
    out = b""
    while len(out) < n:
        out += hashlib.sha256(b"%d/%d" % (seed, len(out))).digest()
    return out[:n]


KEYS = [bytes(32), b"\xff" * 32, bytes(range(32)), det(32, 1)]  # zeros, maxima (bit 31 set), counting, random


def lines(out: str) -> list[str]:
    return out.split()


PRELUDE = """
import binascii
def h(s):
    return binascii.unhexlify(s)
def p(b):
    print(binascii.hexlify(b).decode() if len(b) else '-')
"""


def unhex(s: str) -> bytes:
    return b"" if s == "-" else bytes.fromhex(s)


# --- primitives ----------------------------------------------------------------------------------

SALSA_COUNTERS = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE_FFFFFFFF, 2 ** 64 - 1)


def test_salsa20_keystream_matches_libsodium(upy):
    """The kernel XORs the keystream over the block counter's carries and wrap, and keeps the counter."""
    cases = []
    for i, key in enumerate(KEYS):
        for nonce in (bytes(8), b"\xff" * 8, det(8, 10 + i)):
            for ctr in SALSA_COUNTERS:
                cases.append((key, nonce, ctr, det(200, ctr % 1000 + i)))
    script = PRELUDE + f"""
from upet import kernels, box
k = kernels.load("box")
for key, nonce, ctr, msg in {[(a.hex(), b.hex(), c, d.hex()) for a, b, c, d in cases]!r}:
    st = box.salsa_state(h(key), h(nonce) + ctr.to_bytes(8, "little"))
    buf = bytearray(h(msg))
    k.salsa20_xor(st, buf, 0, len(buf), 0)
    p(buf)
    p(st[32:40])
"""
    out = lines(upy(script))
    for n, (key, nonce, ctr, msg) in enumerate(cases):
        assert unhex(out[2 * n]) == salsa20_xor_ic(msg, nonce, ctr, key), (key.hex(), nonce.hex(), ctr)
        assert unhex(out[2 * n + 1]) == ((ctr + 3) % 2 ** 64).to_bytes(8, "little")


def test_hsalsa20_matches_libsodium(upy):
    cases = [(key, nonce) for key in KEYS for nonce in (bytes(16), b"\xff" * 16, det(16, 5))]
    script = PRELUDE + f"""
from upet.box import hsalsa20
for key, nonce in {[(a.hex(), b.hex()) for a, b in cases]!r}:
    p(hsalsa20(h(key), h(nonce)))
"""
    out = lines(upy(script))
    assert [unhex(x) for x in out] == [hsalsa20(key, nonce) for key, nonce in cases]


def test_box_key_is_libsodium_beforenm(upy):
    """crypto_box_beforenm = HSalsa20 of the X25519 shared secret (computed here, in CPython), zero nonce."""
    pairs = [sodium.crypto_box_keypair() for _ in range(3)]
    cases = [(pk, sk, sodium.crypto_scalarmult(sk, pk)) for (pk, _), (_, sk) in zip(pairs, pairs[1:] + pairs[:1])]
    script = PRELUDE + f"""
from upet import box
for shared in {[c[2].hex() for c in cases]!r}:
    p(box.hsalsa20(h(shared), bytes(16)))
"""
    out = lines(upy(script))
    assert [unhex(x) for x in out] == [sodium.crypto_box_beforenm(pk, sk) for pk, sk, _ in cases]


def test_xsalsa20_stream_in_pieces(upy):
    """The XSalsa20 keystream (HSalsa20 subkey, then Salsa20) XORed in pieces of any size
    continues where the last one stopped, given the position in the block, as a
    secretbox takes the first 32 bytes for Poly1305 and the message from byte 32 on."""
    key, nonce = det(32, 7), det(24, 8)
    splits = [0, 1, 32, 33, 63, 64, 65, 127, 128, 200, 333, 700]
    script = PRELUDE + f"""
from upet import box, kernels
k = kernels.load("box")
key, nonce = h({key.hex()!r}), h({nonce.hex()!r})
def stream():
    return box.salsa_state(box.hsalsa20(key, nonce[:16]), nonce[16:] + bytes(8))
s = stream()
buf = bytearray(700)
cuts = {splits!r}
for a, b in zip(cuts, cuts[1:]):
    k.salsa20_xor(s, memoryview(buf)[a:], 0, b - a, a & 63)  # through a memoryview at an odd offset
p(buf)
whole = bytearray(700)
k.salsa20_xor(stream(), whole, 0, 700, 0)
print(whole == buf)
"""
    out = lines(upy(script))
    assert unhex(out[0]) == xsalsa20(700, nonce, key)
    assert out[1] == "True"


def test_poly1305_rfc8439_vector(upy):
    out = upy(PRELUDE + """
from upet.box import poly1305
p(poly1305(h("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b"),
           b"Cryptographic Forum Research Group"))
""")
    assert out.strip() == "a8061dc1305136c6c22b8baf0c0127a9"


def test_poly1305_matches_libsodium(upy):
    """Maximal keys and messages (every limb full), zeros, odd lengths, and the message in a
    memoryview at an odd offset (as a box passes it)."""
    keys = [bytes(32), b"\xff" * 32, det(32, 3), b"\xff" * 16 + bytes(16)]
    msgs = [b"\xff" * n for n in (15, 16, 17, 64, 300)] + [det(n, n) for n in (0, 1, 63, 65, 4000)]
    cases = [(k, m) for k in keys for m in msgs]
    script = PRELUDE + f"""
from upet.box import poly1305
for key, msg in {[(k.hex(), m.hex()) for k, m in cases]!r}:
    key, msg = h(key), h(msg)
    tag = poly1305(key, msg)
    p(tag)
    print(poly1305(key, memoryview(b"abc" + msg)[3:]) == tag)
"""
    out = lines(upy(script))
    for n, (key, msg) in enumerate(cases):
        assert unhex(out[2 * n]) == poly1305(msg, key), (key.hex(), len(msg))
        assert out[2 * n + 1] == "True"


def test_blake2b_matches_hashlib(upy):
    msgs = [det(n, n) for n in (0, 1, 64, 127, 128, 129, 300)] + [b"\xff" * 64]
    script = PRELUDE + f"""
from upet.box import blake2b
for m in {[m.hex() for m in msgs]!r}:
    p(blake2b(h(m), 24))
    p(blake2b(h(m)))
"""
    out = lines(upy(script))
    for n, m in enumerate(msgs):
        assert unhex(out[2 * n]) == hashlib.blake2b(m, digest_size=24).digest()
        assert unhex(out[2 * n + 1]) == hashlib.blake2b(m).digest()


def test_secretbox_matches_libsodium(upy):
    """crypto_secretbox_easy both ways, and every altered or short box refused."""
    key, nonce = det(32, 21), det(24, 22)
    msgs = [det(n, 100 + n) for n in LENGTHS]
    boxes = [sodium.crypto_secretbox_easy(m, nonce, key) for m in msgs]
    script = PRELUDE + f"""
from upet import crypto
key, nonce = h({key.hex()!r}), h({nonce.hex()!r})
def refused(b):
    try:
        crypto.secretbox_open(b, nonce, key)
    except ValueError:
        return True
    return False
for m, theirs in {[(m.hex(), b.hex()) for m, b in zip(msgs, boxes)]!r}:
    m, theirs = h(m), h(theirs)
    p(crypto.secretbox(m, nonce, key))
    print(crypto.secretbox_open(theirs, nonce, key) == m)
    for i in (0, 15, 16, len(theirs) - 1):
        if i < len(theirs):
            bad = bytearray(theirs)
            bad[i] ^= 0x80
            print(refused(bad))
    print(refused(theirs[:15]), refused(theirs[:-1]) if len(theirs) > 16 else True)
"""
    out = lines(upy(script))
    at = 0
    for m, b in zip(msgs, boxes):
        assert unhex(out[at]) == b, len(m)
        checks = 1 + (4 if len(b) > 16 else 3) + 2
        assert out[at + 1:at + 1 + checks] == ["True"] * checks, len(m)
        at += 1 + checks
    assert at == len(out)


def test_sealed_vectors_with_shared_keys_from_cpython(upy):
    """Every tests/vectors/sealed.json box, built from a secretbox, BLAKE2b and a shared secret computed here."""
    cases = json.loads((VECTORS / "sealed.json").read_text())["cases"]
    shared = [sodium.crypto_scalarmult(bytes.fromhex(c["ephemeral_sk"]), bytes.fromhex(c["recipient_pk"]))
              for c in cases]
    script = PRELUDE + f"""
import json
from upet import crypto
from upet.box import blake2b, hsalsa20
cases = json.load(open(VECTORS + "/sealed.json"))["cases"]
for c, shared in zip(cases, {[s.hex() for s in shared]!r}):
    eph, pk = h(c["ephemeral_pk"]), h(c["recipient_pk"])
    nonce = blake2b(eph + pk, 24)
    key = hsalsa20(h(shared), bytes(16))
    sealed = eph + crypto.secretbox(h(c["message"]), nonce, key)
    print(sealed == h(c["sealed"]))
    print(crypto.secretbox_open(sealed[32:], nonce, key) == h(c["message"]))
"""
    assert lines(upy(script)) == ["True"] * (2 * len(cases))


# --- sealed boxes (upet.crypto) ------------------------------------------------------------------

def test_seal_reproduces_vectors_and_opens_them(upy):
    out = upy("""
import json
from upet import crypto
cases = json.load(open(VECTORS + "/sealed.json"))["cases"]
for c in cases:
    h = bytes.fromhex
    sealed = crypto.seal(h(c["message"]), h(c["recipient_pk"]), h(c["ephemeral_sk"]))
    print(sealed == h(c["sealed"]))
    print(crypto.seal_open(h(c["sealed"]), h(c["recipient_pk"]), h(c["recipient_sk"])) == h(c["message"]))
    print(crypto.Sealer(h(c["ephemeral_sk"])).public_key == h(c["ephemeral_pk"]))
""")
    n = len(json.loads((VECTORS / "sealed.json").read_text())["cases"])
    assert lines(out) == ["True"] * (3 * n)


def test_one_ephemeral_key_many_recipients(upy):
    """One Sealer: one ephemeral public key, one box per recipient; a second box to a recipient is refused."""
    out = upy("""
import json
from upet import crypto
v = json.load(open(VECTORS + "/sealed.json"))["one_ephemeral_many_recipients"]
h = bytes.fromhex
s = crypto.Sealer(h(v["ephemeral_sk"]))
print(s.public_key == h(v["ephemeral_pk"]))
for r in v["recipients"]:
    print(s.seal(h(v["mask_seed"]), h(r["recipient_pk"])) == h(r["sealed"]))
    print(crypto.seal_open(h(r["sealed"]), h(r["recipient_pk"]), h(r["recipient_sk"])) == h(v["mask_seed"]))
try:
    s.seal(h(v["mask_seed"]), h(v["recipients"][0]["recipient_pk"]))
    print("sealed twice")
except ValueError:
    print(True)
""")
    n = len(json.loads((VECTORS / "sealed.json").read_text())["one_ephemeral_many_recipients"]["recipients"])
    assert lines(out) == ["True"] * (2 + 2 * n)


def test_a_message_sealed_in_pieces_is_the_same_box(upy):
    """Sealer.seal_pieces (a message larger than the heap, a piece at a time) gives the box
    seal_into gives, for every split, and refuses a short piece that is not the last."""
    out = upy("""
import json
from upet import crypto
h = bytes.fromhex
v = json.load(open(VECTORS + "/sealed.json"))["cases"][-1]
msg = bytes(range(256)) * 4 + bytes(range(77))
whole = crypto.seal(msg, h(v["recipient_pk"]), h(v["ephemeral_sk"]))
for size in (16, 48, 64, 256, 2048):
    m = bytearray(msg)
    pieces = (memoryview(m)[i:i + size] for i in range(0, len(m), size))
    head = crypto.Sealer(h(v["ephemeral_sk"])).seal_pieces(h(v["recipient_pk"]), pieces)
    print(head + m == whole)
try:
    crypto.Sealer().seal_pieces(h(v["recipient_pk"]), (bytearray(7), bytearray(16)))
    print("a short piece before the last")
except ValueError as e:
    print("refused" if str(e) == "only the last piece may be shorter than a multiple of 16 bytes" else e)
""")
    assert lines(out) == ["True"] * 5 + ["refused"]


def test_boxes_cross_between_board_and_libsodium(upy):
    """Boxes sealed on the board (fresh ephemeral key) open with PyNaCl, and PyNaCl's open on the board."""
    recipient = PrivateKey(det(32, 40))
    msgs = [det(n, 200 + n) for n in LENGTHS]
    theirs = [SealedBox(recipient.public_key).encrypt(m) for m in msgs]
    script = PRELUDE + f"""
from upet import crypto
pk, sk = h({bytes(recipient.public_key).hex()!r}), h({bytes(recipient).hex()!r})
for m, theirs in {[(m.hex(), t.hex()) for m, t in zip(msgs, theirs)]!r}:
    p(crypto.seal(h(m), pk))
    print(crypto.seal_open(h(theirs), pk, sk) == h(m))
"""
    out = lines(upy(script))
    assert len(out) == 2 * len(msgs)
    for n, m in enumerate(msgs):
        mine = unhex(out[2 * n])
        assert len(mine) == len(m) + 48
        assert SealedBox(recipient).decrypt(mine) == m
        assert out[2 * n + 1] == "True"
    assert len({out[2 * n][:64] for n in range(len(msgs))}) == len(msgs)  # a fresh ephemeral key each time


def test_altered_short_and_foreign_boxes_are_refused(upy):
    recipient, other = PrivateKey(det(32, 41)), PrivateKey(det(32, 42))
    sealed = SealedBox(recipient.public_key).encrypt(det(65, 43))
    low_order = bytes(32)  # the zero point: no shared secret
    script = PRELUDE + f"""
from upet import crypto
sealed = h({sealed.hex()!r})
pk, sk = h({bytes(recipient.public_key).hex()!r}), h({bytes(recipient).hex()!r})
def refused(box, pk=pk, sk=sk):
    try:
        crypto.seal_open(box, pk, sk)
    except ValueError as e:
        return len(str(e)) > 0
    return False
print(crypto.seal_open(sealed, pk, sk) == h({det(65, 43).hex()!r}))
for i in (0, 31, 32, 47, 48, len(sealed) - 1):
    bad = bytearray(sealed)
    bad[i] ^= 1
    print(refused(bad))
print(refused(sealed[:47]), refused(b""), refused(sealed[:-1]))
print(refused(sealed, h({bytes(other.public_key).hex()!r}), h({bytes(other).hex()!r})))
print(refused(h({low_order.hex()!r}) + sealed[32:]))
try:
    crypto.seal(b"x", h({low_order.hex()!r}))
    print("sealed to a low-order key")
except ValueError:
    print(True)
"""
    assert lines(upy(script)) == ["True"] * 13


def test_seal_reproduces_signed_messages(upy):
    """messages.json: `signed` sealed with `seal_ephemeral_sk` to the coordinator gives `sealed`."""
    out = upy("""
import json
from upet import crypto
v = json.load(open(VECTORS + "/messages.json"))
h = bytes.fromhex
pk, sk = h(v["coordinator_pk"]), h(v["coordinator_sk"])
for m in list(v["messages"].values()) + v["update_chunked"]:
    sealed = crypto.seal(h(m["signed"]), pk, h(m["seal_ephemeral_sk"]))
    print(sealed == h(m["sealed"]))
    print(crypto.seal_open(sealed, pk, sk) == h(m["signed"]))
""")
    v = json.loads((VECTORS / "messages.json").read_text())
    assert lines(out) == ["True"] * (2 * (len(v["messages"]) + len(v["update_chunked"])))


def test_seal_of_a_long_message_in_a_64k_heap(upy):
    """A 3912-byte message (an update chunk's size) seals in a 64 KB heap, and opens and seals again in place."""
    recipient = PrivateKey(det(32, 50))
    script = f"""
import gc, binascii
from upet import crypto, x25519  # loaded before the message, as a participant has it
pk, sk = binascii.unhexlify({bytes(recipient.public_key).hex()!r}), binascii.unhexlify({bytes(recipient).hex()!r})
def show(box):
    for i in range(0, len(box), 256):
        print(binascii.hexlify(box[i:i + 256]).decode(), end="")
    print()
msg = bytearray(3912)
for i in range(3912):
    msg[i] = (i * 131 + 7) & 0xFF
gc.collect()
sealed = crypto.seal(msg, pk)
show(sealed)
del msg
gc.collect()
buf = bytearray(sealed)
del sealed
crypto.seal_open_into(buf, pk, sk)
print(all(buf[48 + i] == (i * 131 + 7) & 0xFF for i in range(3912)))
crypto.Sealer().seal_into(buf, pk)
show(buf)
"""
    out = lines(upy(script, heap="64k"))
    expected = bytes((i * 131 + 7) & 0xFF for i in range(3912))
    assert SealedBox(recipient).decrypt(bytes.fromhex(out[0])) == expected
    assert out[1] == "True"
    assert SealedBox(recipient).decrypt(bytes.fromhex(out[2])) == expected


# --- the viper kernels with 32-bit words -----------------------------------------------------------

class U32(int):
    """A viper `uint` on a 32-bit board: results wrap at 2^32; `carried` counts sums and products that did."""

    carried = 0

    @staticmethod
    def of(x: int, track: bool = False) -> "U32":
        if track and not 0 <= x < 2 ** 32:
            U32.carried += 1
        return U32(x & 0xFFFFFFFF)

    def __add__(self, o): return U32.of(int(self) + int(o), True)
    __radd__ = __add__
    def __sub__(self, o): return U32.of(int(self) - int(o), True)
    def __rsub__(self, o): return U32.of(int(o) - int(self), True)
    def __mul__(self, o): return U32.of(int(self) * int(o), True)
    __rmul__ = __mul__
    def __lshift__(self, o): return U32.of(int(self) << int(o))
    def __rshift__(self, o): return U32.of(int(self) >> int(o))
    def __and__(self, o): return U32.of(int(self) & int(o))
    __rand__ = __and__
    def __or__(self, o): return U32.of(int(self) | int(o))
    __ror__ = __or__
    def __xor__(self, o): return U32.of(int(self) ^ int(o))
    __rxor__ = __xor__


class Ptr:
    """ptr8 / ptr32 over a buffer: loads give uint-width values, stores keep the low bits."""

    def __init__(self, buf, size):
        self.buf, self.size = memoryview(buf).cast("B"), size

    def __getitem__(self, i):
        return int.from_bytes(self.buf[i * self.size:(i + 1) * self.size], "little")

    def __setitem__(self, i, v):
        self.buf[i * self.size:(i + 1) * self.size] = (int(v) % 2 ** (8 * self.size)).to_bytes(self.size, "little")


def load_viper_32(name: str) -> types.ModuleType:
    """upet/native/<name>.py executed by CPython with 32-bit viper arithmetic."""
    mod = types.ModuleType(name)
    mod.__dict__.update(uint=lambda x: U32.of(int(x)), ptr8=lambda b: Ptr(b, 1), ptr32=lambda b: Ptr(b, 4))
    sys.modules.setdefault("micropython", types.SimpleNamespace(viper=lambda f: f))
    exec(compile((FIRMWARE / "upet" / "native" / f"{name}.py").read_text(), name, "exec"), mod.__dict__)
    return mod


def test_kernels_with_32_bit_words():
    """The viper sources give libsodium's bytes when every uint wraps at 2^32, and Poly1305's sums never do."""
    saved = sys.modules.pop("micropython", None)
    try:
        k = load_viper_32("box")
    finally:
        sys.modules.pop("micropython", None)
        if saved is not None:
            sys.modules["micropython"] = saved

    for key, ctr in ((b"\xff" * 32, 0xFFFFFFFF), (det(32, 60), 2 ** 64 - 1), (bytes(32), 0)):
        nonce = det(8, ctr % 97)
        st = bytearray(128)
        st[0:64] = struct.pack("<I16sI8s8sI16sI", 0x61707865, key[:16], 0x3320646E, nonce,
                               ctr.to_bytes(8, "little"), 0x79622D32, key[16:], 0x6B206574)
        buf = bytearray(b"\xff" * 100)
        k.salsa20_xor(st, buf, 0, 100, 0)
        assert bytes(buf) == salsa20_xor_ic(b"\xff" * 100, nonce, ctr, key)

    for msg in (b"\xff" * 16, b"\xff" * 16 + bytes(16) + b"\x80" * 16, b"\xff" * 64):
        iv = bytes.fromhex("08c9bcf367e6096a3ba7ca8485ae67bb2bf894fe72f36e3cf1361d5f3af54fa5"
                           "d182e6ad7f520e511f6c3e2b8c68059b6bbd41fbabd9831f79217e1319cde05b")
        state = bytearray(192)
        state[0:64] = iv
        state[0:4] = (int.from_bytes(iv[0:4], "little") ^ 0x01010000 ^ 24).to_bytes(4, "little")
        state[64:128] = state[0:64]
        state[128:192] = iv
        block = bytearray(128)
        block[:len(msg)] = msg
        k.blake2b_compress(state, block, len(msg), 1)
        assert bytes(state[:24]) == hashlib.blake2b(msg, digest_size=24).digest()

    U32.carried = 0
    for key in (b"\xff" * 32, b"\xff" * 16 + bytes(16), det(32, 61)):
        r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
        limbs = [(r >> (13 * i)) & 0x1FFF for i in range(10)]
        st = bytearray(120)
        struct.pack_into("<20I", st, 40, *(limbs + [5 * x for x in limbs]))
        msg = b"\xff" * 320
        k.poly1305_blocks(st, msg, 0, len(msg), 1)
        hv = sum(x << (13 * i) for i, x in enumerate(struct.unpack_from("<10I", st)))
        tag = ((hv % (2 ** 130 - 5) + int.from_bytes(key[16:], "little")) % 2 ** 128).to_bytes(16, "little")
        assert tag == poly1305(msg, key)
        # the largest accumulator a block can leave behind (h1 takes the last carry), then full blocks
        st[0:40] = struct.pack("<10I", 0x1FFF, 0x1FFF + (5 << 6), *[0x1FFF] * 8)
        start = sum(x << (13 * i) for i, x in enumerate(struct.unpack_from("<10I", st)))
        k.poly1305_blocks(st, msg, 0, 32, 1)
        hv = sum(x << (13 * i) for i, x in enumerate(struct.unpack_from("<10I", st)))
        m = int.from_bytes(msg[:16], "little") + 2 ** 128
        assert hv % (2 ** 130 - 5) == ((start + m) * r + m) * r % (2 ** 130 - 5)
    assert U32.carried == 0
