"""pet-demo (`make demo`): a whole federated-learning site on this machine, end to end.

It starts a mosquitto broker (device logins and ACL from pet-provision), the
coordinator (SQLite, MCU mask profile), the gateway and a fleet of Unix-port
devices (pet-fleet), each with its own key and, for `digits`, its own non-IID
shard of scikit-learn's digits. The coordinator scores every global model on
the fixed test split (model.evaluate = tools.digits:evaluate); the demo
follows the rounds on GET /status and GET /rounds and at the end writes
OUT/summary.json and OUT/accuracy.png, next to a softmax regression trained
centrally on the same data.

Ctrl-C or SIGTERM stops every process it started; so does the end of the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pwd
import shutil
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tools.fleet import (FIRMWARE, HEAP_HELP, MICROPYTHON, Child, Fleet, FleetError, Stopped, Workload,
                         build_fleet, default_heap, leftover_children, parse_heap, parse_model, stop_on_signals)

MIN_DEVICES = 4  # one sum participant and the three updates a round needs at least
MAX_DEVICES = 1000  # updates the MCU mask config W32/F32/b2/m10 can add up in one round (1024)
STATUS_EVERY = 0.25  # seconds between two looks at GET /status


class DemoError(Exception):
    """The demo cannot go on; the message says why and where to look."""


# -- the coordinator's round settings ---------------------------------------------------------


def sum_probability(devices: int) -> float:
    """The lowest sum probability (in steps of 0.01, up to 0.5) that gives a round at least one
    sum participant and three update participants 98% of the time; for fleets too small for
    that, the probability that makes it most likely."""
    def success(p: float) -> float:
        return sum(math.comb(devices, k) * p ** k * (1 - p) ** (devices - k) for k in range(1, devices - 2))
    grid = [i / 100 for i in range(5, 51)]
    return next((p for p in grid if success(p) >= 0.98), max(grid, key=success))


@dataclass(frozen=True)
class PhaseTimes:
    """Seconds each phase takes messages for at least (min) and at most (max)."""

    sum: tuple[float, float]
    update: tuple[float, float]
    sum2: tuple[float, float]


def phase_times(devices: int, length: int) -> PhaseTimes:
    """Phase windows for a fleet of Unix-port devices sharing this machine's two cores.

    A phase ends once time.min has passed and count.min messages are in, so time.min
    decides who gets in: long enough for every device, also on a machine busy with other
    work. Measured on an idle 2-core machine, all 20 digits devices are in within about a
    second of a phase's start, and so are 6 devices with 10,000 weights (docs/demo.md);
    the windows below are three to six times that. time.max only ends rounds that cannot
    complete (too few participants drawn)."""
    work = devices * (1 + length / 10_000)  # grows with the devices and the size of their messages
    return PhaseTimes(sum=(2.0 + 0.05 * devices, 20.0),
                      update=(3.0 + 0.15 * work, 20.0 + work),
                      sum2=(2.0 + 0.05 * work, 20.0 + work))


def coordinator_toml(port: int, data_dir: Path, devices: int, workload: Workload, rounds: int) -> str:
    length = workload.length
    t = phase_times(devices, length)
    lines = [
        "# Written by pet-demo for this run.",
        "[api]", f'bind = "127.0.0.1:{port}"',
        "[pet.sum]", f"prob = {sum_probability(devices)}", "count = { min = 1, max = 100 }",
        f"time = {{ min = {t.sum[0]:.1f}, max = {t.sum[1]:.1f} }}",
        "[pet.update]", "prob = 1.0", "count = { min = 3, max = 1000 }",
        f"time = {{ min = {t.update[0]:.1f}, max = {t.update[1]:.1f} }}",
        "[pet.sum2]", "count = { min = 1, max = 100 }",
        f"time = {{ min = {t.sum2[0]:.1f}, max = {t.sum2[1]:.1f} }}",
        "[mask]", 'config = "W32/F32/b2/m10"',
        "[model]", f"length = {length}", f'evaluate = "{workload.evaluate}"',
        "[store]", 'kind = "sqlite"', f'data_dir = "{data_dir}"',
        "[history]", f"keep = {max(rounds, 1)}",
    ]
    return "\n".join(lines) + "\n"


# -- services ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if exe is None:
        raise DemoError("mosquitto is not installed: run `make demo` (tools/system-deps installs it) "
                        "or apt-get install mosquitto")
    return exe


def http_get(url: str, timeout: float = 5.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except (OSError, urllib.error.URLError):
        return None


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def clean_env() -> dict[str, str]:
    """This environment without PET__ variables: each service gets only its own settings."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}


