"""The coordinator over real HTTP with reference participants: rounds, verdicts, failures, restarts."""

import base64
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from coordinator.store.sqlite import SQLiteStore
from pet import crypto
from pet.crypto import SigningKeyPair
from pet.mask import mask_model
from pet.participant import HttpTransport, Phase
from pet.sortition import Task, select_task
from pet.wire import LocalSeedDict, Message, RoundParameters, Sum, Sum2, Update
from tests.coordinator_harness import RunningCoordinator, drive, fast_settings, make_fleet


def post(url, body: bytes, headers=None):
    req = urllib.request.Request(url + "/message", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get(url, path):
    try:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def weighted_average(fleet, seed):
    apps = [app for _, app in fleet if seed in app.given]
    total = sum(app.scalar for app in apps)
    return sum(app.scalar * app.given[seed].astype(np.float64) for app in apps) / total, len(apps)


def model_of(url):
    status, body = get(url, "/model?format=f32")
    assert status == 200
    round_id = int.from_bytes(body[:8], "little")
    n = int.from_bytes(body[8:12], "little")
    return round_id, np.frombuffer(body[12:], dtype="<f4", count=n)


@pytest.fixture
def coordinator():
    with RunningCoordinator(fast_settings()) as c:
        yield c


def test_a_full_round_unmasks_the_weighted_average(coordinator):
    url = coordinator.url
    assert get(url, "/model")[0] == 204
    fleet = make_fleet(url, 12)
    first_seed = RoundParameters.from_bytes(get(url, "/params")[1]).seed
    drive(fleet, lambda: coordinator.status()["round_id"] >= 2)
    want, n_updates = weighted_average(fleet, first_seed)
    round_id, got = model_of(url)
    assert round_id == 1
    assert np.allclose(got, want, atol=1e-5)
    latest = coordinator.status()["latest_model"]
    assert latest["updates"] == n_updates >= 3 and latest["sums"] >= 1
    # XayNet's /model: bincode rationals of the same values
    status, body = get(url, "/model")
    from pet.wire import Model
    assert np.allclose([float(x) for x in Model.from_bytes(body)], want, atol=1e-5)


def test_rounds_continue_and_participants_get_the_global_model(coordinator):
    fleet = make_fleet(coordinator.url, 10)
    seen = []
    for p, _ in fleet:
        p.on_global_model = seen.append
    drive(fleet, lambda: coordinator.status()["round_id"] >= 3, timeout=60)
    assert coordinator.status()["latest_model"]["round_id"] == 2
    assert seen, "participants never received a global model"


def _sealed(msg: Message, keys: SigningKeyPair, round_pk: bytes) -> bytes:
    return crypto.seal(crypto.sign_message(msg.encode(), keys), round_pk)


def _key_with_task(params: RoundParameters, task: Task, start=1000):
    for i in range(start, start + 500):
        keys = SigningKeyPair.from_seed(i.to_bytes(32, "little"))
        sel = select_task(keys, params.seed, params.sum, params.update)
        if sel.task is task:
            return keys, sel
    raise AssertionError(f"no {task} key found")


def _verdict(status, body):
    return status, json.loads(body)["reason"] if body else "accepted"


def test_every_bad_message_gets_its_reason(coordinator):
    url = coordinator.url
    params = RoundParameters.from_bytes(get(url, "/params")[1])
    pk = params.pk
    summer, sel = _key_with_task(params, Task.SUM)
    sum_msg = Message.from_payload(summer.public_key, pk, Sum(sel.sum_signature, bytes(32)))

    assert _verdict(*post(url, b"garbage")) == (400, "undecryptable")
    assert _verdict(*post(url, crypto.seal(b"x" * 200, pk))) == (400, "malformed")
    signed = bytearray(crypto.sign_message(sum_msg.encode(), summer))
    signed[200] ^= 1
    assert _verdict(*post(url, crypto.seal(bytes(signed), pk))) == (400, "bad_signature")
    other = Message.from_payload(summer.public_key, bytes(32), Sum(sel.sum_signature, bytes(32)))
    assert _verdict(*post(url, _sealed(other, summer, pk))) == (400, "wrong_coordinator_pk")
    updater, usel = _key_with_task(params, Task.UPDATE)
    cfg = params.mask_config.vect
    _, masked = mask_model(np.zeros(params.model_length, dtype=np.float32), 1.0, cfg)
    update = Message.from_payload(updater.public_key, pk, Update(usel.sum_signature, usel.update_signature,
                                                                   masked, LocalSeedDict()))
    assert _verdict(*post(url, _sealed(update, updater, pk))) == (409, "wrong_phase")
    # a Sum from a key that is not a sum participant this round
    not_summer = Message.from_payload(updater.public_key, pk, Sum(usel.sum_signature, bytes(32)))
    assert _verdict(*post(url, _sealed(not_summer, updater, pk))) == (403, "not_eligible")
    assert post(url, _sealed(sum_msg, summer, pk))[0] == 200
    assert _verdict(*post(url, _sealed(sum_msg, summer, pk))) == (409, "duplicate")
    too_big = b"x" * (coordinator.settings.api.max_body_bytes + 1)
    assert _verdict(*post(url, too_big)) == (413, "too_large")
    counters = coordinator.status()["counters"]
    assert counters["accepted"] == 1 and counters["rejected"] == 8
    metrics = get(url, "/metrics")[1].decode()
    assert 'pet_messages_total{phase="sum",reason="bad_signature",verdict="rejected"} 1.0' in metrics


def test_bad_queries():
    with RunningCoordinator(fast_settings()) as c:
        assert get(c.url, "/seeds?pk=nonsense")[0] == 400
        assert get(c.url, "/seeds?pk=" + base64.b64encode(bytes(32)).decode().replace("=", "%3D"))[0] == 204
        assert get(c.url, "/sums")[0] == 204
        assert get(c.url, "/model?format=xml")[0] == 400
        assert get(c.url, "/nothing")[0] == 404
        status = json.loads(get(c.url, "/status")[1])
        assert status["phase"] == "sum" and status["round_id"] == 1
        assert get(c.url, "/healthz") == (200, b"ok\n")


def test_token_is_required_when_configured():
    with RunningCoordinator(fast_settings(**{"api.token": "s3cret"})) as c:
        assert _verdict(*post(c.url, b"x")) == (401, "unauthorized")
        assert _verdict(*post(c.url, b"x", {"Authorization": "Bearer wrong"})) == (401, "unauthorized")
        assert _verdict(*post(c.url, b"x", {"Authorization": "Bearer s3cret"})) == (400, "undecryptable")


def test_a_round_without_enough_participants_fails_and_a_new_one_starts():
    settings = fast_settings(**{"pet.sum.time.max": 2.0})
    with RunningCoordinator(settings) as c:
        first = c.status()["round_id"]
        seed1 = get(c.url, "/params")[1]
        drive([], lambda: c.status()["round_id"] > first, timeout=10)
        assert get(c.url, "/params")[1] != seed1   # new keys and seed
        assert 'pet_rounds_total{outcome="failed"} 1.0' in get(c.url, "/metrics")[1].decode()
        # participants arrive: the next round succeeds
        fleet = make_fleet(c.url, 12)
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=30)
        assert c.status()["latest_model"]["round_id"] > first


