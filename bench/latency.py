"""End-to-end round latency with N Unix-port devices through a real mosquitto, gateway and
coordinator, against the slowest device's own compute time plus the minimum phase times.

For each fleet size N (--devices) this starts mosquitto, the coordinator and the gateway,
each a process of its own, and N devices (pet-fleet's simulated boards: micropython
running firmware/main.py with the synthetic app, --weights weights, in a heap of
--heap), all on this machine. Every device takes part in every round: the round keys
are derived from a label (as in the tests), so every round's seed, and so each key's
sortition, is known beforehand, and the device keys are chosen so that each round has
exactly K sum participants (--sum-share of N, at least 1) and N - K update
participants. The coordinator's counts are exactly these (min = max), so a phase ends
as soon as its last message is in and --phase-min has passed.

Round 1 is a warm-up (the devices boot while it runs); rounds 2 .. --rounds + 1 are
measured. Per round:

  ours       the coordinator's round time: from the round's start to its global
             model (GET /rounds: started, duration), phase by phase (GET /status)
  reference  the slowest device's own CPU time over the round (/proc/PID/schedstat,
             sampled every --poll seconds and interpolated at the round's start and
             end) + the minimum phase times (sum, update, sum2 time.min)
  ratio      ours / reference (lower is better; 1 would be a round that waits for
             nothing but the slowest device's work and the phase minimums)

The machine's cores are shared by all N devices, the broker, the gateway, the
coordinator and this script. The report gives the CPU seconds the devices, broker,
gateway and coordinator used over each round divided by the cores (the shortest the
round could be on this machine), the same against the round time (site CPU), and how
busy the machine's cores were in all, other work on the machine included: how far
contention, not the protocol, sets the round time.

Usage: python bench/latency.py [--devices 10,50,100] [--rounds 3] [--weights 1000]
       [--heap 192k] [--sum-share 0.1] [--phase-min 0.25] [--timeout 900] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pet.crypto import EncryptKeyPair, SigningKeyPair, next_round_seed, sha256  # noqa: E402
from pet.sortition import Task, select_task  # noqa: E402
from tools.demo import accepts, free_port, http_get  # noqa: E402

KEY_LABEL = b"bench-latency"
MASK_CONFIG = "W32/F32/b2/m10"
CORES = os.cpu_count() or 1


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the coordinator with known round keys --------------------------------------------------------


def round_keys(round_id: int) -> EncryptKeyPair:
    """The coordinator's key pair of a round, derived from the label and the round number."""
    return EncryptKeyPair.from_seed(sha256(KEY_LABEL + round_id.to_bytes(8, "little")))


def serve_coordinator(config: str) -> int:
    """`latency.py --serve-coordinator CONFIG`: the coordinator app of pet-coordinator, with
    round_keys() as its key generator, until SIGTERM."""
    from aiohttp import web

    from coordinator.server import build
    from coordinator.settings import load_settings
    from pet.config import configure_logging

    settings = load_settings(config, {})
    configure_logging(settings.log.level)
    Path(settings.store.path).parent.mkdir(parents=True, exist_ok=True)
    app = build(settings, keygen=round_keys)
    web.run_app(app, host=settings.api.host, port=settings.api.port, print=None, access_log=None,
                handle_signals=True)
    return 0


def round_seeds(rounds: int, sum_prob: float, update_prob: float) -> list[bytes]:
    """The seeds of rounds 1..rounds (docs/protocol.md section 4.1)."""
    seed, out = bytes(32), []
    for r in range(1, rounds + 1):
        seed = next_round_seed(seed, round_keys(r).secret_key, sum_prob, update_prob)
        out.append(seed)
    return out


def choose_keys(devices: int, sums: int, seeds: list[bytes], sum_prob: float) -> tuple[list[SigningKeyPair],
                                                                                       list[list[Task]]]:
    """Device keys with exactly `sums` sum participants in every round of `seeds`, the others
    update participants (update probability 1): for each round, `sums` keys that sum in that
    round only; the rest update in every round. Also each key's task per round."""
    rounds = len(seeds)
    if sums * rounds > devices:
        raise SystemExit(f"latency.py: {devices} devices cannot give {sums} different sum participants "
                         f"in each of {rounds} rounds; use fewer --rounds or a smaller --sum-share")
    per_round: list[list[SigningKeyPair]] = [[] for _ in seeds]
    updaters: list[SigningKeyPair] = []
    i = 0
    while min(len(k) for k in per_round) < sums or len(updaters) < devices - sums * rounds:
        keys = SigningKeyPair.from_seed(sha256(b"bench-latency-device" + i.to_bytes(8, "little")))
        i += 1
        summing = [r for r, s in enumerate(seeds) if select_task(keys, s, sum_prob, 1.0).task is Task.SUM]
        if not summing and len(updaters) < devices - sums * rounds:
            updaters.append(keys)
        elif len(summing) == 1 and len(per_round[summing[0]]) < sums:
            per_round[summing[0]].append(keys)
    chosen = [k for group in per_round for k in group] + updaters
    tasks = [[select_task(k, s, sum_prob, 1.0).task for s in seeds] for k in chosen]
    return chosen, tasks


