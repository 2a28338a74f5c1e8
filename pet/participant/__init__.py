"""The CPython reference participant: tests, the fleet simulator and Linux boards use it.

Transports: `HttpTransport` (the coordinator's REST API) and, in
`pet.participant.mqtt`, `MqttTransport` (a gateway's MQTT topics).
"""

from pet.participant.participant import Participant, Phase, Settings
from pet.participant.store import MemoryStore, StateStore
from pet.participant.transport import HttpTransport, Transport, TransportError
from pet.verdict import ACCEPTED, Verdict

__all__ = ["Participant", "Phase", "Settings", "MemoryStore", "StateStore", "ACCEPTED",
           "HttpTransport", "Transport", "TransportError", "Verdict"]
