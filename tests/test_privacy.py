"""What the coordinator, its store and the gateway hold of one participant's update.

A model update is masked with a one-time ChaCha20 mask, so what the coordinator adds up,
and what it keeps in SQLite or Redis, is a vector of numbers that must look uniform over the
group; the gateway only ever holds the sealed box. Only the sum of all updates unmasks,
with the global mask the sum participants send; a single masked update comes out only
with its own mask seed, and each mask seed opens only with the key of the sum participant
it was sealed to.

The statistics: a Kolmogorov-Smirnov test of the numbers against the uniform distribution
over the group, and chi-square tests of their high and low bytes (or of the bytes of a
sealed box), at alpha = 10^-3 for the coordinator (fixed mask seeds: the same numbers every
run) and 10^-6 for the gateway (the seal's ephemeral key is random each run). Each test
also shows that the same statistic rejects what the numbers would be without the mask.
"""

from __future__ import annotations

import base64
import sqlite3
import urllib.parse
import uuid

import numpy as np
import pytest
from scipy import stats

from coordinator.store import open_store
from gateway.settings import load_settings as gateway_settings
from pet import crypto
from pet.crypto import CryptoError, EncryptKeyPair
from pet.mask import (DEFAULT_MCU_CONFIG, Aggregation, MaskObject, UnmaskError, aggregate_masks, derive_mask,
                      mask_model, unmask)
from pet.mask.masking import _sub
from pet.participant.mqtt import DeviceClient
from pet.wire import UpdateSeedDict
from tests.test_adversarial import Round, coordinator, http, signed
from tests.test_gateway import RunningGateway, Switch, broker_address, gateway_env, wait_for

LENGTH = 20_000  # numbers enough for the tests to tell structure from noise
ALPHA = 1e-3


def uniformity(values: np.ndarray, order: int) -> float:
    """The smallest p-value of: KS against uniform on [0, order), chi-square of the top and
    of the bottom byte of the numbers (order 2^32)."""
    values = np.asarray(values, dtype=np.uint64)
    ks = stats.kstest(values.astype(np.float64) / order, "uniform").pvalue
    top = np.bincount((values >> np.uint64(24)).astype(np.int64), minlength=256)
    low = np.bincount((values & np.uint64(0xFF)).astype(np.int64), minlength=256)
    return min(ks, stats.chisquare(top).pvalue, stats.chisquare(low).pvalue)


def byte_uniformity(data: bytes) -> float:
    return stats.chisquare(np.bincount(np.frombuffer(data, np.uint8), minlength=256)).pvalue


def fixed_point(weights: np.ndarray, config) -> np.ndarray:
    """What the coordinator would add up without masks: the fixed-point numbers of a model."""
    _, masked = mask_model(weights, 1.0, config, seed=bytes(32))
    return _sub(config, masked.vect.data, derive_mask(bytes(32), len(weights), config).vect.data)


def peaked(length: int, seed: int) -> np.ndarray:
    """A model as a trained one looks: small weights, most near zero."""
    return np.random.default_rng(seed).normal(0, 0.05, length).astype(np.float32)


def read_store(kind: str, location: str, prefix: str):
    return open_store("redis", location, prefix=prefix) if kind == "redis" else open_store("sqlite", location)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """(settings overrides, kind, location, prefix) of a fresh store."""
    if request.param == "sqlite":
        path = str(tmp_path / "coordinator.db")
        return {"store.path": path}, "sqlite", path, ""
    url, prefix = request.getfixturevalue("redis_url"), f"privacy-{uuid.uuid4().hex[:8]}:"
    return {"store.kind": "redis", "store.url": url, "store.prefix": prefix}, "redis", url, prefix


def test_the_coordinator_and_its_store_hold_uniform_numbers_of_an_update(store):
    overrides, kind, location, prefix = store
    with coordinator(**overrides, **{"model.length": LENGTH}) as c:
        r = Round(c, first_key=40_000)
        order = r.config.order
        # two models that could hardly differ more: all zeros, and weights near the bound
        for u, weights in zip(r.updaters, (np.zeros(LENGTH, np.float32), np.full(LENGTH, 3.9, np.float32),
                                           peaked(LENGTH, 1))):
            u.weights = weights
            u.mask_seed, u.masked = mask_model(weights, 1.0, r.config, seed=u.mask_seed)
        held = []

        def on_update(r):
            reader = read_store(kind, location, prefix)
            for u in r.updaters[:2]:
                r.honest(u)
                stored, count = reader.aggregate()
                held.append(MaskObject.from_bytes(stored))
                assert count == len(held)
            # the store keeps each update's mask seed only as sealed boxes, one per sum participant
            for s in r.summers:
                column = reader.seed_column(s.keys.public_key)
                assert set(column) == {u.keys.public_key for u in r.updaters[:2]}
                for box in column.values():
                    assert len(box) == 80 and all(u.mask_seed not in box for u in r.updaters)
                    with pytest.raises(CryptoError):  # the round key does not open them
                        crypto.seal_open(box, r.pk, c.coordinator.view.round_sk)
            if hasattr(reader, "close"):
                reader.close()
        r.run(on_update=on_update)

    first = held[0].vect.data                                   # the aggregate of one update
    second = _sub(r.config, held[1].vect.data, first)          # what the second update added
    assert np.array_equal(first, r.updaters[0].masked.vect.data)
    assert np.array_equal(second, r.updaters[1].masked.vect.data)
    for masked in (first, second):
        assert uniformity(masked, order) > ALPHA
    # nor do the two tell apart: same distribution, though one model is 0 and the other 3.9
    assert stats.ks_2samp(first.astype(np.float64), second.astype(np.float64)).pvalue > ALPHA
    # the tests can tell: the unmasked numbers of these models are anything but uniform
    for weights in (r.updaters[0].weights, r.updaters[1].weights, peaked(LENGTH, 1)):
        assert uniformity(fixed_point(weights, r.config), order) < 1e-12


