"""ESP32_GENERIC: ESP32 (ESP32-WROOM/WROVER dev boards).

Copied to the board as board_config.py; read by upet.board. About 100 KB free heap with upet frozen; without PSRAM keep models small (650 weights).
"""

ARCH = "xtensawin"  # mpy-cross -march for upet/native (pet-build --arch xtensawin)
PORT = "esp32"  # MicroPython port directory (ports/esp32)
CHIP = "esp32"  # for pet-flash: the esptool --chip
HEAP_BUDGET = 100_000  # bytes of heap the participant may count on
LED = 2  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 120_000  # machine.WDT timeout; 0: no watchdog (a round step must finish within it)
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 4  # Ed25519 fixed-base table rows, 864 bytes each (config.json "table_rows" overrides)
