# Freezes the participant into a ESP32_GENERIC_C3 firmware image:
#   make -C ports/esp32 BOARD=ESP32_GENERIC_C3 FROZEN_MANIFEST=<this repo>/boards/ESP32_GENERIC_C3/manifest.py
# Frozen code runs from flash: it costs no heap.
include("$(PORT_DIR)/boards/manifest.py")
# upet with its viper kernels (compiled by the port's mpy-cross for rv32imc) and their fallbacks;
# paths are relative to this file
package("upet", base_path="../../firmware", opt=3)
