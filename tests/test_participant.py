"""The reference participant through whole rounds: roles, masking, chunking, restarts, rejections."""

import logging
import os
import stat

import numpy as np
import pytest

from pet.crypto import SigningKeyPair
from pet.mask import DEFAULT_CONFIG, DEFAULT_MCU_CONFIG
from pet.participant import HttpTransport, Participant, Phase, Settings, StateStore, TransportError
from pet.sortition import Task, select_task
from tests.pet_round import RoundDriver, serve_http

N = 40


class App:
    """A participant's app: a fixed local model per round, records what it handed over."""

    def __init__(self, seed: int, scalar: float = 1.0):
        self.rs = np.random.default_rng(seed)
        self.scalar = scalar
        self.given = None
        self.global_models = []

    def train(self, params, global_model):
        self.given = self.rs.uniform(-1, 1, params.model_length).astype(np.float32)
        return self.given, self.scalar

    def on_global_model(self, model):
        self.global_models.append(model)


def make_fleet(transport, count, settings=None, stores=None):
    fleet = []
    for i in range(count):
        app = App(i, scalar=1.0 / (1 + i % 3))  # B0 caps scalars at 1
        p = Participant(transport, app.train, settings=settings, on_global_model=app.on_global_model,
                        keys=SigningKeyPair.from_seed(bytes([i + 1]) * 32),
                        store=stores[i] if stores else None)
        fleet.append((p, app))
    return fleet


def settle(fleet, limit=10_000):
    for _ in range(limit):
        if not any([p.step() for p, _ in fleet]):
            return
    raise AssertionError("participants kept making progress")


def run_round(driver, fleet):
    settle(fleet)                 # sortition, Sum messages
    driver.end_phase()            # -> Update
    settle(fleet)                 # Update messages
    driver.end_phase()            # -> Sum2
    settle(fleet)                 # Sum2 messages
    updaters = [app for p, app in fleet if p.update_signature is not None and app.given is not None]
    driver.end_phase()            # unmask, next round
    return updaters


def expected_average(updaters):
    total = sum(app.scalar for app in updaters)
    return sum(app.scalar * app.given.astype(np.float64) for app in updaters) / total


@pytest.mark.parametrize("config", [DEFAULT_CONFIG, DEFAULT_MCU_CONFIG], ids=lambda c: c.name)
def test_a_round_unmasks_the_weighted_average(config):
    driver = RoundDriver(config, N)
    fleet = make_fleet(driver, 12)
    updaters = run_round(driver, fleet)
    assert driver.rejections == {}
    assert len(driver.sum_dict) == 0  # new round started
    assert len(updaters) >= 3
    model = np.array([float(x) for x in driver.global_model])
    assert np.allclose(model, expected_average(updaters), atol=1e-5)
    settle(fleet)  # the new round's parameters bring the global model to every participant
    for p, app in fleet:
        assert np.allclose(app.global_models[-1], model)


def test_roles_follow_sortition():
    driver = RoundDriver(DEFAULT_CONFIG, N)
    fleet = make_fleet(driver, 10)
    settle(fleet)
    p_ = driver.round_params
    for p, _ in fleet:
        task = select_task(p.keys, p_.seed, p_.sum, p_.update).task
        want = {Task.SUM: Phase.SUM2, Task.UPDATE: Phase.UPDATE, Task.NONE: Phase.AWAITING}[task]
        assert p.phase is want
    assert set(driver.sum_dict) == {p.public_key for p, _ in fleet if p.phase is Phase.SUM2}


def test_large_updates_are_chunked_and_reassembled():
    driver = RoundDriver(DEFAULT_MCU_CONFIG, 2000)
    fleet = make_fleet(driver, 8, settings=Settings(max_message_size=1000))
    sent = []
    original_send = driver.send

    def counting_send(sealed):
        sent.append(len(sealed))
        return original_send(sealed)
    driver.send = counting_send
    updaters = run_round(driver, fleet)
    assert max(sent) <= 1000 and len(sent) > 8 * 2  # updates needed several chunks each
    model = np.array([float(x) for x in driver.global_model])
    assert np.allclose(model, expected_average(updaters), atol=1e-5)


def test_over_real_http():
    driver = RoundDriver(DEFAULT_CONFIG, N)
    server, url = serve_http(driver)
    try:
        fleet = make_fleet(HttpTransport(url), 8)
        updaters = run_round(driver, fleet)
        assert driver.rejections == {}
        model = np.array([float(x) for x in driver.global_model])
        assert np.allclose(model, expected_average(updaters), atol=1e-5)
    finally:
        server.shutdown()


