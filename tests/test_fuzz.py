"""Fuzzing in the test suite: bench/fuzz.py's mutations, driven by hypothesis, against the
parsers and a real coordinator's round; and a small run of bench/fuzz.py itself.

`python bench/fuzz.py` runs 100,000 cases; here a few thousand, with fixed seeds and
derandomized hypothesis, so that every run tries the same cases.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import fuzz
from pet.verdict import REASONS, Verdict
from pet.wire import Tag

EXAMPLES = settings(max_examples=300, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture
def fuzz_round(tmp_path):
    fr = fuzz.FuzzRound(str(tmp_path / "coordinator.db"))
    yield fr
    fr.stop()


def test_mutated_messages_get_verdicts_and_leave_the_round_as_it_was(fuzz_round):
    """Every phase: mutated messages of the whole round, then the last honest message; the
    global model is exactly the honest participants'."""
    fr = fuzz_round
    seeds = fr.seeds()
    seen: set[str] = set()

    @EXAMPLES
    @given(st.randoms(use_true_random=False))
    def one_case(rng):
        layer, body = fuzz.CaseMaker(rng, seeds, fr.pk).case()
        before = fr.snapshot()
        verdict = fr.call(fr.c.handle(body), timeout=30)
        assert isinstance(verdict, Verdict)
        assert verdict.accepted or verdict.reason in REASONS
        assert fr.snapshot() == before, f"a {layer} case changed the round: {body[:64].hex()}"
        seen.add(verdict.reason or "accepted")

    for phase, tag in (("sum", Tag.SUM), ("update", Tag.UPDATE), ("sum2", Tag.SUM2)):
        fr.wait_phase(tag)
        if phase != "sum":
            time.sleep(fuzz.MAX_AGE + 0.2)  # the last phase's chunks expire
        fr.send_honest(phase)
        one_case()
        fr.send_honest(phase, gate=True)
    report = fuzz.Report()
    fr.verify(report)
    assert report.checks and all(report.checks.values()), report.checks
    # the cases reached past decoding and the signature check
    assert {"undecryptable", "malformed", "wrong_phase", "bad_signature", "duplicate"} <= seen


def test_parsers_raise_only_their_own_errors(fuzz_round):
    fr = fuzz_round
    targets = fuzz.decoder_targets(fr, fr.seeds())

    @EXAMPLES
    @given(st.randoms(use_true_random=False), st.sampled_from(sorted(targets)))
    def one_case(rng, name):
        parse, allowed, valid, fields, endian = targets[name]
        data = fuzz.Mutator(rng, valid).mutate(rng.choice(valid), fields, endian)
        try:
            parse(data)
        except allowed:
            pass
    one_case()


def test_a_small_fuzz_run(tmp_path):
    """bench/fuzz.py as `make bench` runs it, with 3,000 cases instead of 100,000."""
    report = fuzz.run(3000, seed=2, store_dir=str(tmp_path))
    assert report.total == 3000
    assert (report.crashes, report.hangs, report.changed, report.http_errors) == ([], [], [], [])
    assert report.checks and all(report.checks.values()), report.checks
    targets = {name.split("/")[0] for name in report.cases}
    assert targets == {"decoder", "pipeline", "http"}
    assert report.verdicts["accepted"] >= 1          # fresh update participants' cases that passed
    assert report.verdicts["unknown_sum_participant"] + report.verdicts["seed_dict_mismatch"] >= 1
