"""The reference participant against the real coordinator: roles, chunking, restarts, rejections."""

import logging
import os
import stat

import numpy as np
import pytest

from pet.crypto import SigningKeyPair
from pet.participant import HttpTransport, MemoryStore, Participant, Phase, Settings, StateStore, \
    TransportError
from pet.sortition import Task, select_task
from tests.coordinator_harness import App, RunningCoordinator, drive, fast_settings, make_fleet


def wait_phase(c, phase, timeout=20):
    drive([], lambda: c.status()["phase"] == phase, timeout=timeout)


def test_roles_follow_sortition():
    with RunningCoordinator(fast_settings(**{"pet.sum.time.min": 5})) as c:
        fleet = make_fleet(c.url, 10)
        drive(fleet, lambda: all(p.params and p.phase in (Phase.SUM2, Phase.UPDATE, Phase.AWAITING)
                                 for p, _ in fleet))
        params = fleet[0][0].params
        for p, _ in fleet:
            task = select_task(p.keys, params.seed, params.sum, params.update).task
            assert p.phase is {Task.SUM: Phase.SUM2, Task.UPDATE: Phase.UPDATE, Task.NONE: Phase.AWAITING}[task]
        assert c.status()["sum_participants"] == sum(p.phase is Phase.SUM2 for p, _ in fleet)


def test_large_updates_are_chunked_and_reassembled():
    with RunningCoordinator(fast_settings(**{"model.length": 3000, "pet.update.time.min": 4})) as c:
        fleet = make_fleet(c.url, 10, settings=Settings(max_message_size=1000))
        sent = []
        for p, _ in fleet:
            original = p.transport.send
            p.transport.send = lambda sealed, original=original: (sent.append(len(sealed)), original(sealed))[1]
        seed = fleet[0][0].transport.params().seed
        drive(fleet, lambda: c.status()["latest_model"] is not None)
        assert max(sent) <= 1000 and len(sent) > 10 * 3  # every update took several chunks
        apps = [a for _, a in fleet if seed in a.given]
        want = sum(a.scalar * a.given[seed].astype(np.float64) for a in apps) / sum(a.scalar for a in apps)
        got = np.frombuffer(c.call(c.coordinator.model_bytes("f32"))[12:], dtype="<f4")
        assert np.allclose(got, want, atol=1e-5)


def test_participants_receive_the_global_model():
    with RunningCoordinator(fast_settings()) as c:
        fleet = make_fleet(c.url, 10)
        received = []
        for p, _ in fleet:
            p.on_global_model = received.append
        drive(fleet, lambda: c.status()["round_id"] >= 2)
        drive(fleet, lambda: len(received) == len(fleet))
        assert all(np.array_equal(m, received[0]) for m in received)
        assert len(received[0]) == c.settings.model.length


def test_unreachable_coordinator_means_waiting():
    p = Participant(HttpTransport("http://127.0.0.1:9", timeout=0.5), lambda *a: None)
    assert p.step() is False
    assert p.phase is Phase.AWAITING


class LosesAnswers(HttpTransport):
    """HTTP, but the answer to a POST can be lost after the coordinator processed it."""

    lose = False

    def send(self, sealed):
        verdict = super().send(sealed)
        if self.lose:
            raise TransportError("connection lost before the answer")
        return verdict


def _update_key(params):
    for i in range(1, 500):
        keys = SigningKeyPair.from_seed(i.to_bytes(32, "little"))
        if select_task(keys, params.seed, params.sum, params.update).task is Task.UPDATE:
            return keys
    raise AssertionError("no update participant")


def reach_update_phase(c):
    """Let sum participants in and reach the Update phase; their fellow updaters hold back."""
    others = make_fleet(c.url, 8, first_key=1000)
    for _, app in others:
        app.ready = False
    drive(others, lambda: c.status()["phase"] == "update")


def test_restart_resumes_and_never_counts_twice(tmp_path):
    settings = fast_settings(**{"pet.sum.prob": 0.3, "pet.update.prob": 1.0, "pet.update.time.min": 3})
    with RunningCoordinator(settings) as c:
        reach_update_phase(c)
        net = LosesAnswers(c.url)
        keys = _update_key(net.params())
        p = Participant(net, App(99).train, keys=keys, store=StateStore(tmp_path / "dev"))
        drive([(p, None)], lambda: p.phase is Phase.SENDING_UPDATE)
        net.lose = True            # the coordinator takes the update, the answer is lost
        assert p.step() is False
        assert c.status()["updates"] == 1
        net.lose = False
        # power cut: a new process over the same state directory
        p2 = Participant(HttpTransport(c.url), App(99).train, store=StateStore(tmp_path / "dev"))
        assert p2.public_key == keys.public_key and p2.phase is Phase.SENDING_UPDATE
        assert p2.step()           # resent; 'duplicate' counts as done
        assert p2.phase is Phase.AWAITING
        assert c.status()["updates"] == 1
        assert c.status()["counters"]["rejected"] == 1


