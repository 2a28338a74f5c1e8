"""SIGKILL and SIGSTOP of the coordinator, the gateway and mosquitto in each phase of a round.

Each test runs one site (tests/faults/conftest.py) through one faulty round per phase and
then a clean one. In the faulty round the first message of the phase is accepted, then the
process is killed and started again (`kill`), or stopped for longer than the keepalives and
continued (`stop`); the other participants of the phase send while it is away. Every round
must complete with exactly the participants released, and its global model must be the
weighted average of exactly the updates handed over: nothing lost, nothing counted twice.

Already covered elsewhere, so not repeated here: SIGKILL of the coordinator during Update with
HTTP participants (tests/test_coordinator_kill.py, SQLite and Redis), SIGKILL of the gateway
during Update and a 30 s coordinator outage during Update (tests/test_gateway.py).
"""

import pytest

from tests.faults.conftest import SUMS, UPDATES
from tests.test_gateway import wait_for

PHASES = ("sum", "update", "sum2")
CASES = [  # (process, store, how, phases)
    ("coordinator", "sqlite", "kill", ("sum", "sum2")),
    ("coordinator", "redis", "kill", ("sum", "sum2")),
    ("gateway", "sqlite", "kill", ("sum", "sum2")),
    ("broker", "sqlite", "kill", PHASES),
    ("coordinator", "sqlite", "stop", PHASES),
    ("gateway", "sqlite", "stop", PHASES),
    ("broker", "sqlite", "stop", PHASES),
]


def faulty_round(site, phase: str, kind: str, how: str) -> None:
    rnd = site.round_with(SUMS, UPDATES)
    sums, updaters = rnd.sums[:SUMS], rnd.updaters[:UPDATES]
    group = {"sum": sums, "update": updaters, "sum2": sums}
    for name, members in group.items():
        site.release(rnd, name, members[:1] if name == phase else members)
    site.wait_accepted(rnd, phase, 1)
    resumed = f"resuming round {rnd.round_id} in the {phase} phase: 1 accepted"
    connections, errors = site.gateway_connections(), site.gateway_errors()
    # the others send while the process is away
    site.fault(kind, how, during=lambda: site.release(rnd, phase, group[phase][1:]))
    # the fault bit: the coordinator resumed the round; it kept the gateway waiting; or the
    # gateway lost the broker and connected again
    if (kind, how) == ("coordinator", "kill"):
        assert resumed in site.coordinator.log.read_text()
    elif kind == "coordinator":
        assert site.gateway_errors() > errors
    else:
        wait_for(lambda: site.gateway_connections() > connections, 60, "the gateway to connect again")
    site.check_completed(rnd, sums, updaters)


@pytest.mark.parametrize("kind, store, how, phases", CASES,
                         ids=[f"{how}-{kind}-{store}" if kind == "coordinator" else f"{how}-{kind}"
                              for kind, store, how, _ in CASES])
def test_a_round_survives_a_process_fault_in_each_phase(site, kind, store, how, phases):
    s = site(store)
    for phase in phases:
        faulty_round(s, phase, kind, how)
    s.clean_round()  # the next round, without a fault
    s.check_settled()
    if not (kind == "coordinator" and how == "kill"):
        s.check_metrics()
