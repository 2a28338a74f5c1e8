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