class Site:
    """mosquitto, the coordinator and the gateway, each a Child in its own process group."""

    def __init__(self, out: Path, fleet_dir: Path, workload: Workload, devices: int, rounds: int):
        self.run, self.logs = out / "run", out / "logs"
        self.broker_port, self.api_port, self.gw_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.children: list[Child] = []
        self.fleet_dir, self.workload, self.devices, self.rounds = fleet_dir, workload, devices, rounds

    def start(self, say) -> None:
        self.run.mkdir(parents=True, exist_ok=True)
        self._start_broker()
        say(f"mosquitto on 127.0.0.1:{self.broker_port} (device logins and ACL from pet-provision)")
        self._start_coordinator()
        say(f"coordinator on {self.url} (SQLite in {self.run / 'coordinator'}); dashboard: {self.url}/")
        self._start_gateway()
        say("gateway connected to the broker and the coordinator")

    def _wait(self, child: Child, ready, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not child.running or time.monotonic() > deadline:
                raise DemoError(f"{what} did not start: {child.tail(5)}\nlog: {child.log}")
            time.sleep(0.05)

    def _start_broker(self) -> None:
        mosq = self.fleet_dir / "mosquitto"
        conf = self.run / "mosquitto.conf"
        conf.write_text("\n".join([
            "per_listener_settings false", "allow_anonymous false",
            f"password_file {mosq / 'passwd'}", f"acl_file {mosq / 'acl'}",
            # started as root, mosquitto would become the user "mosquitto", who cannot read these files
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "persistence false", "max_queued_messages 100000",
            f"listener {self.broker_port} 127.0.0.1", "log_dest stdout", "log_type error",
            "log_type warning", "log_type notice"]) + "\n")
        child = self._child(Child("mosquitto", [mosquitto_exe(), "-c", str(conf)], self.logs / "mosquitto.log"))
        self._wait(child, lambda: accepts(self.broker_port), "mosquitto")

    def _start_coordinator(self) -> None:
        conf = self.run / "coordinator.toml"
        conf.write_text(coordinator_toml(self.api_port, self.run / "coordinator", self.devices,
                                         self.workload, self.rounds))
        child = self._child(Child("coordinator", [sys.executable, "-m", "coordinator", "--config", str(conf)],
                                  self.logs / "coordinator.log", env=clean_env()))
        self._wait(child, lambda: http_get(self.url + "/health", 1) is not None, "the coordinator")

    def _start_gateway(self) -> None:
        login = json.loads((self.fleet_dir / "gateways" / "site1.json").read_text())
        conf = self.run / "gateway.toml"
        conf.write_text("\n".join([
            "[gateway]", 'id = "site1"',
            "[mqtt]", 'host = "127.0.0.1"', f"port = {self.broker_port}", f'username = "{login["username"]}"',
            "[coordinator]", f'url = "{self.url}"', "poll_interval = 0.1",
            "[queue]", f'path = "{self.run / "gateway.db"}"',
            "[http]", f'bind = "127.0.0.1:{self.gw_port}"']) + "\n")
        env = clean_env() | {"PET__MQTT__PASSWORD": login["password"]}  # kept out of the file
        child = self._child(Child("gateway", [sys.executable, "-m", "gateway", "--config", str(conf)],
                                  self.logs / "gateway.log", env=env))
        self._wait(child, lambda: http_get(f"http://127.0.0.1:{self.gw_port}/health", 1) is not None,
                   "the gateway")

    def _child(self, child: Child) -> Child:
        self.children.append(child)
        return child.start()

    def check(self) -> None:
        for child in self.children:
            if not child.running:
                raise DemoError(f"{child.name} stopped (exit status {child.proc.returncode}): "
                                f"{child.tail(5)}\nlog: {child.log}")

    def get_json(self, route: str):
        raw = http_get(self.url + route)
        return json.loads(raw) if raw else None

    def stop(self) -> None:
        for child in reversed(self.children):  # gateway, coordinator, broker: the devices went first
            child.stop()


# -- following the rounds ---------------------------------------------------------------------


class Progress:
    """One status line, rewritten in place on a terminal; elsewhere a line per phase."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = ""
        self.last_key = None

    def status(self, text: str, key) -> None:
        if self.tty:
            if text != self.shown:
                self.stream.write("\r\033[K" + text)
                self.stream.flush()
                self.shown = text
        elif key != self.last_key:
            self.say(text)
        self.last_key = key

    def say(self, text: str) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.shown = ""
        self.stream.write(text + "\n")
        self.stream.flush()


def status_line(status: dict, started: float, last_figure: str) -> str:
    return (f"round {status['round_id']:>3}  {status['phase']:<7} sum {status['sum_participants']:>2}  "
            f"update {status['updates']:>3}  sum2 {status.get('sum2', 0):>2}  {last_figure}  "
            f"[{time.monotonic() - started:5.0f} s]")


def figure_text(entry: dict) -> str:
    if "accuracy" in entry:
        return f"test accuracy {100 * entry['accuracy']:.1f}%"
    return f"RMS distance to the target {entry['rms_error']:.4f}"


def round_entry(record: dict, workload: Workload, coordinator_log: Path) -> dict:
    """A completed round of GET /rounds as summary.json keeps it."""
    figures = record.get("evaluation") or {}
    if workload.figure not in figures:
        raise DemoError(f"the coordinator's evaluation hook ({workload.evaluate}) gave no "
                        f"{workload.figure} for round {record['round_id']}; see {coordinator_log}")
    return {"round_id": record["round_id"],
            "participants": {"sum": record["sums"], "update": record["updates"], "sum2": record["sum2"]},
            "duration": round(record["duration"], 2), workload.figure: figures[workload.figure]}


def follow_rounds(site: Site, fleet: Fleet, workload: Workload, rounds: int, progress: Progress) -> list[dict]:
    """Until `rounds` rounds have completed: the status line, one line per ended round, device
    events. Rounds come from the coordinator's GET /status and GET /rounds."""
    times = phase_times(len(fleet.devices), workload.length)
    patience = 3 * (times.sum[1] + times.update[1] + times.sum2[1])  # seconds without a model at most
    coordinator_log = site.logs / "coordinator.log"
    started = last_model_at = time.monotonic()
    done: list[dict] = []
    reported: set[int] = set()
    seen_round, last_figure = None, ""
    while True:
        site.check()
        for event in fleet.check():
            progress.say(event)
        if not any(d.running for d in fleet.devices) and not fleet.restart_at:
            raise DemoError("every device has stopped; their logs say why")
        status = site.get_json("/status")
        if status is not None and status["round_id"] != seen_round:
            seen_round = status["round_id"]
            for record in site.get_json("/rounds") or []:
                if record["round_id"] in reported:
                    continue
                reported.add(record["round_id"])
                if record["outcome"] != "completed":
                    progress.say(f"round {record['round_id']:>3} failed in the {record.get('phase')} phase: "
                                 f"{record.get('failure')}; a new round starts")
                    continue
                entry = round_entry(record, workload, coordinator_log)
                done.append(entry)
                last_model_at, last_figure = time.monotonic(), figure_text(entry)
                p = entry["participants"]
                progress.say(f"round {entry['round_id']:>3} done: {p['sum']} sum, {p['update']} update, "
                             f"{p['sum2']} sum2 participants, {entry['duration']:.1f} s; {last_figure}")
                if len(done) == rounds:
                    return done
        if status is not None:
            progress.status(status_line(status, started, last_figure), (status["round_id"], status["phase"]))
        if time.monotonic() - last_model_at > patience:
            raise DemoError(f"no new global model for {patience:.0f} s; see the logs in {site.logs}")
        time.sleep(STATUS_EVERY)


# -- results ----------------------------------------------------------------------------------


def write_results(out: Path, workload: Workload, done: list[dict], baseline: float | None,
                  settings: dict) -> dict:
    final = done[-1] if done else {}
    summary = {**settings, "rounds": done, "final_accuracy": final.get("accuracy"),
               "baseline_accuracy": baseline}
    if workload.kind != "digits":
        summary["final_rms_error"] = final.get("rms_error")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(out / "accuracy.png", workload, done, baseline)
    return summary


def plot(path: Path, workload: Workload, done: list[dict], baseline: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs = [r["round_id"] for r in done]
    if workload.kind == "digits":
        ax.plot(xs, [100 * r["accuracy"] for r in done], marker="o", label="global model (federated, PET)")
        if baseline is not None:
            ax.axhline(100 * baseline, color="grey", linestyle="--", label="central softmax regression")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right")
    else:
        ax.plot(xs, [r["rms_error"] for r in done], marker="o")
        ax.set_ylabel("RMS distance to the target")
    ax.set_xlabel("round")
    ax.set_title(f"{workload.name}: {len(done)} rounds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the run ----------------------------------------------------------------------------------


def provision(fleet_dir: Path, devices: int) -> None:
    from tools.provision import ProvisionError, provision_devices, provision_gateway, write_broker_files
    try:
        provision_devices(fleet_dir, devices, host="127.0.0.1")
        provision_gateway(fleet_dir, "site1")
        write_broker_files(fleet_dir)
    except ProvisionError as e:
        raise DemoError(f"provisioning: {e}") from None


def fresh(out: Path) -> None:
    """Remove what an earlier run left in OUT (only the demo's own files)."""
    for name in ("fleet", "run", "logs"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("summary.json", "accuracy.png"):
        (out / name).unlink(missing_ok=True)


def run(args, say=print) -> dict:
    workload = parse_model(args.model)
    heap = parse_heap(args.heap or default_heap(workload))
    out: Path = args.out
    fresh(out)
    out.mkdir(parents=True, exist_ok=True)
    fleet_dir = out / "fleet"
    say(f"pet-demo: {args.devices} devices, model {workload.name} ({workload.length} weights), "
        f"{args.rounds} rounds, heap {heap} per device; output in {out}/")
    baseline = None
    if workload.kind == "digits":
        from tools.digits import baseline_accuracy, split
        baseline = baseline_accuracy()
        test = len(split()[3])
        say(f"central baseline: softmax regression (scikit-learn) on the whole training set: "
            f"{100 * baseline:.1f}% of {test} test digits")
    provision(fleet_dir, args.devices)
    site = Site(out, fleet_dir, workload, args.devices, args.rounds)
    fleet = None
    progress = Progress()
    try:
        site.start(say)
        fleet = build_fleet(fleet_dir, workload, heap, args.devices, ("127.0.0.1", site.broker_port),
                            args.micropython, args.firmware, kill_every=args.kill_every,
                            restart_after=args.restart_after, seed=0)
        fleet.start()
        say(f"{args.devices} devices started; each logs to {fleet_dir}/devices/<name>/device.log")
        done = follow_rounds(site, fleet, workload, args.rounds, progress)
    finally:
        if fleet is not None:
            fleet.stop()
        site.stop()
        for pid in leftover_children():
            os.kill(pid, signal.SIGKILL)
    settings = {"model": workload.name, "devices": args.devices, "heap": heap,
                "device_failures": sorted(fleet.failed)}
    summary = write_results(out, workload, done, baseline, settings)
    final = done[-1]
    if workload.kind == "digits":
        gap = 100 * (baseline - final["accuracy"])
        say(f"final test accuracy of the global model (round {final['round_id']}): "
            f"{100 * final['accuracy']:.1f}%")
        say(f"central softmax regression on the same data:      {100 * baseline:.1f}% "
            f"({abs(gap):.1f} points {'below' if gap < 0 else 'above'} the global model)")
    else:
        say(f"final RMS distance to the target (round {final['round_id']}): {final['rms_error']:.4f}")
    if fleet.failed:
        say(f"{len(fleet.failed)} devices stopped by themselves: {', '.join(sorted(fleet.failed))} "
            f"(logs in {fleet_dir}/devices/)")
    say(f"wrote {out / 'summary.json'} and {out / 'accuracy.png'}")
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pet-demo", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Federated learning with the PET protocol on this machine: mosquitto, the "
                    "coordinator, the gateway and a fleet of MicroPython Unix-port devices, for a "
                    "number of rounds. Prints live progress and the final accuracy next to a "
                    "centrally trained model; writes OUT/summary.json and OUT/accuracy.png.",
        epilog="make demo passes ROUNDS=, DEVICES=, HEAP= and MODEL= as --rounds, --devices, --heap\n"
               "and --model, e.g.  make demo MODEL=synthetic:10000 HEAP=128k DEVICES=6 ROUNDS=2\n"
               "Ctrl-C stops every process the demo started.")
    p.add_argument("--rounds", type=int, default=10, metavar="N", help="completed rounds to run (default 10)")
    p.add_argument("--devices", type=int, default=20, metavar="N",
                   help=f"simulated devices, {MIN_DEVICES} to {MAX_DEVICES} (default 20; digits: at most 336)")
    p.add_argument("--model", default="digits", metavar="MODEL",
                   help="digits (softmax regression, 650 weights, non-IID shards) or synthetic:N "
                        "(N weights, no data); default digits")
    p.add_argument("--heap", metavar="SIZE",
                   help="micropython heap per device, e.g. 128k (default: "
                        + HEAP_HELP + ")")
    p.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR",
                   help="where results, logs and the devices' folders go (default demo-out)")
    p.add_argument("--kill-every", type=float, metavar="S", help="kill -9 a random device every S seconds")
    p.add_argument("--restart-after", type=float, metavar="S",
                   help="a killed device boots again after S seconds (default: it stays off)")
    p.add_argument("--micropython", type=Path, default=MICROPYTHON, metavar="PATH", help=argparse.SUPPRESS)
    p.add_argument("--firmware", type=Path, default=FIRMWARE, metavar="DIR", help=argparse.SUPPRESS)
    return p


def _check(parser: argparse.ArgumentParser, args) -> None:
    """Wrong options stop the demo before it starts anything, with status 2."""
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if not MIN_DEVICES <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be from {MIN_DEVICES} (a round needs one sum participant and three "
                     f"updates) to {MAX_DEVICES}, got {args.devices}")
    for name in ("kill_every", "restart_after"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be a number of seconds above 0, got {value}")
    if args.restart_after is not None and args.kill_every is None:
        parser.error("--restart-after needs --kill-every")
    try:
        parse_model(args.model).check_devices(args.devices)
        if args.heap:
            parse_heap(args.heap)
    except FleetError as e:
        parser.error(str(e))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    try:
        stop_on_signals()
        run(args)
    except (DemoError, FleetError) as e:
        print(f"\npet-demo: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        print(f"\npet-demo: {e}: every process the demo started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