# -- the site: broker, coordinator, gateway ---------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """CPU time a process has run, in seconds (schedstat: nanoseconds; stat: clock ticks)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu() -> dict[str, float]:
    """Seconds all cores have been busy and in all since boot (/proc/stat), summed over cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return {"machine_busy": (sum(fields) - idle) / tick, "machine_all": sum(fields) / tick}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its threads (schedstat of every task)."""
    total = 0.0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            pass
    return total


class Site:
    """mosquitto, the coordinator and the gateway for one fleet size, in `run`."""

    def __init__(self, run: Path, devices: int, sums: int, weights: int, sum_prob: float, phase_min: float,
                 phase_max: float, rounds: int):
        from tools.fleet import Child
        self.Child = Child
        self.run = run
        self.broker_port, self.api_port, self.gw_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.devices, self.sums, self.weights = devices, sums, weights
        self.sum_prob, self.phase_min, self.phase_max, self.rounds = sum_prob, phase_min, phase_max, rounds
        self.children = []

    def start(self) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        if mosquitto is None:
            raise SystemExit("latency.py: mosquitto is not installed (tools/system-deps installs it)")
        conf = self.run / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 100000\nlog_dest stdout\nlog_type error\nlog_type warning\n")
        self._start("mosquitto", [mosquitto, "-c", str(conf)], lambda: accepts(self.broker_port))
        conf = self.run / "coordinator.toml"
        conf.write_text(self.coordinator_toml())
        self._start("coordinator", [sys.executable, str(Path(__file__).resolve()), "--serve-coordinator", str(conf)],
                    lambda: http_get(self.url + "/health", 1) is not None)
        conf = self.run / "gateway.toml"
        conf.write_text("\n".join([
            "[gateway]", 'id = "bench"',
            "[mqtt]", 'host = "127.0.0.1"', f"port = {self.broker_port}",
            "[coordinator]", f'url = "{self.url}"', "poll_interval = 0.1",
            "[queue]", f'path = "{self.run / "gateway.db"}"',
            "[http]", f'bind = "127.0.0.1:{self.gw_port}"']) + "\n")
        self._start("gateway", [sys.executable, "-m", "gateway", "--config", str(conf)],
                    lambda: http_get(f"http://127.0.0.1:{self.gw_port}/health", 1) is not None)

    def coordinator_toml(self) -> str:
        n, k, t = self.devices, self.sums, f"time = {{ min = {self.phase_min}, max = {self.phase_max} }}"
        return "\n".join([
            "[api]", f'bind = "127.0.0.1:{self.api_port}"',
            "[pet.sum]", f"prob = {self.sum_prob!r}", f"count = {{ min = {k}, max = {k} }}", t,
            "[pet.update]", "prob = 1.0", f"count = {{ min = {n - k}, max = {n - k} }}", t,
            "[pet.sum2]", f"count = {{ min = {k}, max = {k} }}", t,
            "[mask]", f'config = "{MASK_CONFIG}"', "[model]", f"length = {self.weights}",
            "[store]", 'kind = "sqlite"', f'data_dir = "{self.run / "coordinator"}"',
            "[history]", f"keep = {self.rounds + 2}", "[log]", 'level = "warning"']) + "\n"

    def _start(self, name: str, argv: list[str], ready, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
        env["PYTHONPATH"] = str(ROOT)
        child = self.Child(name, argv, self.run / f"{name}.log", cwd=ROOT, env=env).start()
        self.children.append(child)
        deadline = time.monotonic() + timeout
        while not ready():
            if not child.running or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {child.tail(5)} (log {child.log})")
            time.sleep(0.05)

    def check(self) -> None:
        for child in self.children:
            if not child.running:
                raise RuntimeError(f"{child.name} stopped: {child.tail(5)} (log {child.log})")

    def get_json(self, route: str):
        raw = http_get(self.url + route)
        return json.loads(raw) if raw else None

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children if c.running}

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


