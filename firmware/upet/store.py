"""Flash files of a participant: its key, its config and the progress of the current round.

Layout in the store's directory (the board's root by default):

  key          64 bytes: Ed25519 seed || public key (libsodium's layout, as
               pet-provision writes it); made from os.urandom on first boot
               (upet.boot)
  config.json  broker, login, prefix, wifi, scalar (docs/raspberry-pi.md)
  round.json   the round in progress: phase, round parameters, signatures,
               ephemeral and mask seeds, message id, next chunk
  round.f32    the weights of the update being sent, so that a reset resumes
               the same update instead of building another one
  round.msg    the message (or chunk) being sent: built, signed and sealed here
               a window at a time, and published from here (upet.participant
               writes it in place: after a reset it is built again)

Every other write goes to a temporary file first and is renamed over the old one,
so a reset leaves either the old file or the new one, never half of one.
round.json holds secrets: nothing here prints what it reads.
"""

import json
import os
from binascii import hexlify

KEY = "key"
CONFIG = "config.json"
ROUND = "round.json"
WEIGHTS = "round.f32"
MSG = "round.msg"


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class Store:
    def __init__(self, root=""):
        self.root = root.rstrip("/")

    def path(self, name):
        return self.root + "/" + name if self.root else name

    def write(self, name, data):
        self._replace(name, lambda f: f.write(data))

    def _replace(self, name, fill):
        """Atomic replace: fill(file) writes a temp file, then rename (removing the old file where rename will not)."""
        path = self.path(name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            fill(f)
        try:
            os.rename(tmp, path)
        except OSError:  # FAT does not rename over an existing file
            _remove(path)
            os.rename(tmp, path)

    def read(self, name):
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError:
            return None

    def remove(self, name):
        _remove(self.path(name))

    # -- config and the round in progress ----------------------------------------------------

    def config(self):
        raw = self.read(CONFIG)
        if raw is None:
            raise ValueError("%s is missing: copy the config.json made by pet-provision" % self.path(CONFIG))
        return json.loads(raw)

    def save_round(self, state):
        """The round's progress, a dict of str -> bytes, str or number, as JSON with the bytes
        as hex strings (upet.boot reads it back). Written a piece at a time: no string the size
        of the state, or of its largest value, is made."""
        def fill(f):
            f.write("{")
            sep = ""
            for k, v in state.items():
                f.write('%s"%s": ' % (sep, k))
                sep = ", "
                if isinstance(v, bytes):
                    f.write('"')
                    for i in range(0, len(v), 32):
                        f.write(hexlify(memoryview(v)[i:i + 32]))
                    f.write('"')
                else:
                    json.dump(v, f)
            f.write("}")
        self._replace(ROUND, fill)
