"""upet.board's restart after an error the participant could not handle.

No board is attached here, and the Unix port has no `machine` module: the board
path runs against a stand-in `machine` that records what the board layer asks of
the hardware. Without one (the Unix port), restart returns at once and the
process ends (tests/test_fleet.py: a device out of memory).
"""

from tests.firmware.conftest import run_upy

MACHINE = """
calls = []
class Pin:
    OUT = 1
    def __init__(self, pin, mode):
        calls.append(("pin", pin))
    def value(self, v):
        calls.append(("led", v))
class WDT:
    def __init__(self, timeout):
        calls.append(("wdt", timeout))
    def feed(self):
        calls.append(("feed",))
class Reset(Exception):
    pass
def reset():
    calls.append(("reset",))
    raise Reset()
"""


def test_restart_pauses_feeding_the_watchdog_then_resets(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "machine.py").write_text(MACHINE)
    (lib / "network.py").write_text("")
    (lib / "board_config.py").write_text("LED = 2\nWATCHDOG_MS = 5000\n")
    out = run_upy(f"""
        import sys, time
        sys.path.insert(0, {str(lib)!r})
        import machine
        from upet.board import Board
        board = Board()
        start = time.ticks_ms()
        try:
            board.restart(pause_ms=400)
            print("returned")
        except machine.Reset:
            print("reset after", time.ticks_diff(time.ticks_ms(), start) >= 400)
        kinds = [c[0] for c in machine.calls]
        print(kinds[:2], kinds[-1], kinds.count("feed") >= 3, set(c[1] for c in machine.calls if c[0] == "led"))
    """, tmp=tmp_path)
    assert out.split("\n")[:2] == ["reset after True", "['pin', 'wdt'] reset True {0, 1}"], out


def test_restart_returns_on_the_unix_port(tmp_path):
    out = run_upy("""
        import time
        from upet.board import Board
        start = time.ticks_ms()
        Board().restart(pause_ms=5000)
        print("returned at once", time.ticks_diff(time.ticks_ms(), start) < 1000)
    """, tmp=tmp_path)
    assert out.split("\n")[0] == "returned at once True", out