def test_dropout_margin_needs_more_sum_participants():
    settings = fast_settings(**{"pet.sum.dropout_margin": 2, "pet.sum.time.max": 60})
    with RunningCoordinator(settings) as c:
        assert c.status()["needed"] == 3


def test_concurrent_updates_all_count():
    settings = fast_settings(**{"pet.sum.prob": 0.1, "pet.update.prob": 1.0, "pet.sum.time.min": 2,
                                "pet.update.time.min": 3, "model.length": 200})
    with RunningCoordinator(settings) as c:
        fleet = make_fleet(c.url, 40)
        for _, app in fleet:
            app.ready = False
        drive(fleet, lambda: c.status()["phase"] == "update"
              and all(p.phase in (Phase.UPDATE, Phase.SUM2) for p, _ in fleet), timeout=30)
        updaters = [(p, a) for p, a in fleet if p.phase is Phase.UPDATE]
        for _, app in updaters:
            app.ready = True
        threads = [threading.Thread(target=drive, args=([pa], lambda p=pa[0]: p.phase is Phase.AWAITING))
                   for pa in updaters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert c.status()["updates"] == len(updaters)
        seed = updaters[0][0].params.seed
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=30)
        want, n = weighted_average(fleet, seed)
        assert n == len(updaters)
        assert np.allclose(model_of(c.url)[1], want, atol=1e-5)


