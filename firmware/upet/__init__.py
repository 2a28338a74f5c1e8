"""upet: the PET participant for MicroPython boards (and the Unix port).

`upet.Participant` loads the participant (MQTT, masking, crypto) on first use,
so that importing one submodule does not load them all.
"""


def __getattr__(name):
    if name == "Participant":
        from upet.participant import Participant
        return Participant
    # `from upet import crypto` asks the package first: import the submodule
    import sys
    __import__("upet." + name)
    return sys.modules["upet." + name]


def transient(name, function, *args):
    """upet.<name>.<function>(*args), with the module loaded for this call only.

    Code loaded from .mpy sits in the heap; a module used rarely (connecting,
    starting a round) leaves it again after the call, except its interned
    strings, which MicroPython never frees: about a third of its size. Objects
    the call returns must not be of classes defined there, as they would keep it.
    Such a module loads mid-round into a heap in small pieces, and each of its
    functions' code needs one piece: they are kept short (under about 200 bytes
    of bytecode each).
    """
    import gc
    import sys
    key = "upet." + name
    resident = key in sys.modules  # imported for good elsewhere: left as it is
    if not resident:
        gc.collect()
    try:
        return getattr(__import__(key, None, None, (function,)), function)(*args)
    finally:
        if not resident:
            sys.modules.pop(key, None)
            globals().pop(name, None)
