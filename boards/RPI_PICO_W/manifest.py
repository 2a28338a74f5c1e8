# Freezes the participant into a RPI_PICO_W firmware image:
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=<this repo>/boards/RPI_PICO_W/manifest.py
# Frozen code runs from flash: it costs no heap.
include("$(PORT_DIR)/boards/manifest.py")
# upet with its viper kernels (compiled by the port's mpy-cross for armv6m) and their fallbacks;
# paths are relative to this file
package("upet", base_path="../../firmware", opt=3)
