"""pet-flash without a board: the firmware checks, a real copy to a folder laid out like the
RP2040's bootloader drive, and esptool's own failure on a port where no ESP32 answers."""

from __future__ import annotations

import shlex
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_gateway import wait_for
from tools import flash

RP2040, RP2350_ARM_S, RP2350_RISCV, ABSOLUTE = 0xE48BFF56, 0xE48BFF59, 0xE48BFF5A, 0xE48BFF57
INFO_RP2040 = "UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: RPI-RP2\r\n"
INFO_RP2350 = "UF2 Bootloader v1.0\r\nModel: Raspberry Pi RP2350\r\nBoard-ID: RP2350\r\n"


def uf2(families: list[int], payload: bytes = b"\x00\xb5" * 1000) -> bytes:
    """A UF2 file: one 256-byte flash page a block, each block with the family given for it."""
    pages = [payload[i:i + 256].ljust(256, b"\xff") for i in range(0, len(payload), 256)]
    pages += [b"\xff" * 256] * (len(families) - len(pages))
    out = b""
    for n, family in enumerate(families):
        head = struct.pack("<8I", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000 + 256 * n, 256, n, len(families), family)
        out += head + pages[n].ljust(476, b"\x00") + struct.pack("<I", 0x0AB16F30)
    return out


def esp_image(chip_id: int, offset: int, size: int = 0x9000, table: bool = True) -> bytes:
    """A whole-flash image as MicroPython's make gives: bootloader header at the start of the
    file, the partition table at flash 0x8000 (file offset 0x8000 - offset)."""
    data = bytearray(b"\xff" * size)
    data[:24] = bytes([0xE9, 3, 2, 0x20]) + struct.pack("<I", 0x40080000) + bytes([0xEE, 0, 0, 0]) \
        + struct.pack("<H", chip_id) + bytes(10)
    if table:
        data[0x8000 - offset:0x8000 - offset + 2] = b"\xaa\x50"
    return bytes(data)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def drive(folder: Path, info: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "INDEX.HTM").write_text("<html>redirect</html>")
    (folder / "INFO_UF2.TXT").write_text(info)
    return folder


def run_flash(*args) -> int:
    return flash.main([str(a) for a in args])


# -- the file is checked before any board -----------------------------------------------------


