# Freezes the participant into a Unix-port executable (no BOARD variable for this port):
#   make -C ports/unix FROZEN_MANIFEST=<this repo>/boards/UNIX/manifest.py
include("$(PORT_DIR)/variants/manifest.py")
# upet with its viper kernels (compiled by the port's mpy-cross for x64) and their fallbacks;
# paths are relative to this file
package("upet", base_path="../../firmware", opt=3)
