"""UNIX: the MicroPython Unix port (tests, fleet simulation).

Copied to the board as board_config.py; read by upet.board. No machine or network module: upet.board does nothing; the tests run with -X heapsize=64k / 128k.
"""

ARCH = "x64"  # mpy-cross -march for upet/native (pet-build --arch x64)
PORT = "unix"  # MicroPython port directory (ports/unix)
HEAP_BUDGET = 65_536  # bytes of heap the participant may count on
LED = None  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 0  # machine.WDT timeout; 0: no watchdog (a round step must finish within it)
DEEP_SLEEP = False  # True: Board.sleep() deep-sleeps (the board resets and resumes from flash)
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 1  # Ed25519 fixed-base table rows (the code sits in the heap here: 1 row (864 bytes) instead of 4 (3.5 KB); config.json "table_rows" overrides)
