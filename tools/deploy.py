"""pet-deploy: copy the participant to a board with mpremote, then check that it loads there.

    pet-deploy --board NAME --port DEVICE --config DIR/devices/dev001/config.json [--app app.py]

What the board gets (boards/README.md):

    /lib/upet/**.mpy    the client, compiled for the board's architecture (pet-build); not with
                        --frozen, for a firmware with upet frozen in
    /board_config.py    boards/NAME/config.py
    /app.py             --app, and any --file LOCAL[:REMOTE]
    /config.json, /key  the device's files from pet-provision (the key beside config.json)
    /main.py            firmware/main.py, the boot script, written last

Before anything is written, the config and key are checked here, and the board
is asked what it runs: a board whose .mpy architecture is not the one of
--board is refused, and so is one without room for the files. Files whose
SHA-256 already matches are left alone, and files in /lib/upet that the build
does not have are removed. Afterwards every file is hashed again on the board,
and the board imports the client, reads its config and key, and loads its
native kernels, as main.py will.

On the Unix port (a `micropython -i` behind a pty, boards/README.md) the
board's filesystem is the process's working directory.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import io
import json
import os
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.build import ARCHS, PACKAGE, BuildError, build

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "boards"
MAIN = ROOT / "firmware" / "main.py"
MPY_VERSION = 6  # the .mpy major version mpy-cross writes; boards/README.md names the firmware that loads it


class DeployError(Exception):
    """Something the person deploying has to fix; the message says what."""


# -- the board and the files for it ----------------------------------------------------------


def board_names() -> list[str]:
    return sorted(p.parent.name for p in BOARDS.glob("*/config.py"))


def load_board(name: str) -> dict:
    """The settings in boards/<name>/config.py (its upper-case names)."""
    path = BOARDS / name / "config.py"
    if not path.is_file():
        raise DeployError(f"unknown board {name!r}: choose from {', '.join(board_names())}")
    values = {k: v for k, v in runpy.run_path(str(path)).items() if k.isupper()}
    return {"NAME": name, "PATH": path, **values}


def read_device(config_path: Path, board: dict, warn=print) -> tuple[bytes, bytes | None]:
    """config.json's bytes and the key beside it (None: the board makes its own), both checked."""
    try:
        raw = config_path.read_bytes()
    except OSError as e:
        raise DeployError(f"cannot read the config {config_path}: {e.strerror}") from None
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise DeployError(f"{config_path} is not valid JSON: {e}") from None
    check_config(config, config_path, board, warn)
    key_path = config_path.with_name("key")
    if not key_path.exists():
        warn(f"warning: no key beside {config_path}: the board will make its own on first boot "
             "and needs a broker login for it")
        return raw, None
    key = key_path.read_bytes()
    if len(key) != 64:
        raise DeployError(f"{key_path}: expected 64 bytes (Ed25519 seed || public key), got {len(key)}")
    from pet.crypto import SigningKeyPair
    pk = SigningKeyPair.from_seed(key[:32]).public_key
    if pk != key[32:]:
        raise DeployError(f"{key_path}: the public key does not belong to the seed")
    if config.get("username") and config["username"] != pk.hex():
        raise DeployError(f"{config_path}: username {config['username'][:16]}... is not the key's public "
                          f"key {pk.hex()[:16]}...: the broker would refuse the device's topics")
    return raw, key


def check_config(config, path: Path, board: dict, warn=print) -> None:
    """The fields upet reads (docs/raspberry-pi.md), by the check the board itself runs at boot
    (firmware/upet/config.py)."""
    check = runpy.run_path(str(ROOT / "firmware" / PACKAGE / "config.py"))["check"]
    try:
        check(config)
    except ValueError as e:
        raise DeployError(f"{path}: {e}") from None
    if board["NAME"] != "UNIX" and not config.get("wifi", {}).get("ssid"):
        warn(f"warning: {path}: wifi.ssid is empty: the board will not join a network")


@dataclass(frozen=True)
class Item:
    remote: str  # path under the board's root, '/'-separated
    data: bytes
    source: str  # where it comes from, for people