# -- the devices --------------------------------------------------------------------------------------


def make_devices(run: Path, keys: list[SigningKeyPair], weights: int, heap: str, broker: tuple[str, int]):
    """One folder per device (key, config.json, main.py, board config, the synthetic app) and
    its pet-fleet Device."""
    from tools.fleet import SYNTHETIC_APP, Device, Workload, compile_app, prepare
    from tools.provision import device_config
    app = compile_app(SYNTHETIC_APP)
    workload = Workload("synthetic", weights)
    devices = []
    for i, k in enumerate(keys):
        name = f"dev{i + 1:03d}"
        folder = run / "devices" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "key").write_bytes(k.secret_key)
        config = device_config(name, k.public_key.hex(), "", broker[0], broker[1], False, "pet")
        (folder / "config.json").write_text(json.dumps(config))
        prepare(folder, {"app.mpy": app, **workload.device_data(i, len(keys))})
        devices.append(Device(name, folder, heap))
    return devices


# -- one fleet size -------------------------------------------------------------------------------------


def interpolate(samples: list[tuple[float, dict]], when: float, who: str) -> float | None:
    """The CPU seconds of `who` at time `when`, between the two samples around it."""
    before = [(t, c[who]) for t, c in samples if t <= when and c.get(who) is not None]
    after = [(t, c[who]) for t, c in samples if t >= when and c.get(who) is not None]
    if not before or not after:
        return None
    (t0, c0), (t1, c1) = before[-1], after[0]
    return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)


def snapshot(devices, site: Site) -> tuple[float, dict]:
    """(now, CPU seconds so far of every device, service and of the machine)."""
    now = time.time()
    cpu = {d.name: cpu_seconds(d.pid) for d in devices if d.running}
    cpu.update({name: tree_cpu(pid) for name, pid in site.pids().items()})
    return now, cpu | machine_cpu()


def run_fleet(n: int, args, run: Path) -> dict:
    """Start everything for n devices, follow the rounds, stop everything: the figures."""
    sums = min(max(1, round(n * args.sum_share)), n - 3)
    sum_prob = sums / n
    total_rounds = args.rounds + 1
    seeds = round_seeds(total_rounds, sum_prob, 1.0)
    keys, tasks = choose_keys(n, sums, seeds, sum_prob)
    site = Site(run, n, sums, args.weights, sum_prob, args.phase_min, args.phase_max, total_rounds)
    progress(f"{n} devices: {sums} sum and {n - sums} update participants per round, {args.weights:,} weights, "
             f"heap {args.heap}; {total_rounds} rounds (the first a warm-up)")
    from tools.fleet import Fleet
    fleet = None
    samples: list[tuple[float, dict]] = []
    phases: dict[int, dict[str, float]] = {}
    started = time.monotonic()
    deadline = started + args.timeout
    outcome = "completed"
    try:
        site.start()
        devices = make_devices(run, keys, args.weights, args.heap, ("127.0.0.1", site.broker_port))
        fleet = Fleet(devices)
        fleet.start()
        progress(f"  mosquitto, coordinator ({site.url}), gateway and {n} devices started; logs in {run}")
        last_line, done = "", []
        while True:
            site.check()
            for event in fleet.check():
                progress("  " + event)
            samples.append(snapshot(devices, site))
            status = site.get_json("/status")
            if status:
                phases.setdefault(status["round_id"], {}).setdefault(status["phase"], status["phase_started"])
                line = (f"  round {status['round_id']} {status['phase']}: {status['sum_participants']} sum, "
                        f"{status['updates']} update, {status.get('sum2', 0)} sum2 "
                        f"[{time.monotonic() - started:.0f} s]")
                if line != last_line:
                    progress(line)
                    last_line = line
                if status["round_id"] > total_rounds:
                    done = site.get_json("/rounds") or []
                    if all(any(r["round_id"] == i for r in done) for i in range(1, total_rounds + 1)):
                        samples.append(snapshot(devices, site))
                        break
            if time.monotonic() > deadline:
                outcome = f"timed out after {args.timeout:.0f} s"
                progress(f"  {outcome}")
                done = site.get_json("/rounds") or []
                break
            time.sleep(args.poll)
    finally:
        if fleet is not None:
            fleet.stop()
        site.stop()
    return figures(n, sums, done, phases, samples, tasks, args, outcome, run)


