"""pet-deploy against the Unix port on a pty, as a serial board (DESIGN section 4).

A board here is `socat PTY,link=... EXEC:"micropython -i"` started in a folder
of its own: that folder is the board's filesystem, and MICROPYPATH gives it a
board's sys.path ('' and lib). pet-deploy talks to it through mpremote as it
would to an ESP32 on /dev/ttyUSB0. The last test provisions devices with
pet-provision, deploys one, starts main.py on the board with
`mpremote connect PORT resume exec "import main"`, and checks that its update
is counted in a real round (mosquitto, the gateway, the coordinator, and
reference participants over MQTT for the quorum).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import serial

from pet.crypto import SigningKeyPair
from pet.sortition import Task
from tests.firmware.test_participant import device_weights, fleet_roles, models, round_seeds, settings_for, task
from tests.firmware.test_participant import site  # noqa: F401  (the fixture: a broker, coordinator and gateway)
from tests.test_gateway import Fleet, make_devices, wait_for
from tools import deploy, provision

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = Path(sys.executable).with_name("micropython")
HEAP = "160k"  # well above what a 650-weight round needs on the Unix port (docs/firmware.md, Limits)
N = 650

# The app deployed with --app: for every round the same weights as the devices of
# tests/firmware/test_participant.py (device_weights), so the global model can be checked.
APP = f"""
from array import array
N = {N}
MODEL = array("f", bytes(4 * N))

def train(params):
    if params.model_length != N:
        return None
    s = params.seed[0]
    for i in range(N):
        MODEL[i] = ((i * 7919 + s * 31) % 2001 - 1000) / 1000.0 * 0.5
    return MODEL, 1.0

def on_model(round_id, weights):
    import hashlib
    print("model", round_id, hashlib.sha256(weights).digest()[:8].hex())