def plan(board: dict, config_path: Path, app: Path | None = None, files=(), build_dir: Path = ROOT / "build",
         warn=print, log=print, frozen: bool = False) -> list[Item]:
    """Every file the board gets, in the order it is written (main.py last); with frozen, the
    firmware holds upet and /lib/upet is left out."""
    arch = board.get("ARCH")
    if arch not in ARCHS:
        raise DeployError(f"{board['PATH']}: ARCH {arch!r} is not one of {', '.join(ARCHS)}")
    config, key = read_device(config_path, board, warn)
    items = [] if frozen else client_items(arch, build_dir, log)
    items.append(Item("board_config.py", board["PATH"].read_bytes(), str(board["PATH"])))
    if app is not None:
        items.append(Item("app.py", _read(app, "--app"), str(app)))
    for spec in files:
        local, _, remote = spec.partition(":")
        remote = (remote or Path(local).name).strip("/")
        if not remote or ".." in remote.split("/"):
            raise DeployError(f"--file {spec}: give the board path as LOCAL:PATH, inside the board")
        items.append(Item(remote, _read(Path(local), "--file"), local))
    items.append(Item("config.json", config, str(config_path)))
    if key is not None:
        items.append(Item("key", key, str(config_path.with_name("key"))))
    items.append(Item("main.py", MAIN.read_bytes(), str(MAIN)))
    remotes = [i.remote for i in items]
    twice = sorted({r for r in remotes if remotes.count(r) > 1})
    if twice:
        raise DeployError(f"two files for the same board path: {', '.join(twice)}")
    broker = json.loads(config).get("broker", {})
    if broker.get("tls") and "ca.crt" not in remotes:
        warn("warning: broker.tls is on but no ca.crt is deployed (--file ca.crt): the board will not "
             "check the broker's certificate")
    return items


def client_items(arch: str, build_dir: Path, log=print) -> list[Item]:
    """build/<arch>/upet/**.mpy, built first (pet-build leaves an unchanged tree alone)."""
    try:
        build([arch], build_dir, log=log)
    except BuildError as e:
        raise DeployError(str(e)) from None
    tree = build_dir / arch
    return [Item(f"lib/{p.relative_to(tree).as_posix()}", p.read_bytes(), str(p))
            for p in sorted((tree / PACKAGE).rglob("*.mpy"))]


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DeployError(f"{option} {path}: {e.strerror}") from None


def mpy_header(data: bytes) -> tuple[int, int, int]:
    """(version, sub-version, architecture code) of an .mpy file."""
    return data[1], data[2] & 3, data[2] >> 2


# -- talking to the board (mpremote's serial transport) --------------------------------------

# Runs on the board. Kept in functions so that nothing is left in the REPL's globals.
_SUMS = """
def _pet_sums(paths):
    import os
    try:
        import hashlib
        sha = hashlib.sha256
    except (ImportError, AttributeError):
        sha = None
    buf = bytearray(512)
    out = {}
    for p in paths:
        try:
            h, n = sha() if sha else None, 0
            with open(p, 'rb') as f:
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    n += k
                    if h:
                        h.update(memoryview(buf)[:k])
            out[p] = (n, h.digest() if h else None)
        except OSError:
            pass
    return out
"""

_TREE = """
def _pet_tree(top):
    import os
    out = []
    def walk(d):
        try:
            entries = list(os.ilistdir(d))
        except OSError:
            return
        for e in entries:
            p = d + '/' + e[0]
            if e[1] & 0x4000:
                walk(p)
            else:
                out.append(p)
    walk(top)
    return out
"""

_FREE = """
def _pet_free(root):
    import os
    try:
        s = os.statvfs(root)
    except (AttributeError, OSError):
        return None
    return s[0] * s[4]
"""

# main.py's imports, in its order (the app first), then what main.py will need: the config, the
# key, the native kernels. Every module loaded here is dropped again, so the heap is as before.
_CHECK = """
def _pet_check():
    import gc, sys
    before = set(sys.modules)
    out = {}
    try:
        try:
            import app
            out['app'] = [n for n in ('train', 'on_model', 'MODEL') if hasattr(app, n)]
        except ImportError as e:
            out['app_error'] = repr(e)
        import board_config
        import upet.participant, upet.kernels
        from upet.store import Store
        out['upet'] = upet.participant.__file__
        store = Store()
        config = store.config()
        out['username'] = config.get('username')
        if store.read('key') is not None:
            out['pk'] = upet.transient('boot', 'signing_key', store)[1].hex()
        native = [upet.kernels.load(n) for n in ('chacha', 'f25519')]
        out['native'] = [m.__name__[12:] for m in native if m.__name__.startswith('upet.native.')]
        gc.collect()
        out['heap_free'] = gc.mem_free()
    except Exception as e:
        out['error'] = repr(e)
    for m in list(sys.modules):
        if m not in before:
            del sys.modules[m]
    gc.collect()
    return out
"""