def test_restart_resumes_the_round(tmp_path):
    db = tmp_path / "coordinator.db"
    settings = fast_settings(**{"store.path": str(db), "pet.update.time.min": 2, "pet.update.time.max": 60,
                                "pet.sum.prob": 0.2, "pet.update.prob": 1.0})
    c = RunningCoordinator(settings)
    fleet = make_fleet(c.url, 12)
    for _, app in fleet:
        app.ready = False
    drive(fleet, lambda: c.status()["phase"] == "update"
          and all(p.phase in (Phase.UPDATE, Phase.SUM2) for p, _ in fleet))
    updaters = [p for p, _ in fleet if p.phase is Phase.UPDATE]
    first = updaters[:2]
    for p, app in fleet:
        app.ready = p in first
    drive([(p, None) for p in first], lambda: all(p.phase is Phase.AWAITING for p in first))
    before = c.status()
    assert before["updates"] == 2
    c.stop()                                   # the coordinator goes away mid-round
    c = RunningCoordinator(settings, store=SQLiteStore(db))
    try:
        after = c.status()
        assert (after["round_id"], after["phase"], after["updates"]) == (before["round_id"], "update", 2)
        for p, app in fleet:
            p.transport = HttpTransport(c.url)
            app.ready = True
        seed = updaters[0].params.seed
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=60)
        want, n = weighted_average(fleet, seed)
        assert c.status()["latest_model"]["updates"] == n
        assert np.allclose(model_of(c.url)[1], want, atol=1e-5)
    finally:
        c.stop()


def test_mcu_and_xaynet_configs():
    for name in ("Prime/F32/B0/M3", "W64/F32/b0/m20"):
        with RunningCoordinator(fast_settings(**{"mask.config": name})) as c:
            params = RoundParameters.from_bytes(get(c.url, "/params")[1])
            assert params.mask_config.vect == c.coordinator.config
            assert params.mask_config.vect.name.startswith(name.split("/")[0])
            fleet = make_fleet(c.url, 10)
            drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=30)
            want, _ = weighted_average(fleet, params.seed)
            assert np.allclose(model_of(c.url)[1], want, atol=1e-5)



def _wait_phase(c, phase, timeout=20):
    drive([], lambda: c.status()["phase"] == phase, timeout=timeout)


