# Freezes the participant into a RPI_PICO2_W firmware image:
#   make -C ports/rp2 BOARD=RPI_PICO2_W FROZEN_MANIFEST=<this repo>/boards/RPI_PICO2_W/manifest.py
# Frozen code runs from flash: it costs no heap.
include("$(PORT_DIR)/boards/manifest.py")
# upet with its viper kernels (compiled by the port's mpy-cross for armv7emsp) and their fallbacks;
# paths are relative to this file
package("upet", base_path="../../firmware", opt=3)
