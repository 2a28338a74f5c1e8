"""A participant's state on disk, so that a restart resumes the round or cleanly skips it.

Layout of the state directory:
  key             the 64-byte Ed25519 secret key (seed || pk), mode 0600
  state.json      phase, round parameters, task signatures, ephemeral key
  outbox/NNNNNN   sealed messages still to send, one file each, in order
Every write goes to a temporary file that is renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pet.crypto import SigningKeyPair


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class StateStore:
    """Keys, round state and outbox of one participant in one directory."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "outbox").mkdir(exist_ok=True)

    # -- keys ----------------------------------------------------------------------------------

    def load_or_create_keys(self, keys: SigningKeyPair | None = None) -> SigningKeyPair:
        """The stored key pair; if there is none, `keys` (or a new pair) is stored."""
        path = self.dir / "key"
        if path.exists():
            stored = SigningKeyPair.from_secret_key(path.read_bytes())
            if keys is not None and keys != stored:
                raise ValueError(f"{path} holds another participant's key")
            return stored
        keys = keys or SigningKeyPair.generate()
        _write_atomic(path, keys.secret_key)
        return keys

    # -- round state ---------------------------------------------------------------------------

    def load_state(self) -> dict | None:
        path = self.dir / "state.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None  # a torn or foreign file: start afresh rather than crash

    def save_state(self, state: dict) -> None:
        _write_atomic(self.dir / "state.json", json.dumps(state, sort_keys=True).encode())

    # -- outbox --------------------------------------------------------------------------------

    def _outbox_files(self) -> list[Path]:
        return sorted(p for p in (self.dir / "outbox").iterdir() if not p.name.endswith(".tmp"))

    def set_outbox(self, messages: list[bytes]) -> None:
        self.clear_outbox()
        for i, msg in enumerate(messages):
            _write_atomic(self.dir / "outbox" / f"{i:06d}", msg)

    def outbox_head(self) -> bytes | None:
        files = self._outbox_files()
        return files[0].read_bytes() if files else None

    def pop_outbox(self) -> None:
        files = self._outbox_files()
        if files:
            files[0].unlink()

    def outbox_len(self) -> int:
        return len(self._outbox_files())

    def clear_outbox(self) -> None:
        for p in (self.dir / "outbox").iterdir():
            p.unlink()


class MemoryStore(StateStore):
    """The same interface without a disk, for short-lived participants."""

    def __init__(self):
        self._state: dict | None = None
        self._outbox: list[bytes] = []
        self._keys: SigningKeyPair | None = None

    def load_or_create_keys(self, keys: SigningKeyPair | None = None) -> SigningKeyPair:
        if self._keys is None:
            self._keys = keys or SigningKeyPair.generate()
        elif keys is not None and keys != self._keys:
            raise ValueError("this store holds another participant's key")
        return self._keys

    def load_state(self) -> dict | None:
        return self._state

    def save_state(self, state: dict) -> None:
        self._state = json.loads(json.dumps(state))

    def set_outbox(self, messages: list[bytes]) -> None:
        self._outbox = list(messages)

    def outbox_head(self) -> bytes | None:
        return self._outbox[0] if self._outbox else None

    def pop_outbox(self) -> None:
        if self._outbox:
            self._outbox.pop(0)

    def outbox_len(self) -> int:
        return len(self._outbox)

    def clear_outbox(self) -> None:
        self._outbox = []