_FORGET = """
for _n in ('_pet_sums', '_pet_tree', '_pet_free', '_pet_check', 'd', 'os', 'sys', '_n'):
    globals().pop(_n, None)
import gc
gc.collect()
"""


class BoardLink:
    """One mpremote serial connection in raw REPL mode, entered without a soft reset (the Unix
    port has none, and a board keeps what it runs until it is reset)."""

    def __init__(self, port: str, timeout: float = 10.0):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        self.port = port
        if "://" not in port and not os.path.exists(port):
            raise DeployError(f"{port} does not exist; serial ports here: {_ports()}")
        try:
            self.transport = SerialTransport(port, baudrate=115200)
        except TransportError:
            raise DeployError(f"cannot open {port}: is another program (a serial monitor, mpremote) "
                              "using it?") from None
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):  # mpremote prints what came back; we say it ourselves
                self.transport.enter_raw_repl(soft_reset=False, timeout_overall=timeout)
        except (TransportError, OSError) as e:
            self.close()
            answer = said.getvalue().strip()
            answer = "" if answer in ("", "b''") else answer
            raise DeployError(f"no MicroPython REPL answers on {port} within {timeout:g} s ({e}"
                              + (f"; it said {answer[:200]}" if answer else "; it said nothing")
                              + "): is it a MicroPython board, and is it running?") from None

    def call(self, doing: str, code: str, expression: str, quiet_for: float = 10):
        """Runs code, then returns the value of expression (a Python literal); `doing` names the step,
        quiet_for is how long the board may stay silent (loading the client on a slow board)."""
        from mpremote.transport import TransportError, TransportExecError
        try:
            self.transport.exec(code)
            out, err = self.transport.exec_raw(f"print(repr({expression}))", timeout=quiet_for)
            if err:
                raise TransportExecError(out, err.decode())
        except TransportExecError as e:
            raise DeployError(f"the board failed {doing}: {e.error_output.strip().splitlines()[-1]}") from None
        except (TransportError, OSError) as e:
            raise DeployError(f"lost the board on {self.port}: {e}") from None
        lines = out.decode().strip().splitlines()  # what the code printed, then the value
        return ast.literal_eval(lines[-1])

    def write(self, path: str, data: bytes) -> None:
        from mpremote.transport import TransportError
        try:
            self.transport.fs_writefile(path, data, chunk_size=1024)
            self.transport.exec("del f, w")  # fs_writefile's names in the REPL's globals
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else e
            raise DeployError(f"cannot write {path} on the board: {reason}") from None
        except TransportError as e:
            raise DeployError(f"cannot write {path} on the board: {e}") from None

    def close(self) -> None:
        try:
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
            self.transport.close()
        except OSError:
            pass


def _ports() -> str:
    from serial.tools.list_ports import comports
    return ", ".join(sorted(p.device for p in comports())) or "none found"


# -- deploying --------------------------------------------------------------------------------


def board_facts(link: BoardLink) -> dict:
    return link.call("saying what it runs", "import sys, os",
                     "{'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', 0), "
                     "'version': '.'.join(str(n) for n in sys.implementation.version[:3]), "
                     "'machine': getattr(sys.implementation, '_machine', sys.platform), 'cwd': os.getcwd()}")