def test_update_and_sum2_rejections_and_the_round_still_completes():
    settings = fast_settings(**{"pet.sum.prob": 0.5, "pet.update.prob": 1.0, "pet.update.time.min": 1.5,
                                "pet.sum.count.min": 1})
    with RunningCoordinator(settings) as c:
        url = c.url
        params = RoundParameters.from_bytes(get(url, "/params")[1])
        pk, cfg, n = params.pk, params.mask_config.vect, params.model_length
        a, a_sel = _key_with_task(params, Task.SUM, start=2000)
        b, b_sel = _key_with_task(params, Task.SUM, start=int.from_bytes(a.seed, "little") + 1)
        ephm = crypto.EncryptKeyPair.generate()
        assert post(url, _sealed(Message.from_payload(a.public_key, pk, Sum(a_sel.sum_signature, ephm.public_key)),
                                 a, pk))[0] == 200
        _wait_phase(c, "update")

        updaters, start = [], 3000
        while len(updaters) < 4:
            keys, sel = _key_with_task(params, Task.UPDATE, start=start)
            updaters.append((keys, sel))
            start = int.from_bytes(keys.seed, "little") + 1

        def update_msg(keys, sel, weights, seeds):
            _, masked = mask_model(weights, 1.0, cfg, seed=bytes(32))
            return Message.from_payload(keys.public_key, pk, Update(sel.sum_signature, sel.update_signature,
                                                                     masked, LocalSeedDict(seeds)))
        zeros = np.zeros(n, dtype=np.float32)
        seed_box = {a.public_key: crypto.seal(bytes(32), ephm.public_key)}
        u, usel = updaters[0]
        assert _verdict(*post(url, _sealed(update_msg(u, usel, zeros, {}), u, pk))) == (400, "seed_dict_mismatch")
        assert _verdict(*post(url, _sealed(update_msg(u, usel, zeros, {bytes(32): bytes(80)}), u, pk))) == \
            (403, "unknown_sum_participant")
        short = update_msg(u, usel, np.zeros(n - 1, dtype=np.float32), seed_box)
        assert _verdict(*post(url, _sealed(short, u, pk))) == (400, "bad_mask")
        # two different chunk 0s of one multipart message
        from pet.multipart import encode_messages
        full = update_msg(u, usel, zeros, seed_box)
        chunks = encode_messages(u.public_key, pk, full.payload, 100, message_id=7)
        assert post(url, _sealed(chunks[0], u, pk))[0] == 200
        chunks[1].payload.id = 0
        assert _verdict(*post(url, _sealed(chunks[1], u, pk))) == (400, "multipart")
        # a flood of chunks that never finish leaves the coordinator serving
        for i in range(50):
            junk = encode_messages(u.public_key, pk, full.payload, 100, message_id=100 + i)[0]
            assert post(url, _sealed(junk, u, pk))[0] == 200
        assert c.status()["pending_chunks"] <= 51
        for keys, sel in updaters[:3]:
            assert post(url, _sealed(update_msg(keys, sel, zeros + 0.5, seed_box), keys, pk))[0] == 200
        _wait_phase(c, "sum2")

        def sum2_msg(keys, sel, length):
            from pet.mask import aggregate_masks
            mask = aggregate_masks([bytes(32)] * 3, length, cfg)
            return Message.from_payload(keys.public_key, pk, Sum2(sel.sum_signature, mask))
        assert _verdict(*post(url, _sealed(sum2_msg(b, b_sel, n), b, pk))) == (403, "unknown_sum_participant")
        assert _verdict(*post(url, _sealed(sum2_msg(a, a_sel, n - 1), a, pk))) == (400, "bad_mask")
        assert post(url, _sealed(sum2_msg(a, a_sel, n), a, pk))[0] == 200
        drive([], lambda: c.status()["latest_model"] is not None, timeout=20)
        round_id, model = model_of(url)
        assert np.allclose(model, 0.5, atol=1e-5)
        assert c.status()["latest_model"]["updates"] == 3


def test_a_full_phase_discards_further_messages():
    settings = fast_settings(**{"pet.sum.prob": 0.5, "pet.sum.count.max": 1, "pet.sum2.count.max": 1,
                                "pet.sum.time.min": 5})
    with RunningCoordinator(settings) as c:
        params = RoundParameters.from_bytes(get(c.url, "/params")[1])
        a, a_sel = _key_with_task(params, Task.SUM, start=2000)
        b, b_sel = _key_with_task(params, Task.SUM, start=int.from_bytes(a.seed, "little") + 1)
        for keys, sel, want in ((a, a_sel, (200, "accepted")), (b, b_sel, (429, "phase_full"))):
            msg = Message.from_payload(keys.public_key, params.pk, Sum(sel.sum_signature, bytes(32)))
            assert _verdict(*post(c.url, _sealed(msg, keys, params.pk))) == want
        assert c.status()["counters"] == {"accepted": 1, "rejected": 0, "discarded": 1}