"""


class PtyBoard:
    """`micropython -i` behind a pty made by socat, in `folder` (the board's filesystem)."""

    def __init__(self, folder: Path, port: Path, heap: str = HEAP):
        folder.mkdir(parents=True)
        self.folder, self.port = folder, port
        command = f"{MICROPYTHON} -X heapsize={heap} -i"
        env = dict(os.environ, MICROPYPATH=":.frozen:lib")  # '' and lib, as a board's '' and /lib
        self.proc = subprocess.Popen(["socat", f"PTY,link={port},raw,echo=0",
                                      f"EXEC:{command},pty,rawer,stderr,setsid,ctty"],
                                     cwd=folder, env=env, stdin=subprocess.DEVNULL)
        try:
            wait_for(port.exists, timeout=10, what=f"socat to make {port}")
            # MicroPython is up when its REPL answers a return (opening the port discards
            # whatever came before, such as a banner printed in the meantime)
            with serial.Serial(str(port), timeout=10) as s:
                s.write(b"\r")
                prompt = s.read_until(b">>> ")
            assert prompt.endswith(b">>> "), prompt
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # the pty closes: micropython gets SIGHUP
            self.proc.wait(10)


@pytest.fixture
def pty_board(tmp_path):
    boards = []

    def start(name: str = "board") -> PtyBoard:
        boards.append(PtyBoard(tmp_path / name, tmp_path / f"tty-{name}"))
        return boards[-1]

    yield start
    for board in boards:
        board.stop()


@pytest.fixture
def device(tmp_path) -> Path:
    """A device provisioned by pet-provision: its config.json."""
    assert provision.main(["devices", "--out", str(tmp_path / "fleet"), "--count", "1",
                           "--broker", "127.0.0.1", "--port", "1883"]) == 0
    return tmp_path / "fleet" / "devices" / "dev001" / "config.json"


def run_deploy(*args) -> int:
    return deploy.main([str(a) for a in args])


def board_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def expected_files(config: Path, app: Path | None = None) -> dict[str, bytes]:
    tree = ROOT / "build" / "x64"
    files = {f"lib/{p.relative_to(tree).as_posix()}": p.read_bytes() for p in (tree / "upet").rglob("*.mpy")}
    files |= {"main.py": (ROOT / "firmware" / "main.py").read_bytes(),
              "board_config.py": (ROOT / "boards" / "UNIX" / "config.py").read_bytes(),
              "config.json": config.read_bytes(), "key": config.with_name("key").read_bytes()}
    if app is not None:
        files["app.py"] = app.read_bytes()
    return files


# -- without a board --------------------------------------------------------------------------


def test_dry_run_lists_a_boards_layout_without_a_port(device, capsys):
    assert run_deploy("--board", "RPI_PICO_W", "--config", device, "--dry-run") == 0
    out, err = capsys.readouterr()
    listed = [line.split()[1] for line in out.splitlines() if line.split()[1].startswith("/")]
    built = {f"/lib/{p.relative_to(ROOT / 'build' / 'armv6m').as_posix()}"
             for p in (ROOT / "build" / "armv6m" / "upet").rglob("*.mpy")}
    assert set(listed[:-4]) == built and len(listed[:-4]) == len(built)
    assert listed[-4:] == ["/board_config.py", "/config.json", "/key", "/main.py"]  # main.py last
    assert "/lib/upet/native/chacha.mpy" in listed and "no board touched" in out
    assert "wifi.ssid is empty" in err  # a real board needs its WiFi filled in
    native = (ROOT / "build" / "armv6m" / "upet" / "native" / "chacha.mpy").read_bytes()
    assert deploy.mpy_header(native)[2] == 4  # armv6m


@pytest.mark.parametrize("change, message", [
    (lambda c: c.write_text("{not json"), "is not valid JSON"),
    (lambda c: c.write_text(json.dumps(json.loads(c.read_text()) | {"broker": {"host": "h", "port": "1883"}})),
     "broker.port must be a port number, not '1883'"),
    (lambda c: c.write_text(json.dumps(json.loads(c.read_text()) | {"table_rows": 0})),
     "table_rows must be 1, 2, 4, 8 or 16, not 0"),
    (lambda c: c.with_name("key").write_bytes(SigningKeyPair.from_seed(bytes(32)).secret_key),
     "is not the key's public key"),
    (lambda c: c.with_name("key").write_bytes(bytes(64)), "the public key does not belong to the seed"),
    (lambda c: c.with_name("key").write_bytes(bytes(10)), "expected 64 bytes"),
])
def test_bad_device_files_are_refused_before_any_board(device, capsys, change, message):
    change(device)
    assert run_deploy("--board", "UNIX", "--config", device, "--port", "/dev/null-board") == 1
    err = capsys.readouterr().err
    assert err.startswith("pet-deploy: ") and message in err, err


@pytest.mark.parametrize("args, message", [
    (["--board", "ESP8266", "--dry-run"], "unknown board 'ESP8266': choose from ESP32_GENERIC, ESP32_GENERIC_C3"),
    (["--board", "UNIX", "--port", "/tmp/no-such-board"], "/tmp/no-such-board does not exist; serial ports here:"),
    (["--board", "UNIX", "--app", "/tmp/no-such-app.py", "--dry-run"], "--app /tmp/no-such-app.py: No such file"),
    (["--board", "UNIX", "--file", "x:../etc/passwd", "--dry-run"], "inside the board"),
])
def test_bad_options_get_named_errors(device, capsys, args, message):
    assert run_deploy("--config", device, *args) == 1
    err = capsys.readouterr().err
    assert message in err, err


def test_options_are_checked(device, capsys):
    with pytest.raises(SystemExit):
        run_deploy("--board", "UNIX", "--config", device)
    assert "--port is required" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_deploy("--board", "UNIX", "--config", device, "--port", "x", "--timeout", "0")
    assert "--timeout must be above 0" in capsys.readouterr().err


def test_a_port_where_nothing_answers(device, tmp_path, capsys):
    """Two ptys joined by socat with nothing behind them: the port opens, no REPL answers."""
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", f"PTY,link={a},raw,echo=0", f"PTY,link={b},raw,echo=0"])
    try:
        wait_for(lambda: a.exists() and b.exists(), timeout=10, what="socat's ptys")
        assert run_deploy("--board", "UNIX", "--config", device, "--port", a, "--timeout", "1") == 1
    finally:
        proc.terminate()
        proc.wait(10)
    err = capsys.readouterr().err
    assert f"no MicroPython REPL answers on {a} within 1 s" in err and "it said nothing" in err, err


# -- the Unix port on a pty -------------------------------------------------------------------


def test_a_board_of_another_architecture_is_refused(pty_board, device, capsys):
    board = pty_board()
    assert run_deploy("--board", "RPI_PICO_W", "--config", device, "--port", board.port) == 1
    err = capsys.readouterr().err
    assert "runs x64 code" in err and "RPI_PICO_W is armv6m" in err and "(UNIX)" in err, err
    assert board_files(board.folder) == {}  # nothing was copied


def test_deploy_copies_verifies_and_redeploys_only_what_changed(pty_board, device, tmp_path, capsys):
    board = pty_board()
    app = tmp_path / "app.py"
    app.write_text(APP)
    assert run_deploy("--board", "UNIX", "--config", device, "--port", board.port, "--app", app) == 0
    out = capsys.readouterr().out
    expected = expected_files(device, app)
    assert board_files(board.folder) == expected
    assert f"copied {len(expected)} files, 0 already there" in out
    assert f"verified {len(expected)} files on the board (SHA-256)" in out
    pk = device.with_name("key").read_bytes()[32:].hex()
    assert f"the client loads from lib/upet, native kernels: chacha, f25519, key {pk[:16]}" in out, out

    # a damaged module, a module the build no longer has, a changed config
    (board.folder / "lib" / "upet" / "mask.mpy").write_bytes(b"M\x06garbage")
    (board.folder / "lib" / "upet" / "native" / "old.mpy").write_bytes(b"M\x06old")
    config = json.loads(device.read_text())
    device.write_text(json.dumps(config | {"broker": {**config["broker"], "host": "10.0.0.7"}}))
    assert run_deploy("--board", "UNIX", "--config", device, "--port", board.port, "--app", app) == 0
    out = capsys.readouterr().out
    assert board_files(board.folder) == expected_files(device, app)
    assert "removed " in out and "lib/upet/native/old.mpy (not in this build)" in out
    copied = sorted(line.split()[1] for line in out.splitlines() if line.startswith("["))
    assert copied == ["config.json", "lib/upet/mask.mpy"]
    assert f"copied 2 files, {len(expected) - 2} already there" in out


def test_verify_finds_a_file_that_differs_on_the_board(pty_board, device, capsys):
    board = pty_board()
    assert run_deploy("--board", "UNIX", "--config", device, "--port", board.port) == 0
    assert "cannot import the app" in capsys.readouterr().err  # no --app, and none on the board
    (board.folder / "key").write_bytes(bytes(64))  # as if the write had gone wrong
    items = deploy.plan(deploy.load_board("UNIX"), device, log=lambda *a: None)
    link = deploy.BoardLink(str(board.port))
    try:
        with pytest.raises(deploy.DeployError, match=r"1 files differ on the board after copying: .*/key"):
            deploy.verify(link, f"{board.folder}/", items, deploy.load_board("UNIX"), log=lambda *a: None)
    finally:
        link.close()


def test_a_board_without_heap_for_the_client_is_reported(tmp_path, device, capsys):
    board = PtyBoard(tmp_path / "small", tmp_path / "tty-small", heap="32k")
    try:
        assert run_deploy("--board", "UNIX", "--config", device, "--port", board.port) == 1
    finally:
        board.stop()
    err = capsys.readouterr().err
    assert "pet-deploy: the client does not load on the board: MemoryError" in err, err
    assert "too little heap" in err, err


class Console:
    """`mpremote connect PORT resume exec "import main"`: the participant runs, its output comes here."""

    def __init__(self, port: Path):
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "mpremote", "connect", str(port), "resume", "exec",
                                      "import main"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def seen(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_a_deployed_board_takes_part_in_a_round(site, pty_board, tmp_path, capsys):
    settings = settings_for(N)
    seeds = round_seeds(settings, 2)
    roles = fleet_roles(settings, seeds, 8)  # the reference participants' (sum, update) counts: fixed keys
    assert all(sums >= 1 and updates >= 2 for sums, updates in roles), roles
    c, gw = site(settings)
    host, port = site.broker
    fleet_dir = tmp_path / "fleet"
    assert provision.main(["devices", "--out", str(fleet_dir), "--count", "8", "--broker", host,
                           "--port", str(port)]) == 0
    # The keys are random: take the first device, and round, in which sortition makes it an update participant.
    choice = None
    for r, seed in enumerate(seeds, 1):
        for folder in sorted((fleet_dir / "devices").iterdir()):
            keys = SigningKeyPair.from_secret_key((folder / "key").read_bytes())
            if choice is None and task(keys, settings, seed) == Task.UPDATE:
                choice = (r, folder / "config.json")
    assert choice is not None, "none of 8 provisioned keys updates in rounds 1-2 (p < 1e-6): run again"
    round_id, config = choice

    board = pty_board()
    app = tmp_path / "app.py"
    app.write_text(APP)
    assert run_deploy("--board", "UNIX", "--config", config, "--port", board.port, "--app", app) == 0
    capsys.readouterr()
    assert board_files(board.folder) == expected_files(config, app)

    console = Console(board.port)
    fleet = Fleet(make_devices(site.broker, "pet", 8))
    try:
        wait_for(lambda: round_id in models(c) or console.proc.poll() is not None, timeout=90,
                 what=f"round {round_id}")
        assert console.proc.poll() is None, "\n".join(console.lines)
        wait_for(lambda: console.seen(f"model {round_id} "), timeout=20, what="the board to get the model")
    finally:
        fleet.stop()
        console.stop()
    out = "\n".join(console.lines)
    assert console.seen("update chunk 1/1 accepted"), out
    model = models(c)[round_id]
    seed = seeds[round_id - 1]
    senders = [(app.scalar, app.given[seed].astype(np.float64)) for _, app, _ in fleet.fleet if seed in app.given]
    senders.append((1.0, device_weights(seed, N).astype(np.float64)))  # the board's, with its scalar 1.0
    assert model.meta["updates"] == len(senders)
    average = sum(s * w for s, w in senders) / sum(s for s, _ in senders)
    weights = np.frombuffer(model.weights, "<f8")
    assert np.allclose(weights, average, atol=1e-4)
    digest = hashlib.sha256(weights.astype("<f4").tobytes()).hexdigest()[:16]
    assert console.seen(f"model {round_id} {digest}"), out


def test_frozen_on_a_firmware_without_upet_frozen_in_is_refused(pty_board, device, capsys):
    board = pty_board()
    assert run_deploy("--board", "UNIX", "--config", device, "--port", board.port, "--frozen") == 1
    err = capsys.readouterr().err
    assert "the client does not load on the board: ImportError" in err, err
    assert "--frozen, but the firmware has no upet frozen in" in err, err
    assert not (board.folder / "lib").exists() and (board.folder / "main.py").exists()