def test_only_the_aggregate_unmasks():
    config = DEFAULT_MCU_CONFIG
    models = [peaked(LENGTH, i) for i in range(4)]
    seeds = [bytes([i + 1]) * 32 for i in range(4)]
    masked = [mask_model(w, 1.0, config, seed=s)[1] for w, s in zip(models, seeds)]
    agg = Aggregation(config, config, LENGTH)
    for m in masked:
        agg.aggregate(m)
    global_mask = aggregate_masks(seeds, LENGTH, config)
    # the sum of all updates, with the sum of all masks: the average model
    assert np.allclose(unmask(agg.object, global_mask, 4), np.mean(models, axis=0), atol=1e-5)
    for i, m in enumerate(masked):
        others = [s for j, s in enumerate(seeds) if j != i]
        # one update, with the global mask, with the other updates' masks, or with a guessed
        # seed: still uniform numbers
        for mask in (global_mask, aggregate_masks(others, LENGTH, config),
                     derive_mask(bytes(32), LENGTH, config)):
            assert uniformity(_sub(config, m.vect.data, mask.vect.data), config.order) > ALPHA
        # and unmask() makes no model of it: no scalar, or numbers nowhere near the model
        try:
            attempt = unmask(m, global_mask, 1)
        except UnmaskError:
            pass
        else:
            assert not np.allclose(attempt, models[i], atol=0.1)
        # only its own mask seed opens it
        assert np.allclose(unmask(m, derive_mask(seeds[i], LENGTH, config), 1), models[i], atol=1e-5)
        # the aggregate without one of the masks is no model either
        partial = aggregate_masks(others, LENGTH, config)
        assert uniformity(_sub(config, agg.object.vect.data, partial.vect.data), config.order) > ALPHA


def test_a_sum_participant_opens_only_its_own_seed_column():
    with coordinator(sums=3) as c:
        r = Round(c, sums=3, first_key=50_000)
        columns = {}

        def on_sum2(r):
            for s in r.summers:
                b64 = base64.b64encode(s.keys.public_key).decode()
                status, body = http(r.url, "/seeds?pk=" + urllib.parse.quote(b64, safe=""))
                assert status == 200
                columns[s.keys.public_key] = UpdateSeedDict.from_bytes(body)
            stranger = EncryptKeyPair.generate()
            for s in r.summers:
                for owner, column in columns.items():
                    assert set(column) == {u.keys.public_key for u in r.updaters}
                    for update_pk, box in column.items():
                        if owner == s.keys.public_key:
                            seed = crypto.seal_open(box, s.ephm.public_key, s.ephm.secret_key)
                            assert seed == next(u.mask_seed for u in r.updaters if u.keys.public_key == update_pk)
                        else:
                            with pytest.raises(CryptoError):
                                crypto.seal_open(box, s.ephm.public_key, s.ephm.secret_key)
                        with pytest.raises(CryptoError):
                            crypto.seal_open(box, stranger.public_key, stranger.secret_key)
                        with pytest.raises(CryptoError):
                            crypto.seal_open(box, r.pk, c.coordinator.view.round_sk)
            # the same seed, sealed to three keys: three boxes with nothing in common
            u = r.updaters[0]
            boxes = [columns[s.keys.public_key][u.keys.public_key] for s in r.summers]
            assert len({b[:32] for b in boxes}) == 3 and len({b[32:] for b in boxes}) == 3
        r.run(on_sum2=on_sum2)


def test_the_gateway_queue_holds_a_sealed_box_of_uniform_bytes(mosquitto_url, tmp_path):
    broker = broker_address(mosquitto_url)
    prefix = f"privacy-{uuid.uuid4().hex[:8]}"
    with coordinator(**{"model.length": LENGTH}) as c:
        r = Round(c, first_key=60_000)
        switch = Switch(c.port)
        queue = tmp_path / "q.db"
        u = r.updaters[0]
        u.weights = np.zeros(LENGTH, np.float32)
        u.mask_seed, u.masked = mask_model(u.weights, 1.0, r.config, seed=u.mask_seed)
        try:
            with RunningGateway(gateway_settings(env=gateway_env(broker, switch.url, queue, prefix))) as gw:
                device = DeviceClient(broker, prefix, u.keys.public_key)

                def on_update(r):
                    plain = signed(r.update_message(u), u.keys)
                    sealed = r.seal(plain)
                    switch.set_cut(True)  # the coordinator is away: the update waits in the queue
                    msg = device.publish(sealed)
                    wait_for(lambda: gw.metric("pet_gateway_queue_messages") == 1, what="the queued update")
                    with sqlite3.connect(queue) as db:
                        (device_hex, payload), = db.execute("SELECT device, payload FROM uplinks").fetchall()
                    assert device_hex == u.keys.public_key.hex()  # the gateway knows who sent it ...
                    assert payload == sealed                      # ... and holds only the box
                    for part in (u.masked.vect.to_bytes()[8:72], u.keys.public_key, plain[136:200]):
                        assert part not in payload
                    assert byte_uniformity(payload[32:]) > 1e-6   # after the ephemeral key
                    # (the same test on the model's unmasked numbers)
                    assert byte_uniformity(fixed_point(u.weights, r.config).astype("<u4").tobytes()) < 1e-12
                    switch.set_cut(False)
                    ack = device.ack(msg, 20)
                    assert ack is not None and ack["accepted"], ack
                    r.done.add(u.keys.public_key)
                try:
                    r.run(on_update=on_update)
                finally:
                    device.close()
        finally:
            switch.close()
