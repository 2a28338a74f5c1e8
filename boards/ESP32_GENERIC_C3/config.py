"""ESP32_GENERIC_C3: ESP32-C3 dev boards.

Copied to the board as board_config.py; read by upet.board. The dev kit's LED is an addressable RGB LED (GPIO 8), not driven here.
"""

ARCH = "rv32imc"  # mpy-cross -march for upet/native (pet-build --arch rv32imc)
PORT = "esp32"  # MicroPython port directory (ports/esp32)
CHIP = "esp32c3"  # for pet-flash: the esptool --chip
HEAP_BUDGET = 120_000  # bytes of heap the participant may count on
LED = None  # status LED: a pin for machine.Pin, or None
WATCHDOG_MS = 120_000  # machine.WDT timeout; 0: no watchdog (a round step must finish within it)
DEEP_SLEEP_S = 0  # seconds of deep sleep once idle between rounds (a reset follows; the round state is in flash); 0: stay awake
MAX_MESSAGE_SIZE = 3912  # largest sealed message (config.json "max_message_size" overrides)
TABLE_ROWS = 4  # Ed25519 fixed-base table rows, 864 bytes each (config.json "table_rows" overrides)
