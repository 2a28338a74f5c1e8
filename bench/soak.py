"""Soak: many rounds of a whole site under random process faults, every model checked.

A site on this machine: mosquitto with persistence (device logins and ACL from
pet-provision), the coordinator (SQLite), the gateway, and a fleet of Unix-port
devices (pet-fleet's Device: micropython running the firmware in a folder of its
own). Until --rounds rounds have ended, faults come at random times (seeded, on
average every --fault-every seconds), each on a random target:

  kill   SIGKILL, started again 0.5 to 10 s later: a device (it resumes from its
         files), the gateway, the coordinator (it resumes the round from its store)
         or mosquitto (it restores its saved sessions and retained messages)
  stop   SIGSTOP for 5 to 25 s, then SIGCONT: a device, the gateway, the
         coordinator or mosquitto

Every device runs the app below: device k sends 1 at weight k, 0 at the other
device weights, and numbers drawn from the round seed and k after them. So each
global model says which devices it counts (weight k is 1/n for the n counted, 0
for the others) and whether each was counted once, with its model of this round.
A device's log says which updates it was told were accepted (every one of them
must be in the model) and which rounds it started more than once (their
parameters came back after another round's). Failed rounds and their reasons
come from the coordinator (GET /rounds, and its log for rounds that failed
before a restart); a round for which sortition drew no sum participant, or
fewer update participants than it needs, is said to have failed for that.

Prints a line per ended round and per fault, then a table; --json FILE writes
the same as JSON.

Usage: python bench/soak.py [--rounds 50] [--devices 20] [--seed 1] [--fault-every 20]
                            [--broker-autosave 60] [--out bench-out/soak] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pwd
import random
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pet.crypto import SigningKeyPair  # noqa: E402
from pet.errors import DecodeError  # noqa: E402
from pet.sortition import Task, select_task  # noqa: E402
from pet.wire import RoundParameters  # noqa: E402
from tools.demo import accepts, clean_env, free_port, http_get, mosquitto_exe, provision, sum_probability  # noqa: E402
from tools.fleet import (FIRMWARE, MICROPYTHON, Child, Device, Stopped, check_tools, compile_app,  # noqa: E402
                         leftover_children, prepare, provisioned, stop_on_signals)

TAIL = 16  # weights after the device weights, drawn from the round seed and the device
HEAP = "128k"
POLL = 0.25  # seconds between two looks at the coordinator
PATIENCE = 600  # seconds without an ended round before the soak gives up
UPDATES = 3  # pet.update.count.min

APP = '''"""Soak app: device k sends 1 at weight k and seed-drawn numbers after the device weights."""
import json
from array import array

with open("soak.json") as _f:
    _S = json.load(_f)
N, K, LENGTH = _S["devices"], _S["device"], _S["length"]
MODEL = array("f", range(LENGTH))


def train(params, w=MODEL):
    if params.model_length != LENGTH:
        return None
    s = params.seed[0] * 256 + params.seed[1]
    for i in range(LENGTH):
        w[i] = 1.0 if i == K else 0.0 if i < N else ((s + 7 * K + 13 * i) % 200 - 100) / 200
    return w, 1.0


def on_model(round_id, weights):
    print("global model of round %d" % round_id)
'''


def device_model(seed: bytes, k: int, devices: int) -> np.ndarray:
    """What APP's train() gives device k in the round with this seed (float32, as sent)."""
    s = seed[0] * 256 + seed[1]
    w = [1.0 if i == k else 0.0 if i < devices else ((s + 7 * k + 13 * i) % 200 - 100) / 200
         for i in range(devices + TAIL)]
    return np.array(w, dtype=np.float32)


def check_model(weights: np.ndarray, seed: bytes, devices: int, updates: int) -> dict:
    """Which devices a global model counts, and whether it is exactly their average."""
    head = weights[:devices]
    counted = [k for k in range(devices) if head[k] > 0.5 / devices / 2]
    if not counted:
        return {"counted": [], "ok": False, "why": "no device is counted"}
    share = 1.0 / len(counted)
    want = np.mean([device_model(seed, k, devices) for k in counted], axis=0, dtype=np.float64)
    problems = []
    if len(counted) != updates:
        problems.append(f"{len(counted)} devices in the model, {updates} updates in the round")
    if not np.allclose(head, want[:devices], atol=1e-4):
        problems.append("device weights are not 1/n each (an update counted twice, or a stray one)")
    if not np.allclose(weights[devices:], want[devices:], atol=1e-4):
        problems.append("the seed-drawn weights are not the average of this round's models")
    return {"counted": counted, "ok": not problems, "why": "; ".join(problems)}