@pytest.mark.parametrize("board, make, message", [
    ("ESP32_GENERIC", lambda: b"\x7fELF" + bytes(100), "starting with an ESP image (magic byte 0xE9); this file is "
                                                      "neither a UF2 file nor an ESP image"),
    ("ESP32_GENERIC", lambda: uf2([RP2040]), "this file is a UF2 file"),
    ("ESP32_GENERIC", lambda: esp_image(9, 0), "this image is for the ESP32-S3, but ESP32_GENERIC (ESP32) "
                                               "needs one for the ESP32"),
    ("ESP32_GENERIC_C3", lambda: esp_image(0, 0x1000), "this image is for the ESP32, but ESP32_GENERIC_C3"),
    ("ESP32_GENERIC_S3", lambda: esp_image(9, 0, table=False), "no partition table at 0x8000"),
    ("ESP32_GENERIC", lambda: esp_image(0, 0), "no partition table at 0x8000"),  # laid out for offset 0
    ("RPI_PICO_W", lambda: esp_image(0, 0x1000), "is a .uf2 file; this file is an ESP image"),
    ("RPI_PICO_W", lambda: uf2([RP2350_ARM_S] * 4), "this UF2 file is for RP2350 ARM-S, but RPI_PICO_W (RP2040) "
                                                    "needs RP2040 (family 0xe48bff56)"),
    ("RPI_PICO2_W", lambda: uf2([RP2350_RISCV] * 4), "this UF2 file is for RP2350 RISC-V"),
    ("RPI_PICO2_W", lambda: uf2([0xC47E5767] * 4), "this UF2 file is for ESP32-S3"),
    ("RPI_PICO_W", lambda: uf2([RP2040] * 4)[:-100], "not a whole UF2 file"),
    ("RPI_PICO_W", lambda: (lambda d: d[:512] + b"X" + d[513:])(uf2([RP2040] * 4)), "UF2 block 1 is damaged"),
    ("RPI_PICO_W", lambda: b"", "is empty"),
])
def test_a_wrong_file_is_refused_before_any_board(tmp_path, capsys, board, make, message):
    firmware = write(tmp_path / "firmware.bin", make())
    target = drive(tmp_path / "RPI-RP2", INFO_RP2040)
    args = ["--drive", target] if board.startswith("RPI") else ["--port", "/dev/null"]
    assert run_flash("--board", board, "--firmware", firmware, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("pet-flash: ") and message in err, err
    assert sorted(p.name for p in target.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]  # nothing copied


@pytest.mark.parametrize("args, message", [
    (["--board", "ESP8266", "--firmware", "x"], "unknown board 'ESP8266': choose from ESP32_GENERIC"),
    (["--board", "UNIX", "--firmware", "x"], "UNIX has no CHIP"),
    (["--board", "ESP32_GENERIC", "--firmware", "/tmp/no-such-firmware.bin"], "cannot read the firmware"),
])
def test_bad_options_get_named_errors(capsys, args, message):
    assert run_flash(*args) == 1
    assert message in capsys.readouterr().err


def test_options_for_another_kind_of_board_are_refused(tmp_path, capsys):
    firmware = write(tmp_path / "fw.uf2", uf2([RP2040] * 2))
    assert run_flash("--board", "RPI_PICO_W", "--firmware", firmware, "--port", "/dev/ttyACM0") == 1
    assert "--port and --erase are for ESP32 boards" in capsys.readouterr().err
    firmware = write(tmp_path / "fw.bin", esp_image(0, 0x1000))
    assert run_flash("--board", "ESP32_GENERIC", "--firmware", firmware, "--drive", tmp_path) == 1
    assert "--drive is for RP2 boards" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_flash("--board", "ESP32_GENERIC", "--firmware", firmware, "--baud", "0")
    assert "--baud must be above 0" in capsys.readouterr().err


# -- RP2040 / RP2350: the bootloader's drive --------------------------------------------------


def test_a_uf2_is_copied_to_the_rp2040_drive(tmp_path, capsys):
    data = uf2([RP2040] * 8)
    firmware = write(tmp_path / "RPI_PICO_W-v1.26.0.uf2", data)
    target = drive(tmp_path / "media" / "pi" / "RPI-RP2", INFO_RP2040)
    assert run_flash("--board", "RPI_PICO_W", "--firmware", firmware, "--drive", target) == 0
    assert (target / firmware.name).read_bytes() == data
    out = capsys.readouterr().out
    assert "8 UF2 blocks for the RP2040" in out and f"copying {firmware} ({len(data)} bytes) to {target}" in out


def test_an_rp2350_uf2_with_its_absolute_block_goes_to_the_rp2350_drive(tmp_path):
    data = uf2([ABSOLUTE] + [RP2350_ARM_S] * 6)  # pico-sdk's first block for erratum E10
    firmware = write(tmp_path / "fw.uf2", data)
    target = drive(tmp_path / "RP2350", INFO_RP2350)
    assert run_flash("--board", "RPI_PICO2_W", "--firmware", firmware, "--drive", target) == 0
    assert (target / "fw.uf2").read_bytes() == data


def test_a_drive_of_another_chip_or_no_drive_is_refused(tmp_path, capsys):
    firmware = write(tmp_path / "fw.uf2", uf2([RP2040] * 2))
    other = drive(tmp_path / "RP2350", INFO_RP2350)
    assert run_flash("--board", "RPI_PICO_W", "--firmware", firmware, "--drive", other) == 1
    assert "belongs to a RP2350 bootloader, not the RP2040's (RPI-RP2)" in capsys.readouterr().err
    assert run_flash("--board", "RPI_PICO_W", "--firmware", firmware, "--drive", tmp_path) == 1
    assert f"{tmp_path} has no INFO_UF2.TXT" in capsys.readouterr().err
    assert list(other.iterdir()) and not (other / "fw.uf2").exists()


def test_bootloader_drives_are_found_by_their_info_file(tmp_path):
    a = drive(tmp_path / "media" / "pi" / "RPI-RP2", INFO_RP2040)
    b = drive(tmp_path / "media" / "pi" / "RP2350", INFO_RP2350)
    usb_stick = tmp_path / "media" / "pi" / "STICK"
    usb_stick.mkdir()
    places = sorted((tmp_path / "media" / "pi").iterdir())
    assert flash.find_drives(places) == {a: "RPI-RP2", b: "RP2350"}
    assert flash.pick_drive(flash.RP_CHIPS["rp2040"], None, places) == a
    assert flash.pick_drive(flash.RP_CHIPS["rp2350"], None, places) == b
    assert flash.pick_drive(flash.RP_CHIPS["rp2040"], None, [usb_stick]) is None
    second = drive(tmp_path / "other" / "RPI-RP2", INFO_RP2040)
    with pytest.raises(flash.FlashError, match="several RPI-RP2 drives: choose one with --drive"):
        flash.pick_drive(flash.RP_CHIPS["rp2040"], None, places + [second])


def test_without_a_drive_or_picotool_the_person_is_told_what_to_do(tmp_path, capsys):
    if flash.shutil.which("picotool") or flash.find_drives():
        pytest.skip("picotool or a bootloader drive is present on this machine")
    firmware = write(tmp_path / "fw.uf2", uf2([RP2040] * 2))
    assert run_flash("--board", "RPI_PICO_W", "--firmware", firmware, "--dry-run") == 1
    err = capsys.readouterr().err
    assert "no RPI-RP2 drive is mounted and picotool is not installed: hold BOOTSEL" in err, err


# -- ESP32 boards: esptool --------------------------------------------------------------------


@pytest.mark.parametrize("board, chip, offset", [("ESP32_GENERIC", "esp32", "0x1000"),
                                                 ("ESP32_GENERIC_S3", "esp32s3", "0x0"),
                                                 ("ESP32_GENERIC_C3", "esp32c3", "0x0")])
def test_dry_run_prints_the_esptool_commands(tmp_path, capsys, board, chip, offset):
    chip_id = {"esp32": 0, "esp32s3": 9, "esp32c3": 5}[chip]
    firmware = write(tmp_path / "firmware.bin", esp_image(chip_id, int(offset, 16)))
    port = write(tmp_path / "ttyUSB0", b"")  # --dry-run only checks that the port exists
    assert run_flash("--board", board, "--firmware", firmware, "--port", port, "--erase", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", str(port), "--baud", "460800"]
    assert lines[-2:] == [shlex.join(base + ["erase-flash"]),
                          shlex.join(base + ["write-flash", "-z", offset, str(firmware)])]


def test_a_missing_port_is_named(tmp_path, capsys):
    firmware = write(tmp_path / "firmware.bin", esp_image(0, 0x1000))
    assert run_flash("--board", "ESP32_GENERIC", "--firmware", firmware, "--port", tmp_path / "ttyUSB9") == 1
    err = capsys.readouterr().err
    assert f"pet-flash: {tmp_path / 'ttyUSB9'} does not exist; USB serial ports here:" in err, err


def test_esptool_failing_on_a_port_where_nothing_answers_is_one_clear_error(tmp_path):
    """Two ptys joined by socat with nothing behind them: esptool opens the port and hears nothing."""
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    socat = subprocess.Popen(["socat", f"PTY,link={a},raw,echo=0", f"PTY,link={b},raw,echo=0"])
    firmware = write(tmp_path / "firmware.bin", esp_image(0, 0x1000))
    try:
        wait_for(lambda: a.exists() and b.exists(), timeout=10, what="socat's ptys")
        proc = subprocess.run([sys.executable, "-m", "tools.flash", "--board", "ESP32_GENERIC", "--firmware",
                               str(firmware), "--port", str(a)], capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parent.parent)
    finally:
        socat.terminate()
        socat.wait(10)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "esptool v" in proc.stdout and "Connecting" in proc.stdout  # esptool really ran and tried
    assert proc.stderr.startswith(f"pet-flash: esptool failed (esptool --chip esp32 --port {a} --baud 460800 "
                                  f"write-flash -z 0x1000 {firmware}): Failed to connect to ESP32: "
                                  "No serial data received"), proc.stderr
    assert "hold BOOT" in proc.stderr