def test_state_directory_keeps_the_key_private(tmp_path):
    store = StateStore(tmp_path / "dev")
    keys = store.load_or_create_keys()
    assert StateStore(tmp_path / "dev").load_or_create_keys() == keys
    assert stat.S_IMODE(os.stat(tmp_path / "dev" / "key").st_mode) == 0o600
    assert keys.secret_key.hex() not in repr(keys)
    with pytest.raises(ValueError, match="another participant"):
        StateStore(tmp_path / "dev").load_or_create_keys(SigningKeyPair.generate())


def test_a_rejected_message_skips_the_round(caplog):
    settings = fast_settings(**{"pet.sum.prob": 0.99, "pet.update.prob": 0.5, "pet.sum.time.min": 0.5})
    with RunningCoordinator(settings) as c:
        p = Participant(HttpTransport(c.url), lambda *a: None, keys=SigningKeyPair.from_seed(bytes(32)))
        drive([(p, None)], lambda: p.phase is Phase.SENDING_SUM)
        helpers = make_fleet(c.url, 3, first_key=500)
        drive(helpers, lambda: c.status()["phase"] == "update")   # p's Sum comes too late
        with caplog.at_level(logging.WARNING, logger="pet.participant"):
            drive([(p, None)], lambda: p.phase is Phase.AWAITING)
        assert "wrong_phase" in caplog.text


def test_model_hook_not_ready_means_waiting_and_a_wrong_length_skips():
    settings = fast_settings(**{"pet.sum.prob": 0.3, "pet.update.prob": 1.0, "pet.update.time.min": 5})
    with RunningCoordinator(settings) as c:
        reach_update_phase(c)
        ready = []
        p = Participant(HttpTransport(c.url), lambda params, gm: ready[0] if ready else None,
                        keys=_update_key(HttpTransport(c.url).params()))
        drive([(p, None)], lambda: p.phase is Phase.UPDATE)
        assert not p.step() and p.phase is Phase.UPDATE        # waits for the model
        ready.append(np.zeros(c.settings.model.length + 1, dtype=np.float32))
        drive([(p, None)], lambda: p.phase is Phase.AWAITING)
        assert c.status()["updates"] == 0


def test_a_new_round_drops_unfinished_work():
    settings = fast_settings(**{"pet.sum.prob": 0.99, "pet.sum.time.max": 1.0})
    with RunningCoordinator(settings) as c:
        p = Participant(HttpTransport(c.url), lambda *a: None, keys=SigningKeyPair.from_seed(bytes(32)),
                        store=MemoryStore())
        drive([(p, None)], lambda: p.phase is Phase.SUM)
        first = p.params
        drive([], lambda: c.status()["round_id"] == 2, timeout=10)   # the round fails: too few sums
        drive([(p, None)], lambda: p.params != first and p.phase is Phase.SUM2)
        assert c.status()["sum_participants"] == 1 and c.status()["counters"]["rejected"] == 0


def test_the_command_line_participant_takes_part(tmp_path):
    import subprocess
    import sys
    settings = fast_settings(**{"pet.sum.prob": 0.2, "pet.update.prob": 1.0, "pet.update.time.min": 2})
    with RunningCoordinator(settings) as c:
        np.save(tmp_path / "model.npy", np.full(c.settings.model.length, 0.25, dtype=np.float32))
        proc = subprocess.Popen([sys.executable, "-m", "pet.participant", "--url", c.url, "--state",
                                 str(tmp_path / "state"), "--model", str(tmp_path / "model.npy")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            fleet = make_fleet(c.url, 10)
            drive(fleet, lambda: (tmp_path / "state" / "global-latest.npy").exists(), timeout=60)
        finally:
            proc.terminate()
            out = proc.communicate(timeout=10)[0]
        assert "participant" in out and "new global model saved" in out
        assert np.load(tmp_path / "state" / "global-latest.npy").shape == (c.settings.model.length,)
        assert (tmp_path / "state" / "key").exists()


def test_mqtt_participant_ignores_junk_on_its_ack_topic(mosquitto_url):
    """Junk where verdicts arrive is dropped with a warning; the client goes on hearing
    the broker and still gets the verdict that follows."""
    from pet.participant.mqtt import DeviceClient
    from tests.test_gateway import broker_address
    broker = broker_address(mosquitto_url)
    pk = bytes(range(32))
    device, sender = DeviceClient(broker, "junk", pk), DeviceClient(broker, "junk", bytes(32))
    try:
        topic = f"junk/dev/{pk.hex()}/ack"
        for junk in (b"\xff\xfe", b"not json", b"[1, 2]", b'{"msg": 7}'):
            sender.client.publish(topic, junk, qos=1).wait_for_publish(5)
        sender.client.publish(topic, b'{"msg": "m1", "accepted": true}', qos=1).wait_for_publish(5)
        assert device.ack("m1", 10) == {"msg": "m1", "accepted": True}
        assert device.acks == [{"msg": "m1", "accepted": True}]
    finally:
        device.close()
        sender.close()
