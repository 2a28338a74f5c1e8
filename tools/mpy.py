"""Interning a module's string constants in its .mpy file (format version 6).

An .mpy file starts with a header, then the module's qstr table (the interned
strings its code names) and its constant table, then the code. Loading it
interns every entry of the qstr table; a constant str becomes a str object in
the heap, unless a qstr of the same text already exists, in which case the
loader hands out that qstr instead.

`intern_strings` adds a module's constant strs (messages, formats, topics)
to the end of its qstr table, so they exist as qstrs by the time the
constants load. On x64 a 40-character message then takes about 50 bytes of
heap (its text and a pool entry) instead of about 100 (a str object and a
separate block for the text). The code is not touched: it refers to qstrs by
their index in the table, and the new entries come after all of them.

Interned strings are never freed. A module loaded for one call and dropped
(`upet.transient`) gives its str constants back afterwards, so pet-build
leaves such modules as they are.

Layout (docs.micropython.org, "MicroPython .mpy files"; vuint: 7 bits a byte,
most significant first, high bit set on all but the last):

    header        'M', 6, arch << 2 | sub-version, small-int bits (arch 0:
                  bytecode only; files with native code are not rewritten)
    vuint         number of qstrs, then number of constants
    qstr          vuint n: n & 1 -> static qstr n >> 1; else n >> 1 bytes and a NUL
    constant      a type byte: 1-4 None, False, True, Ellipsis (nothing follows);
                  5 str and 6 bytes: vuint length, bytes, NUL; 7 int, 8 float,
                  9 complex: vuint length and the text; 10 tuple: vuint count and
                  that many constants
"""

from __future__ import annotations

QSTR_MAX = 255  # the longest qstr the ports we build for accept (one length byte)
_SIMPLE = (1, 2, 3, 4)
_STR, _BYTES, _TUPLE = 5, 6, 10
_TEXT = (7, 8, 9)


class MpyError(ValueError):
    """An .mpy file this module cannot read (another format version, or damaged)."""


def _vuint(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        if i >= len(data):
            raise MpyError("truncated .mpy file")
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, i


def _encode(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _constant(data: bytes, i: int, strs: list[bytes]) -> int:
    """Skips the constant at i (collecting strs); returns where the next one starts."""
    if i >= len(data):
        raise MpyError("truncated .mpy file")
    kind = data[i]
    i += 1
    if kind in _SIMPLE:
        return i
    n, i = _vuint(data, i)
    if kind == _TUPLE:
        for _ in range(n):
            i = _constant(data, i, strs)
        return i
    if kind not in (_STR, _BYTES) + _TEXT:
        raise MpyError(f"unknown constant type {kind}")
    if i + n > len(data):
        raise MpyError("truncated .mpy file")
    if kind == _STR:
        strs.append(data[i:i + n])
    i += n
    if kind in (_STR, _BYTES):
        if data[i:i + 1] != b"\0":
            raise MpyError("string constant without its NUL")
        i += 1
    return i


def tables(data: bytes) -> tuple[int, list[bytes | int], list[bytes], int, int]:
    """(start of the qstr table, its entries (text, or the index of a static qstr),
    the str constants in order, end of the qstr table, end of the constant table)."""
    if len(data) < 4 or data[0] != ord("M") or data[1] != 6:
        raise MpyError("not an .mpy version 6 file")
    if data[2] >> 2:
        raise MpyError("native code: only bytecode modules are rewritten")
    i = 4
    n_qstr, i = _vuint(data, i)
    n_obj, i = _vuint(data, i)
    start = i
    qstrs: list[bytes | int] = []
    for _ in range(n_qstr):
        n, i = _vuint(data, i)
        if n & 1:
            qstrs.append(n >> 1)
            continue
        n >>= 1
        if i + n >= len(data):
            raise MpyError("truncated .mpy file")
        if data[i + n] != 0:
            raise MpyError("qstr without its NUL")
        qstrs.append(data[i:i + n])
        i += n + 1
    end = i
    strs: list[bytes] = []
    for _ in range(n_obj):
        i = _constant(data, i, strs)
    return start, qstrs, strs, end, i


def intern_strings(data: bytes) -> tuple[bytes, int]:
    """The .mpy file with its str constants added to its qstr table, and how many were added.
    Files with native code come back unchanged."""
    if len(data) >= 3 and data[2] >> 2:
        return data, 0
    start, qstrs, strs, end, _ = tables(data)
    have = {q for q in qstrs if isinstance(q, bytes)}
    new = [s for s in dict.fromkeys(strs) if s not in have and 0 < len(s) <= QSTR_MAX and b"\0" not in s]
    if not new:
        return data, 0
    _, counts = _vuint(data, 4)  # the qstr count ends here; the constant count stays as it is
    extra = b"".join(_encode(len(s) << 1) + s + b"\0" for s in new)
    return data[:4] + _encode(len(qstrs) + len(new)) + data[counts:end] + extra + data[end:], len(new)
