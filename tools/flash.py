"""pet-flash: write a MicroPython firmware file to a board (esptool for ESP32 boards, UF2 for RP2040 / RP2350).

    pet-flash --board NAME --firmware FILE [--port DEVICE] [--erase] [--drive PATH] [--dry-run]

The file is checked before anything touches a board. ESP32, ESP32-S3 and
ESP32-C3 boards take the whole-flash `.bin` that MicroPython's downloads and
builds give: it must start with an ESP image (magic byte 0xE9) built for the
board's chip, and hold a partition table at 0x8000; esptool writes it at the
chip's bootloader offset (0x1000 on the ESP32, 0x0 on the S3 and C3), after
`erase-flash` with --erase. The Pico W and Pico 2 W take a `.uf2` whose blocks
carry the chip's UF2 family (RP2040, or RP2350 ARM-S); it is copied to the
bootloader's drive (the one with INFO_UF2.TXT that appears when the board is
plugged in with BOOTSEL held; found among the mounted drives or given with
--drive) or, without one, loaded with `picotool load` when picotool is
installed. Nothing is downloaded: bring the firmware file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.deploy import DeployError, load_board

PARTITION_TABLE = 0x8000  # where ESP-IDF (and so MicroPython's images) put the partition table
PARTITION_MAGIC = b"\xaa\x50"
ESP_IMAGE_MAGIC = 0xE9

UF2_BLOCK = 512
UF2_MAGICS = (0x0A324655, 0x9E5D5157, 0x0AB16F30)  # start 0, start 1, end
UF2_HAS_FAMILY, UF2_NOT_MAIN_FLASH = 0x2000, 0x1
UF2_ABSOLUTE = 0xE48BFF57  # RP2350's erratum E10 block, which every chip's bootloader may skip
UF2_FAMILIES = {0xE48BFF56: "RP2040", UF2_ABSOLUTE: "RP2XXX absolute", 0xE48BFF58: "RP2XXX data",
                0xE48BFF59: "RP2350 ARM-S", 0xE48BFF5A: "RP2350 RISC-V", 0xE48BFF5B: "RP2350 ARM-NS"}


@dataclass(frozen=True)
class RpChip:
    name: str  # for people
    family: int  # UF2 family id of its MicroPython images
    board_id: str  # "Board-ID:" in the bootloader drive's INFO_UF2.TXT (also the drive's name)


RP_CHIPS = {"rp2040": RpChip("RP2040", 0xE48BFF56, "RPI-RP2"), "rp2350": RpChip("RP2350", 0xE48BFF59, "RP2350")}


class FlashError(Exception):
    """Something the person flashing has to fix; the message says what."""


# -- the firmware file ------------------------------------------------------------------------


def esp_chip(name: str):
    """esptool's own definition of the chip (image chip id, bootloader offset, UF2 family)."""
    from esptool.targets import CHIP_DEFS
    return CHIP_DEFS[name]


def family_name(family: int) -> str:
    if family in UF2_FAMILIES:
        return UF2_FAMILIES[family]
    from esptool.targets import CHIP_DEFS
    names = [c.CHIP_NAME for c in CHIP_DEFS.values() if getattr(c, "UF2_FAMILY_ID", None) == family]
    return names[0] if names else f"family 0x{family:08x}"


def kind_of(data: bytes) -> str:
    if len(data) >= 8 and struct.unpack_from("<2I", data) == UF2_MAGICS[:2]:
        return "a UF2 file"
    if data[:1] == bytes([ESP_IMAGE_MAGIC]):
        return "an ESP image"
    return "neither a UF2 file nor an ESP image"


def check_esp_image(data: bytes, board: dict) -> None:
    chip = esp_chip(board["CHIP"])
    what = f"{board['NAME']} ({chip.CHIP_NAME})"
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise FlashError(f"the firmware for {what} is a .bin starting with an ESP image (magic byte 0xE9); "
                         f"this file is {kind_of(data)}")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    if chip_id != chip.IMAGE_CHIP_ID:
        from esptool.targets import CHIP_DEFS
        made_for = [c.CHIP_NAME for c in CHIP_DEFS.values() if c.IMAGE_CHIP_ID == chip_id]
        raise FlashError(f"this image is for the {made_for[0] if made_for else f'chip id {chip_id}'}, "
                         f"but {what} needs one for the {chip.CHIP_NAME}")
    table = PARTITION_TABLE - chip.BOOTLOADER_FLASH_OFFSET
    if data[table:table + 2] != PARTITION_MAGIC:
        raise FlashError(f"no partition table at 0x{PARTITION_TABLE:x} in this image: it looks like the "
                         "application alone (micropython.bin); flash the whole firmware .bin, which starts "
                         "with the bootloader")