def test_sum_participants_may_drop_out_when_the_sum2_quorum_holds():
    settings = fast_settings(**{"pet.sum.prob": 0.4, "pet.sum.dropout_margin": 1,
                                "pet.sum2.count.min": 1})
    with RunningCoordinator(settings) as c:
        fleet = make_fleet(c.url, 14)
        drive(fleet, lambda: c.status()["phase"] == "update")
        summers = [p for p, _ in fleet if p.phase is Phase.SUM2]
        assert len(summers) >= 2
        dropped = summers[0]
        rest = [(p, a) for p, a in fleet if p is not dropped]
        seed = dropped.params.seed
        drive(rest, lambda: c.status()["latest_model"] is not None, timeout=30)
        assert c.status()["latest_model"]["sum2"] == len(summers) - 1
        want, _ = weighted_average(fleet, seed)
        assert np.allclose(model_of(c.url)[1], want, atol=1e-5)


@pytest.mark.parametrize("config", ["Prime/F32/B0/M3", "W32/F32/b2/m10"])
def test_full_round_on_redis(redis_url, config):
    import uuid
    settings = fast_settings(**{"store.kind": "redis", "store.url": redis_url,
                                "store.prefix": f"test-{uuid.uuid4().hex[:8]}:", "mask.config": config})
    with RunningCoordinator(settings) as c:
        fleet = make_fleet(c.url, 12)
        seed = RoundParameters.from_bytes(get(c.url, "/params")[1]).seed
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=30)
        want, n = weighted_average(fleet, seed)
        assert n >= 3 and np.allclose(model_of(c.url)[1], want, atol=1e-5)


