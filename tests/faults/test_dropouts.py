"""Rounds that lose participants, or a process for longer than a phase may last.

Sum participants that never send their global mask and update participants that never send
their update: up to the margins the round completes with the global model of exactly the
updates sent; one more and it fails after the phase's time.max with its reason, leaving no
global model, and the next round completes. A process fault that outlasts a phase's
time.max fails the round the same way.
"""

import pytest

from tests.faults.conftest import SUMS, UPDATES

TIME_MAX = 10  # seconds: how long a round waits for what it lacks before it fails
SHORT = {"pet.sum.time.max": TIME_MAX, "pet.update.time.max": TIME_MAX, "pet.sum2.time.max": TIME_MAX}
# the Sum phase waits for sum2.count.min + dropout_margin = 2 sum participants, so that one may
# drop out before Sum2
MARGIN = {"pet.sum.count.min": 1, "pet.sum2.count.min": 1, "pet.sum.dropout_margin": 1}


def test_dropouts_up_to_the_margins_and_one_beyond(site):
    s = site(**SHORT, **MARGIN)
    # within the margins: one of the two sum participants and every update participant but
    # update.count.min send nothing
    rnd = s.round_with(SUMS, UPDATES + 1)
    sums, updaters = rnd.sums[:SUMS], rnd.updaters[:UPDATES]
    s.release(rnd, "sum", sums)
    s.release(rnd, "update", updaters)
    s.release(rnd, "sum2", sums[:1])
    s.check_completed(rnd, sums, updaters, sum2=1)

    # one sum participant more than the margin: no global mask at all
    rnd = s.round_with(SUMS, UPDATES)
    s.release(rnd, "sum", rnd.sums[:SUMS])
    s.release(rnd, "update", rnd.updaters[:UPDATES])
    s.check_failed(rnd, "sum2", f"sum2 phase: 0 of the 1 messages needed arrived within time.max ({TIME_MAX} s)")

    # one update participant more than the margin
    rnd = s.round_with(SUMS, UPDATES)
    s.release(rnd, "sum", rnd.sums[:SUMS])
    s.release(rnd, "update", rnd.updaters[:UPDATES - 1])
    s.check_failed(rnd, "update", f"update phase: 2 of the 3 messages needed arrived within time.max ({TIME_MAX} s)")

    s.clean_round()  # and the next round completes, with none of the failed rounds' updates in it
    s.check_settled()
    s.check_metrics()


@pytest.mark.parametrize("kind, how", [("coordinator", "kill"), ("gateway", "stop")],
                         ids=["coordinator killed", "gateway stopped"])
def test_a_fault_longer_than_time_max_fails_the_round_and_the_next_completes(site, kind, how):
    s = site(**SHORT)
    rnd = s.round_with(SUMS, UPDATES)
    s.release(rnd, "sum", rnd.sums[:SUMS])
    s.release(rnd, "update", rnd.updaters[:1])
    s.wait_accepted(rnd, "update", 1)
    # the coordinator is down, or the gateway stopped, past time.max; the others send meanwhile
    s.fault(kind, how, TIME_MAX + 4, during=lambda: s.release(rnd, "update", rnd.updaters[1:UPDATES]))
    s.check_failed(rnd, "update", f"update phase: 1 of the 3 messages needed arrived within time.max ({TIME_MAX} s)")
    s.clean_round()
    s.check_settled()