def check_board(facts: dict, board: dict, items: list[Item], warn=print) -> None:
    """Refuses a board that cannot load this build (another architecture or .mpy version)."""
    code = facts["mpy"] >> 10 & 0x0F
    names = {v: k for k, v in ARCHS.items()}
    runs = names.get(code, f"architecture code {code}" if code else "no native code")
    if code != ARCHS[board["ARCH"]]:
        raise DeployError(f"the board on the port runs {runs} code (MicroPython {facts['version']}, "
                          f"{facts['machine']}), but {board['NAME']} is {board['ARCH']}: "
                          f"pick the --board that matches it ({_boards_for(code) or 'none here does'})")
    native = next((i for i in items if i.remote.endswith(".mpy") and mpy_header(i.data)[2]), None)
    if native is not None:
        version, sub, _ = mpy_header(native.data)
        if facts["mpy"] & 0xFF != version:
            raise DeployError(f"the board loads .mpy version {facts['mpy'] & 0xFF}, this build is version "
                              f"{version}: flash MicroPython 1.23 or later (boards/README.md)")
        if facts["mpy"] >> 8 & 3 != sub:
            warn(f"warning: the board loads .mpy {version}.{facts['mpy'] >> 8 & 3}, the native kernels are "
                 f"{version}.{sub}: they will not load and upet uses its slower Python kernels")


def _boards_for(code: int) -> str:
    found = []
    for name in board_names():
        arch = load_board(name).get("ARCH")
        if ARCHS.get(arch) == code:
            found.append(name)
    return ", ".join(found)


def deploy(board_name: str, port: str, config_path: Path, app: Path | None = None, files=(),
           timeout: float = 10.0, build_dir: Path = ROOT / "build", log=print, warn=None,
           frozen: bool = False) -> dict:
    """Copies and checks; returns what the board said about the loaded client."""
    warn = warn or (lambda m: print(m, file=sys.stderr))
    board = load_board(board_name)
    items = plan(board, config_path, app, files, build_dir, warn, log, frozen)
    log(f"connecting to {port}")
    link = BoardLink(port, timeout)
    try:
        facts = board_facts(link)
        log(f"board: MicroPython {facts['version']}, {facts['machine']}, {board['ARCH']}")
        check_board(facts, board, items, warn)
        # the Unix port's filesystem is its working directory; a board's is rooted at /
        root = facts["cwd"].rstrip("/") + "/" if facts["platform"] in ("linux", "darwin") else "/"
        copy(link, root, items, log)
        return verify(link, root, items, board, log, warn, frozen)
    finally:
        link.close()


def copy(link: BoardLink, root: str, items: list[Item], log=print) -> None:
    paths = [root + i.remote for i in items]
    on_board = sums(link, paths)
    tree = link.call("listing lib/upet", _TREE, f"_pet_tree({root + 'lib/' + PACKAGE!r})")
    stale = [p for p in tree if p not in paths]
    todo = [i for i, p in zip(items, paths) if on_board.get(p) != _digest(i.data, on_board.get(p))]
    need = sum(len(i.data) for i in todo) - sum(on_board.get(root + i.remote, (0,))[0] for i in todo)
    free = link.call("telling its free space", _FREE, f"_pet_free({root!r})")
    if free is not None and need > free:
        raise DeployError(f"not enough room on the board: {need} more bytes needed, {free} free")
    for p in stale:
        link.call(f"removing {p}", f"import os\nos.remove({p!r})", "None")
        log(f"removed {p} (not in this build)")
    parts = [i.remote.split("/") for i in todo]
    dirs = sorted({root + "/".join(p[:k]) for p in parts for k in range(1, len(p))}, key=lambda d: d.count("/"))
    link.call("making folders", f"import os\nfor d in {dirs!r}:\n try:\n  os.mkdir(d)\n except OSError:\n  pass",
              "None")
    for n, item in enumerate(todo, 1):
        link.write(root + item.remote, item.data)
        log(f"[{n}/{len(todo)}] {item.remote} ({len(item.data)} bytes) from {item.source}")
    log(f"copied {len(todo)} files, {len(items) - len(todo)} already there")


def sums(link: BoardLink, paths: list[str], batch: int = 8) -> dict:
    """{path: (size, sha256 or None)} of the paths that exist on the board, a few per call (small heaps)."""
    found = {}
    for i in range(0, len(paths), batch):
        found |= link.call("hashing its files", _SUMS, f"_pet_sums({paths[i:i + batch]!r})")
    return found


def _digest(data: bytes, remote) -> tuple:
    """What _pet_sums reports for data (without a hash when the board has no hashlib)."""
    has_hash = remote is None or remote[1] is not None
    return (len(data), hashlib.sha256(data).digest() if has_hash else None)


