"""RPI_PICO_W: Raspberry Pi Pico W (RP2040).

Copied to the board as board_config.py; read by upet.board. About 190 KB free heap; the LED hangs off the WiFi chip (Pin("LED")).
"""

ARCH = "armv6m"  # mpy-cross -march for upet/native (pet-build --arch armv6m)
PORT = "rp2"  # MicroPython port directory (ports/rp2)
CHIP = "rp2040"  # for pet-flash: the UF2 family and bootloader drive
HEAP_BUDGET = 180_000  # bytes of heap the participant may count on
LED = "LED"  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 0  # machine.WDT timeout; 0: none. The RP2 watchdog allows at most 8.3 s, shorter than
# opening a long seed column: enable it only for small fleets
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 4  # Ed25519 fixed-base table rows, 864 bytes each (config.json "table_rows" overrides)
