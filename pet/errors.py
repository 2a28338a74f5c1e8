"""Errors shared by every decoder of the protocol package."""


class DecodeError(ValueError):
    """Malformed bytes: the message names the field that failed to decode."""