def verify(link: BoardLink, root: str, items: list[Item], board: dict, log=print, warn=print,
           frozen: bool = False) -> dict:
    paths = [root + i.remote for i in items]
    on_board = sums(link, paths)
    bad = [p for i, p in zip(items, paths) if on_board.get(p) != _digest(i.data, on_board.get(p))]
    if bad:
        raise DeployError(f"{len(bad)} files differ on the board after copying: {', '.join(bad[:5])}")
    hashed = all(v[1] is not None for v in on_board.values())
    log(f"verified {len(items)} files on the board ({'SHA-256' if hashed else 'sizes only: no hashlib'})")
    found = link.call("loading the client", _CHECK, "_pet_check()", quiet_for=120)
    link.call("cleaning up", _FORGET, "None")
    if "error" in found:
        hint = ""
        if "MemoryError" in found["error"]:
            hint = (": too little heap for the client loaded from .mpy files; with upet frozen into the "
                    "firmware it needs less (boards/README.md)")
        elif frozen and "ImportError" in found["error"]:
            hint = ": --frozen, but the firmware has no upet frozen in (deploy without --frozen)"
        raise DeployError(f"the client does not load on the board: {found['error']}{hint}")
    if "app_error" in found:
        warn(f"warning: main.py cannot import the app ({found['app_error']}): deploy one with --app")
    elif not {"train", "on_model"} <= set(found["app"]):
        warn("warning: the app on the board lacks train() or on_model(), which main.py calls")
    if found.get("pk") and found["username"] and found["pk"] != found["username"]:
        raise DeployError("the key on the board is not the one of config.json's username")
    if len(found["native"]) < 2:
        warn("warning: the board uses the Python fallback kernels (slower): its firmware does not load "
             f"the {board['ARCH']} .mpy")
    if frozen and "frozen" not in found["upet"]:
        raise DeployError(f"--frozen, but the board loads upet from {found['upet']}: its firmware has no upet "
                          "frozen in (deploy without --frozen)")
    if not frozen and "frozen" in found["upet"]:
        warn("warning: this firmware has upet frozen in: the board runs that one, not the copied .mpy files "
             "(deploy with --frozen)")
    log(f"the client loads from {found['upet'].rsplit('/', 1)[0]}, native kernels: "
        f"{', '.join(found['native']) or 'none'}, key {(found.get('pk') or 'made on first boot')[:16]}, "
        f"{found['heap_free']} bytes of heap free with it loaded")
    return found


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    summary = __doc__.split("\n\n")[0].split(": ", 1)[1]
    parser = argparse.ArgumentParser(
        prog="pet-deploy", description=summary[0].upper() + summary[1:],
        epilog="Then reset the board (`mpremote connect PORT reset`): main.py starts the participant. "
               "On the Unix port behind a pty: `mpremote connect PORT resume exec \"import main\"`.")
    parser.add_argument("--board", required=True, metavar="NAME",
                        help=f"a folder of boards/: {', '.join(board_names())}")
    parser.add_argument("--port", metavar="DEVICE",
                        help="the board's serial port (/dev/ttyUSB0, /dev/ttyACM0, a pty)")
    parser.add_argument("--config", required=True, type=Path, metavar="FILE",
                        help="the device's config.json from pet-provision; the key beside it goes too")
    parser.add_argument("--app", type=Path, metavar="FILE", help="the app, copied as /app.py (main.py imports it)")
    parser.add_argument("--file", action="append", default=[], metavar="LOCAL[:PATH]",
                        help="another file for the board, e.g. ca.crt or a data shard (repeatable)")
    parser.add_argument("--frozen", action="store_true",
                        help="the board's firmware has upet frozen in: copy everything but /lib/upet")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for the board's REPL (default: 10)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the files and list what the board would get, without a board")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be above 0")
    if not args.dry_run and not args.port:
        parser.error("--port is required (or --dry-run); `mpremote devs` lists the serial ports")
    warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
    try:
        if args.dry_run:
            items = plan(load_board(args.board), args.config, args.app, args.file, warn=warn, frozen=args.frozen)
            for item in items:
                print(f"{len(item.data):8d}  /{item.remote}  <- {item.source}")
            print(f"{sum(len(i.data) for i in items):8d}  total, {len(items)} files (dry run: no board touched)")
        else:
            deploy(args.board, args.port, args.config, args.app, args.file, args.timeout, warn=warn,
                   frozen=args.frozen)
    except DeployError as e:
        print(f"pet-deploy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