def test_unreachable_coordinator_means_waiting():
    p = Participant(HttpTransport("http://127.0.0.1:9", timeout=0.5), lambda *a: None)
    assert p.step() is False
    assert p.phase is Phase.AWAITING


class FlakyTransport:
    """The driver, with the network failing on demand."""

    def __init__(self, driver):
        self.driver = driver
        self.down = False
        self.accept_then_fail = False

    def __getattr__(self, name):
        attr = getattr(self.driver, name)
        if not callable(attr):
            return attr

        def call(*args):
            if self.down:
                raise TransportError("network down")
            result = attr(*args)
            if name == "send" and self.accept_then_fail:
                raise TransportError("connection lost before the answer")
            return result
        return call


def _update_participant(driver, tmp_path):
    """Index of a key that is an update participant in the driver's current round."""
    p_ = driver.round_params
    for i in range(200):
        keys = SigningKeyPair.from_seed(bytes([i + 1]) * 32)
        if select_task(keys, p_.seed, p_.sum, p_.update).task is Task.UPDATE:
            return keys
    raise AssertionError("no update participant among 200 keys")


def test_restart_resumes_and_never_counts_twice(tmp_path):
    driver = RoundDriver(DEFAULT_CONFIG, N, sum_prob=0.3, update_prob=1.0)
    sums = make_fleet(driver, 6)
    settle(sums)
    driver.end_phase()  # Update phase: a sum dict exists
    net = FlakyTransport(driver)
    keys = _update_participant(driver, tmp_path)
    app = App(99)
    p = Participant(net, app.train, keys=keys, store=StateStore(tmp_path / "dev"))
    while p.phase is not Phase.SENDING_UPDATE:
        assert p.step()
    net.accept_then_fail = True   # the coordinator takes the update, the answer is lost
    assert p.step() is False
    assert driver.aggregation.nb_models == 1
    net.accept_then_fail = False
    # power cut: a new process over the same state directory
    p2 = Participant(net, app.train, store=StateStore(tmp_path / "dev"))
    assert p2.public_key == keys.public_key and p2.phase is Phase.SENDING_UPDATE
    assert p2.step()              # resent: 'duplicate' counts as done
    assert p2.phase is Phase.AWAITING
    assert driver.aggregation.nb_models == 1
    assert driver.rejections == {"duplicate": 1}


def test_state_directory_keeps_the_key_private(tmp_path):
    store = StateStore(tmp_path / "dev")
    keys = store.load_or_create_keys()
    assert StateStore(tmp_path / "dev").load_or_create_keys() == keys
    mode = stat.S_IMODE(os.stat(tmp_path / "dev" / "key").st_mode)
    assert mode == 0o600
    assert keys.secret_key.hex() not in repr(keys)


def test_rejected_message_skips_the_round(caplog):
    driver = RoundDriver(DEFAULT_CONFIG, N, sum_prob=0.99, update_prob=0.5)
    fleet = make_fleet(driver, 3)
    for p, _ in fleet:
        p.step()      # new round
        p.step()      # sortition -> SUM
        p.step()      # Sum queued
    driver.end_phase()  # too late: the coordinator is in Update now
    with caplog.at_level(logging.WARNING, logger="pet.participant"):
        settle(fleet)
    assert all(p.phase is Phase.AWAITING for p, _ in fleet)
    assert driver.rejections["wrong_phase"] == 3
    assert "wrong_phase" in caplog.text


def test_model_hook_not_ready_means_waiting_and_bad_length_skips():
    driver = RoundDriver(DEFAULT_CONFIG, N, sum_prob=0.3, update_prob=1.0)
    settle(make_fleet(driver, 6))
    driver.end_phase()
    keys = _update_participant(driver, None)
    ready = []
    p = Participant(driver, lambda params, gm: ready[0] if ready else None, keys=keys)
    settle([(p, None)])
    assert p.phase is Phase.UPDATE
    ready.append(np.zeros(N + 1, dtype=np.float32))
    settle([(p, None)])
    assert p.phase is Phase.AWAITING and driver.aggregation.nb_models == 0


def test_new_round_drops_unfinished_work():
    driver = RoundDriver(DEFAULT_CONFIG, N, sum_prob=0.99, update_prob=0.5)
    fleet = make_fleet(driver, 2)
    for p, _ in fleet:
        p.step()
        p.step()
    assert all(p.phase is Phase.SUM for p, _ in fleet)
    driver.start_round()
    settle(fleet)
    assert all(p.params == driver.round_params for p, _ in fleet)
    assert len(driver.sum_dict) == 2 and driver.rejections == {}
