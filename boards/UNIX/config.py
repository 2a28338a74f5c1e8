"""UNIX: the MicroPython Unix port (tests, fleet simulation).

Copied to the board as board_config.py; read by upet.board. No machine or network module: upet.board does nothing. The code sits in the heap here: a 650-weight round completes in -X heapsize=64k (the target), a 10,000-weight one in 104k (docs/performance.md).
"""

ARCH = "x64"  # mpy-cross -march for upet/native (pet-build --arch x64)
PORT = "unix"  # MicroPython port directory (ports/unix)
HEAP_BUDGET = 98_304  # bytes of heap the participant may count on (pet-fleet's default -X heapsize for the digits model)
LED = None  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 0  # machine.WDT timeout; 0: no watchdog (a round step must finish within it)
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 1  # Ed25519 fixed-base table rows (the code sits in the heap here: 1 row (864 bytes) instead of 4 (3.5 KB); config.json "table_rows" overrides)