def post_batch(url, body: bytes, headers=None):
    req = urllib.request.Request(url + "/messages", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def frames(*messages: bytes) -> bytes:
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


def test_a_batch_of_messages_gets_their_verdicts_in_order():
    settings = fast_settings(**{"api.token": "s3cret", "pet.sum.time.min": 30, "pet.sum.time.max": 60})
    with RunningCoordinator(settings) as c:
        auth = {"Authorization": "Bearer s3cret"}
        params = RoundParameters.from_bytes(get(c.url, "/params")[1])
        sums = []
        for start in (1000, 2000):
            keys, sel = _key_with_task(params, Task.SUM, start)
            sums.append(_sealed(Message.from_payload(keys.public_key, params.pk,
                                                     Sum(sel.sum_signature, bytes(32))), keys, params.pk))
        assert sums[0] != sums[1]

        status, verdicts = post_batch(c.url, frames(b"garbage", sums[0], crypto.seal(b"x" * 200, params.pk),
                                                    sums[1]), auth)
        assert status == 200
        assert [(v["accepted"], v["reason"]) for v in verdicts] == [
            (False, "undecryptable"), (True, ""), (False, "malformed"), (True, "")]
        status, verdicts = post_batch(c.url, frames(sums[1]), auth)
        assert (status, verdicts[0]["reason"]) == (200, "duplicate")
        assert post_batch(c.url, b"", auth) == (200, [])

        # the body as a whole: its framing, its size, the token
        status, error = post_batch(c.url, frames(sums[0])[:-1], auth)
        assert (status, error["reason"]) == (400, "malformed") and "announced" in error["detail"]
        status, error = post_batch(c.url, frames(sums[0]) + b"\x00\x00", auth)
        assert (status, error["reason"]) == (400, "malformed")
        too_big = b"x" * (c.settings.api.max_body_bytes + 1)
        assert post_batch(c.url, too_big, auth)[1]["reason"] == "too_large"
        assert post_batch(c.url, frames(b"garbage"))[1]["reason"] == "unauthorized"
        status, error = post_batch(c.url, frames(b"garbage"), {"Authorization": "Bearer wrong"})
        assert (status, error["reason"]) == (401, "unauthorized")

        counters = c.status()["counters"]
        assert counters["accepted"] == 2 and counters["rejected"] == 3 + 5  # each message, each refused body
        assert c.status()["sum_participants"] == 2


# -- what the dashboard reads ---------------------------------------------------------------------

def get_json(url, path, headers=None):
    req = urllib.request.Request(url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_rounds_lists_failed_and_completed_rounds_with_their_figures():
    def evaluate(weights):
        return {"mean": float(weights.mean()), "broken": float("nan"), "label": "text", "flag": True}
    settings = fast_settings(**{"pet.sum.time.max": 2.0})
    with RunningCoordinator(settings, evaluate=evaluate) as c:
        assert get_json(c.url, "/rounds") == (200, [])
        assert post(c.url, b"\x00" * 300)[0] == 400
        drive([], lambda: c.status()["round_id"] > 1, timeout=10)
        fleet = make_fleet(c.url, 12)
        first_seed = RoundParameters.from_bytes(get(c.url, "/params")[1]).seed
        drive(fleet, lambda: c.status()["latest_model"] is not None, timeout=30)
        status, rounds = get_json(c.url, "/rounds")
    failed, completed = rounds
    assert (failed["round_id"], failed["outcome"], failed["phase"]) == (1, "failed", "sum")
    assert "0 of the 1 messages needed" in failed["failure"]
    assert failed["messages"] == {"accepted": 0, "rejected": 1, "discarded": 0}
    assert failed["reasons"] == {"undecryptable": 1} and failed["duration"] >= 2.0
    assert (completed["round_id"], completed["outcome"]) == (2, "completed")
    want, n_updates = weighted_average(fleet, first_seed)
    assert completed["updates"] == n_updates and completed["sums"] >= 1 and completed["sum2"] >= 1
    # only finite numbers are kept: JSON has no NaN and the page draws numbers
    assert list(completed["evaluation"]) == ["mean"]
    assert completed["evaluation"]["mean"] == pytest.approx(float(want.mean()), abs=1e-5)
    assert completed["messages"]["accepted"] >= n_updates + completed["sums"] + completed["sum2"]
    assert completed["ended"] >= completed["started"] + completed["duration"]


def test_status_hears_the_gateways_that_ask():
    with RunningCoordinator(fast_settings()) as c:
        report = {"X-Pet-Gateway": "site-b", "X-Pet-Gateway-Mqtt": "disconnected", "X-Pet-Gateway-Queue": "12"}
        status, body = get_json(c.url, "/status", report)
        assert status == 200 and body["phase"] == "sum" and body["now"] >= body["phase_started"]
        assert get_json(c.url, "/status", {"X-Pet-Gateway": "site-a"})[0] == 200
        status, gateways = get_json(c.url, "/gateways")
        assert [(g["id"], g["mqtt"], g["queued"], g["address"]) for g in gateways] == [
            ("site-a", None, None, "127.0.0.1"), ("site-b", "disconnected", 12, "127.0.0.1")]
        assert all(g["last_seen"] <= c.status()["now"] for g in gateways)
        for headers, message in (
                ({"X-Pet-Gateway": "x" * 65}, "X-Pet-Gateway must be the gateway's id"),
                ({"X-Pet-Gateway": "a b"}, "X-Pet-Gateway must be the gateway's id"),
                ({"X-Pet-Gateway": "a", "X-Pet-Gateway-Mqtt": "maybe"},
                 "X-Pet-Gateway-Mqtt must be connected or disconnected, got 'maybe'"),
                ({"X-Pet-Gateway": "a", "X-Pet-Gateway-Queue": "-1"},
                 "X-Pet-Gateway-Queue must be the number of queued uplinks, got '-1'")):
            status, text = get_json(c.url, "/status", headers)
            assert status == 400 and text.startswith(message), text
        assert len(get_json(c.url, "/gateways")[1]) == 2


def test_gateway_reports_forget_the_longest_silent_first():
    from coordinator.metrics import GatewayReports
    reports = GatewayReports(keep=2)
    reports.heard("a", "10.0.0.1", "connected", 0, 1.0)
    reports.heard("b", "10.0.0.2", "connected", 0, 2.0)
    reports.heard("a", "10.0.0.1", "connected", 3, 3.0)   # a again: b is now the longest silent
    reports.heard("c", "10.0.0.3", None, None, 4.0)
    assert [(g["id"], g["queued"], g["last_seen"]) for g in reports.list()] == [("a", 3, 3.0), ("c", None, 4.0)]


def test_rejections_and_reasons_of_the_round():
    with RunningCoordinator(fast_settings()) as c:
        assert get_json(c.url, "/rejections") == (200, [])
        post(c.url, b"\x00" * 300)
        post(c.url, b"x")
        status, rejections = get_json(c.url, "/rejections")
        assert [(r["round_id"], r["phase"], r["reason"]) for r in rejections] == [
            (1, "sum", "undecryptable"), (1, "sum", "undecryptable")]
        assert rejections[0]["time"] >= rejections[1]["time"] and rejections[0]["detail"]
        assert c.status()["reasons"] == {"undecryptable": 2}


def read_event(stream) -> tuple[str, object]:
    """The next named event of a text/event-stream: (name, its JSON data)."""
    name = data = None
    while True:
        line = stream.readline().decode()
        assert line, "the stream ended"
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "\n" and name:
            return name, data


def test_events_stream_every_feed_and_end_when_the_coordinator_stops():
    c = RunningCoordinator(fast_settings())
    try:
        stream = urllib.request.urlopen(c.url + "/events", timeout=10)
        assert stream.headers["Content-Type"] == "text/event-stream"
        first = dict(read_event(stream) for _ in range(4))
        assert first["status"]["round_id"] == 1 and first["status"]["phase"] == "sum"
        assert (first["rounds"], first["gateways"], first["rejections"]) == ([], [], [])
        post(c.url, b"\x00" * 300)  # a change: the rejections feed is sent again, with it
        name, data = read_event(stream)
        while name != "rejections":
            name, data = read_event(stream)
        assert [r["reason"] for r in data] == ["undecryptable"]
    finally:
        c.stop()  # an open stream must not hold the shutdown up
    assert stream.read() is not None  # the server ended the stream: no timeout
    stream.close()


def test_the_dashboard_is_served_with_its_files():
    with RunningCoordinator(fast_settings()) as c:
        with urllib.request.urlopen(c.url + "/", timeout=10) as r:
            page = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/html")
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        for path in ("dashboard/dashboard.js", "dashboard/dashboard.css", "dashboard/icon.svg"):
            assert f'"{path}"' in page
            assert get(c.url, "/" + path)[0] == 200
        assert get(c.url, "/dashboard/../server.py")[0] in (403, 404)


def test_past_rounds_come_back_after_a_restart(tmp_path):
    settings = fast_settings(**{"store.path": str(tmp_path / "c.db")})
    with RunningCoordinator(settings, evaluate=lambda w: {"norm": float(np.linalg.norm(w))}) as c:
        drive(make_fleet(c.url, 12), lambda: c.status()["latest_model"] is not None, timeout=30)
        before = get_json(c.url, "/rounds")[1]
    with RunningCoordinator(settings) as c:
        after = get_json(c.url, "/rounds")[1]
        assert c.status()["latest_model"]["evaluation"] == before[0]["evaluation"]
    assert [r["round_id"] for r in before] == [1] and after == before
