"""What a fault leaves behind for a participant: a lost answer, stale round state.

After a broker or gateway restart a participant may never get the answer to a message the
coordinator accepted; it sends the message again, maybe after its phase ended. A broker
restarted from its saved state serves the retained round parameters it saved, maybe those of
an earlier round, until the gateway publishes the current ones. And a gateway that has just
(re)connected does not know yet what the broker kept, maybe the last round's sum dict. None
of these may make a participant give up a round it is part of.
"""

from gateway.app import Gateway
from gateway.settings import load_settings
from pet.participant import HttpTransport, Phase
from pet.participant.mqtt import DeviceClient
from pet.wire import RoundParameters
from tests.coordinator_harness import RunningCoordinator, drive, fast_settings, make_fleet
from tests.test_coordinator_kill import get
from tests.test_gateway import gateway_env, wait_for


def test_a_message_sent_again_after_its_phase_ended_is_a_duplicate():
    settings = fast_settings(**{"pet.sum.prob": 0.4, "pet.update.prob": 1.0, "pet.sum2.time.min": 30,
                                "pet.sum2.time.max": 60})
    with RunningCoordinator(settings) as c:
        fleet = make_fleet(c.url, 10)
        sent: dict[Phase, list[bytes]] = {Phase.SENDING_SUM: [], Phase.SENDING_UPDATE: []}
        for p, _ in fleet:
            def send(sealed, p=p, inner=p.transport.send):
                sent.get(p.phase, []).append(sealed)
                return inner(sealed)
            p.transport.send = send
        drive(fleet, lambda: c.status()["phase"] == "sum2", timeout=60)
        before = c.status()
        assert len(sent[Phase.SENDING_SUM]) == before["sum_participants"] >= 1
        assert len(sent[Phase.SENDING_UPDATE]) == before["updates"] >= 3
        http = HttpTransport(c.url)
        for sealed in sent[Phase.SENDING_SUM] + sent[Phase.SENDING_UPDATE]:
            verdict = http.send(sealed)
            assert (verdict.accepted, verdict.reason) == (False, "duplicate"), verdict
        after = c.status()
        assert (after["sum_participants"], after["updates"]) == (before["sum_participants"], before["updates"])
        assert after["reasons"] == {"duplicate": len(sent[Phase.SENDING_SUM]) + len(sent[Phase.SENDING_UPDATE])}


def test_a_participant_ignores_the_parameters_of_a_round_it_has_left():
    with RunningCoordinator(fast_settings(**{"pet.sum.prob": 0.4, "pet.update.prob": 1.0})) as c:
        fleet = make_fleet(c.url, 10)
        first = RoundParameters.from_bytes(get(c.url, "/params")[1])
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=60)  # round 1
        drive(fleet, lambda: c.status()["phase"] == "update"
              and all(p.phase in (Phase.UPDATE, Phase.SUM2, Phase.AWAITING) for p, _ in fleet), timeout=60)
        summer = next(p for p, _ in fleet if p.phase is Phase.SUM2)
        current, ephm = summer.params, summer.ephm
        summer.transport.params = lambda: first  # what a broker restored from its saved state serves
        assert summer.step() is False
        assert (summer.params, summer.phase, summer.ephm) == (current, Phase.SUM2, ephm)
        del summer.transport.params
        drive(fleet, lambda: c.status()["latest_model"]["round_id"] == 2, timeout=60)
        assert c.status()["latest_model"]["sum2"] == c.status()["latest_model"]["sums"]  # summer's mask too


def test_new_round_parameters_come_after_the_last_sum_dict_is_cleared(mosquitto_factory, tmp_path):
    broker = mosquitto_factory()
    address = (broker.host, broker.port)
    device = DeviceClient(address, "pet", bytes(32))
    for topic, payload in (("pet/round/params", b"round 1"), ("pet/round/sums", b"sums of round 1")):
        device.client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    wait_for(lambda: device.topic("round/sums") == b"sums of round 1", what="the last round's state")
    gateway = Gateway(load_settings(env=gateway_env(address, "http://127.0.0.1:9", tmp_path / "q.db", "pet")))
    gateway.link.on_retained = lambda topic, payload: None  # it has not learned what the broker kept
    gateway.link.start()
    try:
        wait_for(gateway.link.connected.is_set, what="the gateway to connect")
        gateway.downlink._wanted = {"pet/round/params": b"round 2"}  # what GET /params now says
        gateway.downlink.sync()
        wait_for(lambda: device.topic("round/params") == b"round 2", what="the new parameters")
        assert device.topic("round/sums") is None
    finally:
        gateway.link.stop()
        gateway.queue.close()
        device.close()
