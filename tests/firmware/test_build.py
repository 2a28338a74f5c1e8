"""pet-build: one .mpy tree per board architecture, importable where it belongs and refused elsewhere."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tools.build import ARCHS, BuildError, build, main, mpy_arch, sources

from .conftest import FIRMWARE, ROOT, run_upy

MASK_CHECK = """
import json
from array import array
from binascii import hexlify, unhexlify
from upet import kernels, mask_objects
k = kernels.load("chacha")
print("kernels", k.__name__)
c = json.load(open(VECTORS + "/masks.json"))["configs"][0]
e = c["masked"][1]
w = array("I", [int(b, 16) for b in c["weight_bits"]])
got = mask_objects.mask_object(unhexlify(c["config"]), unhexlify(c["mask_seed"]), e["scalar"], w)
print("vector", hexlify(got).decode() == e["masked"])
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    lines = []
    build(None, out, log=lines.append)
    return out, lines


def test_every_arch_builds_every_module(built):
    out, lines = built
    assert [line.split()[0] for line in lines] == list(ARCHS)
    modules = sources()
    assert "upet/native/chacha.py" in {m.as_posix() for m in modules}
    for arch, code in ARCHS.items():
        tree = out / arch
        manifest = (tree / "MANIFEST.txt").read_text().splitlines()
        listed = {line.split()[-1]: int(line.split()[0]) for line in manifest[1:-1]}
        assert manifest[-1].split()[0] == str(sum(listed.values()))
        for rel in modules:
            mpy = rel.with_suffix(".mpy")
            assert (tree / mpy).stat().st_size == listed[mpy.as_posix()]
            header = (tree / mpy).read_bytes()[:4]
            assert header[:2] == b"M\x06", f"{arch}/{mpy}: not an .mpy v6 file"
            text = (FIRMWARE / rel).read_text()
            machine_code = "@micropython.viper" in text or "@micropython.native" in text
            assert mpy_arch(tree / mpy) == (code if machine_code else 0), f"{arch}/{mpy}: wrong architecture"
        assert sorted(listed) == sorted(m.with_suffix(".mpy").as_posix() for m in modules)


def test_x64_build_runs_native_kernels(built, tmp_path):
    out, _ = built
    result = run_upy(MASK_CHECK, path=out / "x64", tmp=tmp_path)
    assert "kernels upet.native.chacha" in result
    assert "vector True" in result
    assert "unavailable" not in result


def test_foreign_native_module_falls_back_cleanly(built, tmp_path):
    out, _ = built
    tree = tmp_path / "mixed"
    shutil.copytree(out / "x64", tree)
    shutil.copy(out / "armv6m" / "upet" / "native" / "chacha.mpy", tree / "upet" / "native" / "chacha.mpy")
    result = run_upy(MASK_CHECK, path=tree, tmp=tmp_path)
    assert "upet: native chacha kernels unavailable on x64 (incompatible .mpy arch); using Python" in result
    assert "kernels upet.fallback.chacha" in result
    assert "vector True" in result


def test_compile_error_names_the_file(tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(FIRMWARE / "upet", src / "upet")
    (src / "upet" / "native" / "broken.py").write_text(
        "@micropython.viper\ndef f(x: uint) -> int:\n    return x < 1\n")
    with pytest.raises(BuildError, match=r"(?s)-march=armv6m failed on .*broken\.py.*ViperTypeError"):
        build(["armv6m"], tmp_path / "out", src)
    assert main(["--arch", "x64", "--src", str(src), "--out", str(tmp_path / "out")]) == 1
    assert "broken.py" in capsys.readouterr().err
    assert not (tmp_path / "out" / "x64").exists()


def test_cli_prints_one_line_per_arch(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tools.build", "--arch", "x64", "--arch", "rv32imc",
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["x64", "rv32imc"]
    assert all("native" in line and str(tmp_path) in line for line in lines)
