"""upet: the PET participant for MicroPython boards (and the Unix port)."""
