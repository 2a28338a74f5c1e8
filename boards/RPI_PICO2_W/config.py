"""RPI_PICO2_W: Raspberry Pi Pico 2 W (RP2350).

Copied to the board as board_config.py; read by upet.board. About 470 KB free heap.
"""

ARCH = "armv7emsp"  # mpy-cross -march for upet/native (pet-build --arch armv7emsp)
PORT = "rp2"  # MicroPython port directory (ports/rp2)
CHIP = "rp2350"  # for pet-flash: the UF2 family and bootloader drive
HEAP_BUDGET = 450_000  # bytes of heap the participant may count on
LED = "LED"  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 0  # machine.WDT timeout; 0: none. The RP2 watchdog allows at most 8.3 s, shorter than
# opening a long seed column: enable it only for small fleets
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 4  # Ed25519 fixed-base table rows, 864 bytes each (config.json "table_rows" overrides)
