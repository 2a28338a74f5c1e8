"""Native kernels: the viper module built for this board, or the pure-Python fallback.

Each kernel set `name` has a viper source `upet/native/<name>.py`, compiled by
`pet-build` (mpy-cross -march=...) into an .mpy for each architecture, and a
fallback `upet/fallback/<name>.py` with the same functions and signatures:
`f25519` (X25519 and Ed25519: the field machine, SHA-512's compression),
`box` (Salsa20, Poly1305, BLAKE2b) and `chacha` (masking). `load(name)`
returns whichever works on the running board; a missing or foreign .mpy
falls back with a one-line notice.
"""

import sys

force_fallback = False  # tests set this before the first load() to check the fallback path
_loaded = {}


def arch():
    """The native architecture of this MicroPython, as mpy-cross's -march names it."""
    # by arch code (sys.implementation._mpy bits 10-13); one string, as every
    # separate constant costs heap on a board that loads this from .mpy
    names = "none x86 x64 armv6 armv6m armv7m armv7em armv7emsp armv7emdp xtensa xtensawin rv32imc".split()
    code = (getattr(sys.implementation, "_mpy", 0) >> 10) & 0x0F
    return names[code] if code < len(names) else "unknown"


def load(name):
    """The kernel set `name`, native if it loads, else the fallback; the same module for every call."""
    mod = _loaded.get(name)
    if mod is None:
        if not force_fallback:
            try:
                mod = __import__("upet.native." + name, None, None, ("load",))
            except (ImportError, ValueError, SyntaxError, NotImplementedError) as e:
                print("upet: native %s kernels unavailable on %s (%s); using Python" % (name, arch(), e))
        if mod is None:
            mod = __import__("upet.fallback." + name, None, None, ("load",))
        _loaded[name] = mod
    return mod