# -- the site -------------------------------------------------------------------------------------


class Site:
    def __init__(self, out: Path, devices: int, rounds: int, autosave: int):
        self.out, self.fleet_dir, self.run_dir, self.logs = out, out / "fleet", out / "run", out / "logs"
        self.devices, self.length = devices, devices + TAIL
        self.broker_port, self.api_port, self.gw_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mosq = self.fleet_dir / "mosquitto"
        conf = self.run_dir / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings false", "allow_anonymous false",
            f"password_file {mosq / 'passwd'}", f"acl_file {mosq / 'acl'}",
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "persistence true", f"persistence_location {self.run_dir}/", f"autosave_interval {autosave}",
            "max_queued_messages 100000", f"listener {self.broker_port} 127.0.0.1",
            "log_dest stdout", "log_type error", "log_type warning", "log_type notice"]) + "\n")
        self.broker = Child("mosquitto", [mosquitto_exe(), "-c", str(conf)], self.logs / "mosquitto.log")
        # phase windows as pet-demo's for this fleet, with time.max long enough for most faults
        toml = self.run_dir / "coordinator.toml"
        toml.write_text("\n".join([
            "[api]", f'bind = "127.0.0.1:{self.api_port}"',
            "[pet.sum]", f"prob = {sum_probability(devices)}", "time = { min = 3.0, max = 40.0 }",
            "[pet.update]", "prob = 1.0", f"count = {{ min = {UPDATES} }}",
            f"time = {{ min = {3.0 + 0.15 * devices:.1f}, max = 60.0 }}",
            "[pet.sum2]", "time = { min = 3.0, max = 60.0 }",
            "[model]", f"length = {self.length}",
            "[store]", f'data_dir = "{self.run_dir / "coordinator"}"',
            "[history]", f"keep = {rounds}"]) + "\n")
        self.coordinator = Child("coordinator", [sys.executable, "-m", "coordinator", "--config", str(toml)],
                                 self.logs / "coordinator.log", cwd=ROOT, env=clean_env())
        provision(self.fleet_dir, devices)
        login = json.loads((self.fleet_dir / "gateways" / "site1.json").read_text())
        gw = self.run_dir / "gateway.toml"
        gw.write_text("\n".join([
            "[gateway]", 'id = "site1"',
            "[mqtt]", 'host = "127.0.0.1"', f"port = {self.broker_port}", f'username = "{login["username"]}"',
            "keepalive = 10",
            "[coordinator]", f'url = "{self.url}"', "poll_interval = 0.1",
            "[queue]", f'path = "{self.run_dir / "gateway.db"}"',
            "[http]", f'bind = "127.0.0.1:{self.gw_port}"']) + "\n")
        self.gateway = Child("gateway", [sys.executable, "-m", "gateway", "--config", str(gw)],
                             self.logs / "gateway.log", cwd=ROOT,
                             env=clean_env() | {"PET__MQTT__PASSWORD": login["password"]})
        check_tools()
        app = self.run_dir / "soak_app.py"
        app.write_text(APP)
        compiled = compile_app(app)
        self.fleet: list[Device] = []
        for k, (name, folder) in enumerate(provisioned(self.fleet_dir)[:devices]):
            settings = json.dumps({"devices": devices, "device": k, "length": self.length}).encode()
            prepare(folder, {"app.mpy": compiled, "soak.json": settings}, ("127.0.0.1", self.broker_port))
            self.fleet.append(Device(name, folder, HEAP, MICROPYTHON, FIRMWARE))

    def start(self) -> None:
        self.broker.start()
        wait(lambda: accepts(self.broker_port), "mosquitto", self.broker)
        self.coordinator.start()
        wait(lambda: http_get(self.url + "/health", 1) is not None, "the coordinator", self.coordinator)
        self.gateway.start()
        wait(lambda: http_get(f"http://127.0.0.1:{self.gw_port}/health", 1) is not None, "the gateway", self.gateway)
        for d in self.fleet:
            d.start()

    def services(self) -> dict[str, Child]:
        return {"broker": self.broker, "coordinator": self.coordinator, "gateway": self.gateway}

    def get(self, route: str):
        raw = http_get(self.url + route, 2)
        return raw if raw is None or not route.startswith(("/status", "/rounds")) else json.loads(raw)

    def stop(self) -> None:
        for child in [*self.fleet, self.gateway, self.coordinator, self.broker]:
            child.signal_group(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            child.stop(timeout=5)


def wait(ready, what: str, child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.running or time.monotonic() > deadline:
            raise SystemExit(f"soak: {what} did not start: {child.tail(5)}")
        time.sleep(0.05)


# -- faults ---------------------------------------------------------------------------------------


class Faults:
    """Random faults at random times; what is down or stopped comes back by itself later."""

    KINDS = [(how, target) for how in ("kill", "stop") for target in ("device", "gateway", "coordinator", "broker")]

    def __init__(self, site: Site, every: float, seed: int, say):
        self.site, self.every, self.say = site, every, say
        self.random = random.Random(seed)
        self.next = time.monotonic() + self._gap() if every > 0 else None
        self.pending: list[tuple[float, str, Child]] = []  # (due, "start" | "cont", child)
        self.injected: collections.Counter[str] = collections.Counter()
        self.log: list[dict] = []

    def _gap(self) -> float:
        return self.random.expovariate(1 / self.every)

    def busy(self, child: Child) -> bool:
        return any(c is child for _, _, c in self.pending)

    def tick(self, where: tuple[int | None, str | None]) -> None:
        """Bring back what is due; inject the next fault when it is time. where: (round, phase)."""
        now = time.monotonic()
        for item in [p for p in self.pending if p[0] <= now]:
            self.pending.remove(item)
            _, action, child = item
            if action == "start":
                child.start()
            else:
                child.signal_group(signal.SIGCONT)
        if self.next is None or now < self.next:
            return
        self.next = now + self._gap()
        how, target = self.random.choice(self.KINDS)
        if target == "device":
            free = [d for d in self.site.fleet if not self.busy(d)]
            child = self.random.choice(free) if free else None
        else:
            child = self.site.services()[target]
            child = None if self.busy(child) else child
        if child is None:
            return
        if how == "kill":
            seconds = self.random.uniform(0.5, 10)
            child.kill()
            self.pending.append((now + seconds, "start", child))
        else:
            seconds = self.random.uniform(5, 25)
            child.signal_group(signal.SIGSTOP)
            self.pending.append((now + seconds, "cont", child))
        name = child.name if target == "device" else target
        self.injected[f"{how} {target}"] += 1
        self.log.append({"fault": f"{how} {target}", "target": name, "seconds": round(seconds, 1),
                         "round": where[0], "phase": where[1]})
        self.say(f"  fault: {how} {name} ({'back' if how == 'kill' else 'continued'} after {seconds:.1f} s), "
                 + (f"round {where[0]} {where[1]}" if where[0] else "while the coordinator does not answer"))

    def settle(self) -> None:
        """Everything back up, now."""
        self.next = None
        for _, action, child in self.pending:
            child.start() if action == "start" else child.signal_group(signal.SIGCONT)
        self.pending.clear()


# -- following the rounds -------------------------------------------------------------------------


def device_logs(site: Site) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    """From the devices' logs, by seed prefix (8 hex digits): the devices told that their whole
    update was accepted (or `duplicate`: already accepted) in that round, and the devices that
    started that round more than once (its parameters came back after another round's)."""
    told: dict[str, set[int]] = collections.defaultdict(set)
    again: dict[str, set[int]] = collections.defaultdict(set)
    for k, d in enumerate(site.fleet):
        seed, started = None, set()
        for line in d.log.read_text(errors="replace").splitlines():
            m = re.match(r"upet: round ([0-9a-f]{8}) task", line)
            if m:
                seed = m.group(1)
                if seed in started:
                    again[seed].add(k)
                started.add(seed)
            m = re.match(r"upet: update chunk (\d+)/(\d+) (accepted|duplicate)", line)
            if m and seed and m.group(1) == m.group(2):
                told[seed].add(k)
    return told, again


def failures_in_log(site: Site) -> dict[int, str]:
    """round id -> failure reason, from the coordinator's log (which outlives its restarts)."""
    found = {}
    for line in site.coordinator.log.read_text(errors="replace").splitlines():
        m = re.search(r"round (\d+) failed: (.*)$", line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def say(text: str) -> None:
    print(text, flush=True)


def soak(args) -> dict:
    out: Path = args.out
    for name in ("fleet", "run", "logs"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    site = Site(out, args.devices, args.rounds, args.broker_autosave)
    faults = Faults(site, args.fault_every, args.seed, say)
    params: dict[int, RoundParameters] = {}  # round id -> its parameters
    rounds: dict[int, dict] = {}      # round id -> how it ended (a GET /rounds entry)
    models: dict[int, dict] = {}      # round id -> model check
    keys = [SigningKeyPair.from_secret_key((d.folder / "key").read_bytes()) for d in site.fleet]
    started = time.monotonic()
    last_end, status = started, {}
    say(f"soak: {args.devices} devices, {args.rounds} rounds, faults every {args.fault_every:g} s on average "
        f"(seed {args.seed}); output in {out}/")
    try:
        site.start()
        while len(rounds) < args.rounds:
            faults.tick((status.get("round_id"), status.get("phase")))
            status = site.get("/status") or {}
            round_id = status.get("round_id")
            if round_id and round_id not in params:
                p = round_params(site)
                if p and (site.get("/status") or {}).get("round_id") == round_id:
                    params[round_id] = p
            latest = status.get("latest_model") or {}
            if latest and latest["round_id"] not in models and latest["round_id"] in params:
                raw = site.get("/model?format=f32")
                if raw and int.from_bytes(raw[:8], "little") == latest["round_id"]:
                    r = latest["round_id"]
                    weights = np.frombuffer(raw[12:], dtype="<f4")
                    models[r] = check_model(weights, params[r].seed, args.devices, latest["updates"])
            if round_id and round_id - 1 > len(rounds):  # rounds before the current one have ended
                entries = {e["round_id"]: e for e in site.get("/rounds") or []}
                logged = failures_in_log(site)
                for r in range(len(rounds) + 1, min(round_id, args.rounds + 1)):
                    rounds[r] = entries.get(r) or (  # a round that failed before a restart: in the log
                        {"round_id": r, "outcome": "failed", "phase": None, "failure": logged[r]} if r in logged
                        else {"round_id": r, "outcome": "unknown"})
                    if r in params:
                        rounds[r]["drawn"] = drawn(keys, params[r])
                    say(line_of(rounds[r], models.get(r), time.monotonic() - started))
                last_end = time.monotonic()
            if time.monotonic() - last_end > PATIENCE:
                say(f"soak: no round ended for {PATIENCE} s; giving up")
                break
            time.sleep(POLL)
        faults.settle()
    finally:
        faults.settle()
        site.stop()
        for pid in leftover_children():
            os.kill(pid, signal.SIGKILL)
    return report(args, site, faults, params, rounds, models, time.monotonic() - started)


def round_params(site: Site) -> RoundParameters | None:
    raw = site.get("/params")
    try:
        return RoundParameters.from_bytes(raw) if raw else None
    except DecodeError:
        return None


def drawn(keys: list[SigningKeyPair], params: RoundParameters) -> dict[str, int]:
    """How many devices sortition made sum and update participants of a round."""
    tasks = collections.Counter(select_task(k, params.seed, params.sum, params.update).task for k in keys)
    return {"sum": tasks[Task.SUM], "update": tasks[Task.UPDATE]}


def line_of(entry: dict, model: dict | None, elapsed: float) -> str:
    head = f"[{elapsed:6.0f} s] round {entry['round_id']:>3}"
    if entry["outcome"] == "unknown":
        return f"{head}: outcome unknown"
    if entry["outcome"] != "completed":
        d = entry.get("drawn")
        return (f"{head} failed in {entry.get('phase') or 'a phase'}: {entry.get('failure')}"
                + (f" (sortition drew {d['sum']} sum, {d['update']} update participants)" if d else ""))
    check = "model not seen" if model is None else \
        f"model counts {len(model['counted'])} devices, " + ("exact" if model["ok"] else "WRONG: " + model["why"])
    return f"{head} completed: {entry['sums']} sum, {entry['updates']} update, {entry['sum2']} sum2; {check}"


def why_failed(entry: dict) -> str:
    drawn = entry.get("drawn") or {}
    if drawn.get("sum") == 0:
        return "sortition drew no sum participant"
    if drawn.get("update", UPDATES) < UPDATES:
        return f"sortition drew {drawn['update']} update participants, fewer than {UPDATES}"
    return entry["failure"]


def report(args, site, faults, params, outcomes, models, elapsed) -> dict:
    completed = [r for r, e in outcomes.items() if e["outcome"] == "completed"]
    failed = {r: e for r, e in outcomes.items() if e["outcome"] == "failed"}
    reasons = collections.Counter(why_failed(e) for e in failed.values())
    for r, e in failed.items():
        e["faults"] = [f"{f['fault']} ({f['target']}) in {f['phase']}" for f in faults.log if f["round"] == r]
    told, again = device_logs(site)
    for r, e in outcomes.items():
        if r in params:
            e["seed"] = params[r].seed[:4].hex()
            e["devices_that_started_it_again"] = len(again.get(e["seed"], ()))
    lost, unanswered, unchecked, wrong = [], 0, [], []
    for r in completed:
        check = models.get(r)
        if check is None:
            unchecked.append(r)
            continue
        if not check["ok"]:
            wrong.append(r)
        told_here = told.get(params[r].seed[:4].hex(), set())
        lost += [(r, k) for k in sorted(told_here - set(check["counted"]))]
        unanswered += len(set(check["counted"]) - told_here)
    result = {
        "devices": args.devices, "rounds_wanted": args.rounds, "seed": args.seed, "fault_every": args.fault_every,
        "broker_autosave": args.broker_autosave, "seconds": round(elapsed),
        "rounds": len(outcomes), "completed": len(completed), "failed": len(failed),
        "unknown": len(outcomes) - len(completed) - len(failed),
        "failure_reasons": dict(reasons), "faults": dict(faults.injected), "fault_log": faults.log,
        "models_checked": len(completed) - len(unchecked), "models_exact": len(completed) - len(unchecked) - len(wrong),
        "models_wrong": wrong, "models_not_seen": unchecked,
        "accepted_updates_lost": [{"round": r, "device": k} for r, k in lost],
        "counted_updates_whose_answer_was_lost": unanswered,
        "updates_counted": sum(len(models[r]["counted"]) for r in completed if r in models),
        "sum_participants_without_a_global_mask": sum(outcomes[r]["sums"] - outcomes[r]["sum2"] for r in completed),
        "device_rounds_started_again": sum(len(v) for v in again.values()),
        "round_log": [outcomes[r] | ({"model": models[r]} if r in models else {}) for r in outcomes],
    }
    print_table(result)
    return result


def print_table(r: dict) -> None:
    rows = [("rounds ended", r["rounds"]), ("  completed", r["completed"]), ("  failed", r["failed"]),
            ("  outcome unknown", r["unknown"])]
    rows += [(f"    {why}", n) for why, n in sorted(r["failure_reasons"].items(), key=lambda x: -x[1])]
    rows += [("faults injected", sum(r["faults"].values()))]
    rows += [(f"  {kind}", n) for kind, n in sorted(r["faults"].items())]
    rows += [("completed rounds' models checked", r["models_checked"]),
             ("  exactly the average of the devices they count", r["models_exact"]),
             ("  wrong", len(r["models_wrong"])),
             ("  not seen (replaced before the soak read it)", len(r["models_not_seen"])),
             ("updates counted in checked models", r["updates_counted"]),
             ("accepted updates missing from the model", len(r["accepted_updates_lost"])),
             ("counted updates whose device never heard", r["counted_updates_whose_answer_was_lost"]),
             ("sum participants without a global mask (completed rounds)",
              r["sum_participants_without_a_global_mask"]),
             ("rounds a device started again (their parameters came back)", r["device_rounds_started_again"]),
             ("seconds", r["seconds"])]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value:>6}")
    failed = [e for e in r["round_log"] if e["outcome"] == "failed"]
    if failed:
        print("\nfailed rounds, and the faults injected while they ran:")
    for e in failed:
        print(f"  round {e['round_id']}: {why_failed(e)}; faults: {', '.join(e['faults']) or 'none'}; "
              f"{e.get('devices_that_started_it_again', 0)} devices started it again")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--rounds", type=int, default=50, help="rounds to run, completed or failed (default 50)")
    p.add_argument("--devices", type=int, default=20, help="Unix-port devices (default 20)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    p.add_argument("--fault-every", type=float, default=20.0, metavar="S",
                   help="mean seconds between two faults; 0: none (default 20)")
    p.add_argument("--broker-autosave", type=int, default=60, metavar="S",
                   help="mosquitto's autosave_interval, as in deploy/mosquitto/mosquitto.conf (default 60)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "soak", help="devices, logs, state")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    if args.devices < 4 or args.rounds < 1:
        p.error("--devices must be at least 4 and --rounds at least 1")
    stop_on_signals()
    try:
        result = soak(args)
    except Stopped as e:
        print(f"soak: {e}: stopped", file=sys.stderr)
        return 130
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    bad = result["models_wrong"] or result["accepted_updates_lost"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