def figures(n, sums, done, phases, samples, tasks, args, outcome, run) -> dict:
    names = [f"dev{i + 1:03d}" for i in range(n)]
    services = ("coordinator", "gateway", "mosquitto")
    rounds = []
    for record in sorted(done, key=lambda r: r["round_id"]):
        r = record["round_id"]
        if r == 1 or r > args.rounds + 1:
            continue
        entry = {"round_id": r, "outcome": record["outcome"]}
        if record["outcome"] != "completed":
            entry["failure"] = record.get("failure")
            rounds.append(entry)
            continue
        start, end = record["started"], record["started"] + record["duration"]
        cpu = {}
        for who in names + list(services) + ["machine_busy", "machine_all"]:
            a, b = interpolate(samples, start, who), interpolate(samples, end, who)
            cpu[who] = None if a is None or b is None else b - a
        device_cpu = {d: cpu[d] for d in names if cpu[d] is not None}
        role = {d: tasks[i][r - 1].name.lower() for i, d in enumerate(names)}
        slowest = max(device_cpu, key=device_cpu.get)
        p = phases.get(r, {})
        phase_s = {}
        if {"sum", "update", "sum2"} <= p.keys():
            phase_s = {"sum": p["update"] - start, "update": p["sum2"] - p["update"], "sum2": end - p["sum2"]}
        all_cpu = sum(device_cpu.values()) + sum(cpu[s] or 0 for s in services)
        reference = device_cpu[slowest] + 3 * args.phase_min
        entry.update({
            "round_s": record["duration"], "phases_s": phase_s,
            "participants": {"sum": record["sums"], "update": record["updates"], "sum2": record["sum2"]},
            "slowest_device": slowest, "slowest_role": role[slowest], "slowest_cpu_s": device_cpu[slowest],
            "slowest_sum_cpu_s": max((c for d, c in device_cpu.items() if role[d] == "sum"), default=None),
            "slowest_update_cpu_s": max((c for d, c in device_cpu.items() if role[d] == "update"), default=None),
            "devices_measured": len(device_cpu), "devices_cpu_s": sum(device_cpu.values()),
            "services_cpu_s": {s: cpu[s] for s in services}, "reference_s": reference,
            "ratio": record["duration"] / reference, "cpu_busy": all_cpu / (CORES * record["duration"]),
            "site_cpu_per_core_s": all_cpu / CORES,
            "machine_busy": (cpu["machine_busy"] / cpu["machine_all"]
                             if cpu["machine_busy"] is not None and cpu["machine_all"] else None)})
        rounds.append(entry)
    return {"devices": n, "sums": sums, "updates": n - sums, "weights": args.weights, "heap": args.heap,
            "phase_min_s": args.phase_min, "outcome": outcome, "rounds": rounds, "logs": str(run)}


# -- report -------------------------------------------------------------------------------------------


def rows(results: list[dict]) -> list[dict]:
    out = []
    for res in results:
        n = res["devices"]
        for r in res["rounds"]:
            what = (f"round latency, {n} Unix-port devices ({res['sums']} sum, {res['updates']} update, "
                    f"{res['weights']:,} weights), round {r['round_id']}")
            if r["outcome"] != "completed":
                out.append({"id": f"latency/{n}/{r['round_id']}", "what": f"{what}: FAILED ({r.get('failure')})",
                            "ours": None, "unit": "s", "reference": None, "reference_what": "", "ratio": None,
                            "target": None, "met": False})
                continue
            ph = r["phases_s"]
            detail = (f"; phases sum {ph['sum']:.2f} s, update {ph['update']:.2f} s, sum2 {ph['sum2']:.2f} s"
                      if ph else "")
            out.append({
                "id": f"latency/{n}/{r['round_id']}", "what": f"{what}{detail}; {busy_text(r)}", "ours": r["round_s"], "unit": "s", "reference": r["reference_s"],
                "reference_what": f"slowest device's CPU ({r['slowest_role']}, {r['slowest_cpu_s']:.2f} s) + "
                                  f"minimum phase times (3 x {res['phase_min_s']:g} s)",
                "ratio": r["ratio"], "ratio_unit": "x", "target": None, "met": None,
                **{k: r[k] for k in ("phases_s", "slowest_role", "slowest_cpu_s", "slowest_sum_cpu_s",
                                     "slowest_update_cpu_s", "devices_cpu_s", "services_cpu_s", "cpu_busy",
                                     "machine_busy", "site_cpu_per_core_s", "participants")}})
        if res["outcome"] != "completed":
            out.append({"id": f"latency/{n}", "what": f"round latency, {n} devices: {res['outcome']}; "
                        f"{len(res['rounds'])} of the measured rounds ended", "ours": None, "unit": "s",
                        "reference": None, "reference_what": "", "ratio": None, "target": None, "met": False})
    return out


