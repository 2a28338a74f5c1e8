"""ESP32_GENERIC_S3: ESP32-S3 dev boards.

Copied to the board as board_config.py; read by upet.board. The dev kit's LED is an addressable RGB LED (GPIO 48), not driven here; with PSRAM the heap is megabytes.
"""

ARCH = "xtensawin"  # mpy-cross -march for upet/native (pet-build --arch xtensawin)
PORT = "esp32"  # MicroPython port directory (ports/esp32)
CHIP = "esp32s3"  # for pet-flash: the esptool --chip
HEAP_BUDGET = 200_000  # bytes of heap the participant may count on
LED = None  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 120_000  # machine.WDT timeout; 0: no watchdog (a round step must finish within it)
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 4  # Ed25519 fixed-base table rows, 864 bytes each (config.json "table_rows" overrides)
