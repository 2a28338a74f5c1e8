"""Native kernels: the viper module built for this board, or the pure-Python fallback.

Each kernel set `name` has a viper source `upet/native/<name>.py`, compiled by
`pet-build` (mpy-cross -march=...) into an .mpy for each architecture, and a
fallback `upet/fallback/<name>.py` with the same functions and signatures.
`load(name)` returns whichever works on the running board; a missing or
foreign .mpy falls back with a one-line notice.
"""

import sys

force_fallback = False  # tests set this before the first load() to check the fallback path
_loaded = {}

# by arch code (sys.implementation._mpy bits 10-13); one string, as every separate
# constant costs heap on a board that loads this from .mpy
_ARCHS = "none x86 x64 armv6 armv6m armv7m armv7em armv7emsp armv7emdp xtensa xtensawin rv32imc"


def arch():
    """The native architecture of this MicroPython, as mpy-cross's -march names it."""
    code = (getattr(sys.implementation, "_mpy", 0) >> 10) & 0x0F
    names = _ARCHS.split()
    return names[code] if code < len(names) else "unknown"


def load(name):
    mod = _loaded.get(name)
    if mod is not None:
        return mod
    if not force_fallback:
        try:
            mod = __import__("upet.native." + name, None, None, ("load",))
        except (ImportError, ValueError, SyntaxError, NotImplementedError) as e:
            print("upet: native", name, "kernels unavailable on", arch(), "(" + str(e) + "); using Python")
    if mod is None:
        mod = __import__("upet.fallback." + name, None, None, ("load",))
    _loaded[name] = mod
    return mod