def busy_text(r: dict) -> str:
    text = (f"the site's CPU over the round {r['site_cpu_per_core_s']:.2f} s per core "
            f"({100 * r['cpu_busy']:.0f}% of {CORES} cores)")
    if r.get("machine_busy") is not None:
        text += f", the machine's {100 * r['machine_busy']:.0f}%"
    return text


def report(results: list[dict]) -> None:
    print(f"{'devices':>7} {'round':>5} {'round s':>8} {'sum s':>6} {'update s':>8} {'sum2 s':>7} "
          f"{'slowest CPU s':>13} {'role':>6} {'reference s':>11} {'ratio':>7} {'site CPU/cores s':>16} "
          f"{'site CPU':>8} {'machine':>7}")
    for res in results:
        for r in res["rounds"]:
            if r["outcome"] != "completed":
                print(f"{res['devices']:>7} {r['round_id']:>5} failed: {r.get('failure')}")
                continue
            ph = r["phases_s"] or {"sum": float("nan"), "update": float("nan"), "sum2": float("nan")}
            print(f"{res['devices']:>7} {r['round_id']:>5} {r['round_s']:>8.2f} {ph['sum']:>6.2f} "
                  f"{ph['update']:>8.2f} {ph['sum2']:>7.2f} {r['slowest_cpu_s']:>13.3f} {r['slowest_role']:>6} "
                  f"{r['reference_s']:>11.3f} {r['ratio']:>6.1f}x {r['site_cpu_per_core_s']:>16.2f} "
                  f"{100 * r['cpu_busy']:>7.0f}% "
                  f"{100 * (r['machine_busy'] or 0):>6.0f}%")
        if res["outcome"] != "completed":
            print(f"{res['devices']:>7}: {res['outcome']}")
    print(f"reference: the slowest device's CPU time over the round + the three minimum phase times; "
          f"site CPU/cores: the devices', coordinator's, gateway's and broker's CPU seconds over the round / "
          f"{CORES} cores, the shortest the round could be on this machine; site CPU: the same / round time; machine: all the machine's cores busy over the round, other work included")


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Progress goes to stderr, the table to stdout.")
    parser.add_argument("--devices", type=int_list, default=[10, 50, 100],
                        help="fleet sizes, comma-separated, each at least 4 (default 10,50,100)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per fleet size, after a warm-up "
                                                              "round (default 3)")
    parser.add_argument("--weights", type=int, default=1000, help="model length (default 1000)")
    parser.add_argument("--heap", default="192k", help="micropython -X heapsize per device (default 192k)")
    parser.add_argument("--sum-share", type=float, default=0.1,
                        help="sum participants per round as a share of the devices, at least 1 (default 0.1)")
    parser.add_argument("--phase-min", type=float, default=0.25,
                        help="time.min of every phase in seconds (default 0.25)")
    parser.add_argument("--phase-max", type=float, default=600,
                        help="time.max of every phase in seconds (default 600)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between two samples (default 0.1)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds one fleet size may take, start-up included (default 900)")
    parser.add_argument("--quick", action="store_true", help="4 devices, 1 measured round, 200 weights")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the logs and device folders under DIR")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--serve-coordinator", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_coordinator:
        return serve_coordinator(args.serve_coordinator)
    if args.quick:
        args.devices, args.rounds, args.weights = [4], 1, 200
    if min(args.devices) < 4:
        parser.error("each fleet size must be at least 4: a round needs a sum participant and 3 updates")
    from tools.build import build
    build(["x64"], ROOT / "build", log=lambda line: None)
    results, failed = [], False
    with tempfile.TemporaryDirectory(prefix="pet-bench-latency-") as tmp:
        for n in args.devices:
            run = (args.keep or Path(tmp)) / f"fleet-{n}"
            shutil.rmtree(run, ignore_errors=True)
            try:
                res = run_fleet(n, args, run)
            except RuntimeError as e:
                progress(f"{n} devices: {e}")
                res = {"devices": n, "sums": 0, "updates": 0, "weights": args.weights, "heap": args.heap,
                       "phase_min_s": args.phase_min, "outcome": f"failed: {e}", "rounds": []}
            failed |= res["outcome"] != "completed" or any(r["outcome"] != "completed" for r in res["rounds"])
            results.append(res)
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows(results), indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