def check_uf2(data: bytes, board: dict) -> int:
    """The number of blocks; refuses a damaged file or one for another chip."""
    chip = RP_CHIPS[board["CHIP"]]
    what = f"{board['NAME']} ({chip.name})"
    if kind_of(data) != "a UF2 file":
        raise FlashError(f"the firmware for {what} is a .uf2 file; this file is {kind_of(data)}")
    if len(data) % UF2_BLOCK:
        raise FlashError(f"not a whole UF2 file: {len(data)} bytes is not a multiple of {UF2_BLOCK} (cut short?)")
    families: dict[int, int] = {}
    for n in range(len(data) // UF2_BLOCK):
        at = n * UF2_BLOCK
        start0, start1, flags, _, size, number, count, family = struct.unpack_from("<8I", data, at)
        end = struct.unpack_from("<I", data, at + UF2_BLOCK - 4)[0]
        if (start0, start1, end) != UF2_MAGICS or size > 476 or number >= count:
            raise FlashError(f"UF2 block {n} is damaged (magic numbers, payload size or block number)")
        if not flags & UF2_HAS_FAMILY:
            raise FlashError(f"UF2 block {n} names no chip family: not a MicroPython image for {what}")
        if not flags & UF2_NOT_MAIN_FLASH:
            families[family] = families.get(family, 0) + 1
    others = sorted(set(families) - {chip.family, UF2_ABSOLUTE})
    if others or chip.family not in families:
        names = ", ".join(family_name(f) for f in others or families)
        raise FlashError(f"this UF2 file is for {names}, but {what} needs {family_name(chip.family)} "
                         f"(family 0x{chip.family:08x})")
    return len(data) // UF2_BLOCK


def read_firmware(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FlashError(f"cannot read the firmware {path}: {e.strerror}") from None
    if not data:
        raise FlashError(f"the firmware {path} is empty")
    return data


# -- ESP32 boards: esptool --------------------------------------------------------------------


def serial_port(port: str | None) -> str:
    """--port, checked, or the one USB serial port there is."""
    from serial.tools.list_ports import comports
    usb = sorted(p.device for p in comports() if p.vid is not None)
    if port is not None:
        if "://" not in port and not os.path.exists(port):
            raise FlashError(f"{port} does not exist; USB serial ports here: {', '.join(usb) or 'none'}")
        return port
    if len(usb) == 1:
        return usb[0]
    if not usb:
        raise FlashError("no USB serial port found: connect the board (and give --port if it is not on USB)")
    raise FlashError(f"several USB serial ports: choose one with --port ({', '.join(usb)})")


def esptool_commands(board: dict, port: str, firmware: Path, erase: bool, baud: int) -> list[list[str]]:
    base = [sys.executable, "-m", "esptool", "--chip", board["CHIP"], "--port", port, "--baud", str(baud)]
    offset = esp_chip(board["CHIP"]).BOOTLOADER_FLASH_OFFSET
    return ([base + ["erase-flash"]] if erase else []) + [base + ["write-flash", "-z", hex(offset), str(firmware)]]


def run_esptool(cmd: list[str]) -> None:
    """Runs esptool, its output passed through as it comes; a failure becomes one FlashError."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tail = b""
    while chunk := os.read(proc.stdout.fileno(), 4096):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        tail = (tail + chunk)[-4096:]
    if proc.wait() == 0:
        return
    lines = [line.strip() for line in tail.decode(errors="replace").replace("\r", "\n").splitlines()]
    reason = next((line.split("occurred:", 1)[-1].strip() for line in lines if "ERROR" in line or "rror:" in line),
                  lines[-1] if lines else f"exit status {proc.returncode}")
    reason, hint = reason.rstrip("."), ""
    if "Failed to connect" in reason or "No serial data" in reason:
        hint = (". Is an ESP32 on that port? Put it in its bootloader (hold BOOT, press and release RESET, "
                "release BOOT) and run pet-flash again")
    raise FlashError(f"esptool failed (esptool {shlex.join(cmd[3:])}): {reason}{hint}")


# -- RP2040 / RP2350: the bootloader's drive, or picotool -------------------------------------


def board_id(drive: Path) -> str | None:
    """The Board-ID in a UF2 bootloader drive's INFO_UF2.TXT (None: not such a drive)."""
    try:
        info = (drive / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Board-ID:")), "")


def mounted() -> list[Path]:
    """Mount points of the system (Linux), plus the usual places desktops mount drives."""
    places = []
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            places.append(Path(line.split()[1].replace("\\040", " ")))
    except OSError:
        pass
    for pattern in ("/media/*/*", "/media/*", "/run/media/*/*", "/Volumes/*"):
        places += Path("/").glob(pattern.lstrip("/"))
    return places


def find_drives(places: list[Path] | None = None) -> dict[Path, str]:
    """{drive: Board-ID} of every UF2 bootloader drive among places (default: what is mounted)."""
    found = {}
    for place in places if places is not None else mounted():
        bid = board_id(place)
        if bid is not None:
            found[place] = bid
    return found


def pick_drive(chip: RpChip, drive: Path | None, places: list[Path] | None = None) -> Path | None:
    if drive is not None:
        bid = board_id(drive)
        if bid is None:
            raise FlashError(f"{drive} has no INFO_UF2.TXT: not the drive of a board in its bootloader "
                             "(hold BOOTSEL while plugging it in)")
        if bid != chip.board_id:
            raise FlashError(f"the drive {drive} belongs to a {bid} bootloader, not the {chip.name}'s "
                             f"({chip.board_id})")
        return drive
    drives = find_drives(places)
    mine = sorted(d for d, bid in drives.items() if bid == chip.board_id)
    if len(mine) > 1:
        raise FlashError(f"several {chip.board_id} drives: choose one with --drive ({', '.join(map(str, mine))})")
    return mine[0] if mine else None


def copy_uf2(data: bytes, firmware: Path, drive: Path, log=print) -> Path:
    target = drive / firmware.name
    log(f"copying {firmware} ({len(data)} bytes) to {drive}")
    try:
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise FlashError(f"copying to {drive} failed: {e.strerror or e}") from None
    log("copied: the board restarts into the new firmware")
    return target


# -- command line -----------------------------------------------------------------------------


def flash(board_name: str, firmware: Path, port: str | None = None, erase: bool = False, drive: Path | None = None,
          baud: int = 460800, dry_run: bool = False, log=print) -> None:
    try:
        board = load_board(board_name)
    except DeployError as e:
        raise FlashError(str(e)) from None
    chip = board.get("CHIP")
    if chip is None:
        raise FlashError(f"{board_name} has no CHIP in {board['PATH']}: the Unix port is a program, not flashed")
    data = read_firmware(firmware)
    if chip in RP_CHIPS:
        if port is not None or erase:
            raise FlashError("--port and --erase are for ESP32 boards: an RP2 board is flashed through its "
                             "bootloader's drive (--drive) or picotool")
        blocks = check_uf2(data, board)
        log(f"{firmware}: {blocks} UF2 blocks for the {RP_CHIPS[chip].name}")
        target = pick_drive(RP_CHIPS[chip], drive)
        if target is not None:
            if dry_run:
                log(f"would copy {firmware} to {target / firmware.name}")
            else:
                copy_uf2(data, firmware, target, log)
            return
        picotool = shutil.which("picotool")
        if picotool is None:
            raise FlashError(f"no {RP_CHIPS[chip].board_id} drive is mounted and picotool is not installed: "
                             "hold BOOTSEL while plugging the board in, then run pet-flash again (or give --drive)")
        cmd = [picotool, "load", "-v", "-x", str(firmware)]
        log(shlex.join(cmd))
        if not dry_run and subprocess.run(cmd).returncode != 0:
            raise FlashError("picotool failed (its message is above): is the board in BOOTSEL mode?")
        return
    if drive is not None:
        raise FlashError("--drive is for RP2 boards: ESP32 boards are flashed over their serial port")
    check_esp_image(data, board)
    log(f"{firmware}: an ESP image for the {esp_chip(chip).CHIP_NAME}, {len(data)} bytes")
    commands = esptool_commands(board, serial_port(port), firmware, erase, baud)
    for cmd in commands:
        log(shlex.join(cmd))
        if not dry_run:
            run_esptool(cmd)


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n\n")[0].split(": ", 1)[1]
    parser = argparse.ArgumentParser(
        prog="pet-flash", description=summary[0].upper() + summary[1:],
        epilog="Then `pet-deploy` copies the participant to the board.")
    parser.add_argument("--board", required=True, metavar="NAME", help="a folder of boards/ (its CHIP)")
    parser.add_argument("--firmware", required=True, type=Path, metavar="FILE",
                        help="MicroPython firmware: .bin for ESP32 boards, .uf2 for RP2 boards")
    parser.add_argument("--port", metavar="DEVICE",
                        help="ESP32: serial port (default: the one USB serial port there is)")
    parser.add_argument("--erase", action="store_true", help="ESP32: erase the whole flash first (files too)")
    parser.add_argument("--baud", type=int, default=460800, metavar="N", help="ESP32: baud rate (default: 460800)")
    parser.add_argument("--drive", type=Path, metavar="PATH",
                        help="RP2: the bootloader's drive (default: the mounted one with INFO_UF2.TXT)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the file and print the esptool / picotool command or the copy, doing nothing")
    args = parser.parse_args(argv)
    if args.baud <= 0:
        parser.error("--baud must be above 0")
    try:
        flash(args.board, args.firmware, args.port, args.erase, args.drive, args.baud, args.dry_run)
    except FlashError as e:
        print(f"pet-flash: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
