"""Run every benchmark in bench/ and write bench-out/results.json and the tables of
docs/performance.md; what `make bench` runs.

Each benchmark runs as its own process with `--json bench-out/<name>.json`; its
progress goes to stderr with its name in front, its own table to
bench-out/<name>.txt. Its figures become rows of one list: what was measured, our
figure, the reference measured in the same run and the ratio of the two, the
target and whether it was met, plus the run's time and machine. A benchmark that
fails (exit status, time limit, no JSON) becomes a row saying so, and this script
then exits 1 once the others are done. The tables go into docs/performance.md
between the lines `<!-- bench:begin -->` and `<!-- bench:end -->`; the text
around them is left as it is. A script in bench/ that is not in the list below
(nor run by one in it) is named under the tables as not run.

  mask         CPython masking against numpy + OpenSSL ChaCha20    bench/mask.py
  coordinator  Update ingestion against the crypto floor           bench/coordinator.py
  load         a 5,000-participant round against the crypto floor  bench/load.py
  load-redis   the same with the coordinator's store in Redis       bench/load.py --store redis
  gateway      MQTT -> HTTP relay against mosquitto alone          bench/gateway.py
  firmware     firmware crypto and masking against libsodium/numpy bench/firmware.py
  fuzz         malformed messages: crashes and corrupted rounds    bench/fuzz.py (when present)
  device       a board's work per round on the Unix port            bench/device.py
  latency      round latency with 10, 50, 100 Unix-port devices     bench/latency.py
  workers      ingestion with 1 and 2 coordinator processes on Redis bench/workers.py

Usage: python bench/run.py [--only NAME,...] [--quick] [--no-docs] [--out DIR] [--docs FILE]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TIME_LIMIT = 15 * 60  # seconds one benchmark may take


# -- rows from each benchmark's JSON ----------------------------------------------------------

def row(id, what, ours, unit, reference=None, reference_what="", ratio=None, target=None, ratio_unit=""):
    """One figure. target: "<= 40" or ">= 0.5" on the ratio, or None. ratio_unit "x": a time
    ratio, ours / reference (lower is better); "": a share of the reference's throughput."""
    return {"id": id, "what": what, "ours": ours, "unit": unit, "reference": reference,
            "reference_what": reference_what, "ratio": ratio, "ratio_unit": ratio_unit,
            "target": target, "met": meets(ratio, target)}


def meets(value, target):
    if target is None or value is None:
        return None
    op, bound = target.split()
    return value <= float(bound) if op == "<=" else value >= float(bound)


def mask_rows(data: list[dict]) -> list[dict]:
    return [row(f"mask/{r['config']}/{r['what']}",
                f"CPython masking, {r['config']}: {r['what']}, {r['weights']:,} weights",
                r["ours_s"] * 1e3, "ms", r["floor_s"] * 1e3,
                "aggregation floor: one numpy modular add" if r["what"].startswith("aggregate")
                else "floor: one ChaCha20 word (OpenSSL) + numpy add per weight", r["ratio"])
            for r in data]


def coordinator_rows(data: list[dict]) -> list[dict]:
    rows = []
    for r in data:
        how = "in-process" if r["what"].startswith("handle") else "http"
        rows.append(row(f"coordinator/{r['config']}/{r['weights']}/{how}",
                        f"coordinator ingestion of Update messages, {r['config']}, {r['weights']:,} weights: "
                        f"{r['messages']} messages, {r['what']}",
                        r["ours_msg_per_s"], "msg/s", r["floor_msg_per_s"], "crypto floor, one thread",
                        r["ratio"], f">= {r['target']}"))
    # bytes on the wire per weight: the size difference of two whole Update messages
    sizes = {(r["config"], r["weights"]): r["message_bytes"] for r in data}
    for config in sorted({c for c, _ in sizes}):
        lengths = sorted(w for c, w in sizes if c == config)
        if len(lengths) >= 2:
            small, large = lengths[0], lengths[-1]
            per_weight = (sizes[config, large] - sizes[config, small]) / (large - small)
            rows.append(row(f"wire/{config}", f"bytes per weight in one unchunked Update message (HTTP), {config}: "
                            f"the size difference of messages of {small:,} and {large:,} weights; with MQTT "
                            f"chunks see the device rows", per_weight, "bytes", 4.0,
                            "float32", per_weight / 4.0, "<= 1", "x"))
    return rows


def load_rows(data: dict) -> list[dict]:
    n = data["participants"]
    what = (f"a round of {n:,} update participants ({data['weights']:,} weights, {data['sums']} sum "
            f"participants, {data['store']}, the coordinator in its own process)")
    bound = "; the load generator was CPU-bound" if data["generator_bound"] else ""
    return [
        row(f"load/{data['store']}/{n}/cpu", f"coordinator CPU over {what}", data["coordinator_cpu_s"],
            "s", data["floor_cpu_s"], f"crypto floor of the same {n:,} Update messages, one thread",
            data["ratio"], f">= {data['target']}"),
        row(f"load/{data['store']}/{n}/time",
            f"round time, first Update sent to global model, of {what}: {data['updates_accepted']:,} "
            f"updates accepted, Update phase {data['update_phase_s']:.1f} s "
            f"({data['updates_per_s']:,.0f}/s), Sum2 {data['sum2_phase_s']:.1f} s, "
            f"global model {'right' if data['model_ok'] else 'WRONG'}{bound}",
            data["round_s"], "s"),
    ]


def gateway_rows(data: list[dict]) -> list[dict]:
    reference = next(r for r in data if r["target"] is None)
    return [row(f"gateway/{r['what']}", f"gateway relay, {r['size']:,}-byte uplinks: {r['what']}",
                r["msg_per_s"], "msg/s", reference["msg_per_s"], reference["what"], r["ratio"],
                f">= {r['target']}")
            for r in data if r["target"] is not None]


def firmware_rows(data: list[dict]) -> list[dict]:
    rows = []
    for r in data:
        op, bound = re.match(r"(<=|>=) ([\d.]+)", r["target"]).groups()
        masking = r["what"].startswith("masking")
        rows.append(row(f"firmware/{r['what']}", f"firmware on the Unix port: {r['what']}", r["firmware_us"],
                        "µs/weight" if masking else "µs", r["reference_us"], r["reference"], r["ratio"],
                        f"{op} {bound}", "" if masking else "x"))
    return rows


def fuzz_rows(data: dict) -> list[dict]:
    checks = data.get("checks", {})
    bad = data["crashes"] + data["hangs"] + data["cases_that_changed_the_round"]
    ok = bad == 0 and all(checks.values())
    r = row("fuzz", f"fuzzed and malformed messages, {data['cases']:,} cases (seed {data['seed']})",
            f"{data['crashes']} crashes, {data['hangs']} hangs, {data['cases_that_changed_the_round']} "
            f"changed the round, {sum(not v for v in checks.values())} of {len(checks)} checks failed", "")
    r["target"], r["met"] = "0 crashes, 0 corrupted aggregates", ok
    return [r]


def own_rows(data: list[dict]) -> list[dict]:
    """Rows a script writes in this file's own form; met is worked out here again."""
    return [dict(r, met=meets(r.get("ratio"), r.get("target"))) for r in data]


# name -> (script, options of a full run, options of a --quick run, rows from its JSON). A full
# run takes about 5 minutes on a 2-core VM: the best of 5 where a script takes the best of R.
BENCHES = {
    "mask": ("bench/mask.py", ["--repeat", "5"], ["--weights", "100000", "--repeat", "1"], mask_rows),
    "coordinator": ("bench/coordinator.py", [], ["--quick"], coordinator_rows),
    "load": ("bench/load.py", [], ["--quick"], load_rows),
    "load-redis": ("bench/load.py", ["--store", "redis"], ["--quick", "--store", "redis"], load_rows),
    "gateway": ("bench/gateway.py", ["--repeat", "5"], ["--quick"], gateway_rows),
    "firmware": ("bench/firmware.py", ["--rounds", "5"], ["--rounds", "1", "--weights", "10000"],
                 firmware_rows),
    "fuzz": ("bench/fuzz.py", ["--cases", "100000"], ["--cases", "2000"], fuzz_rows),
    "device": ("bench/device.py", [], ["--quick"], own_rows),
    "latency": ("bench/latency.py", [], ["--quick"], own_rows),
    "workers": ("bench/workers.py", [], ["--quick"], own_rows),
}


# scripts that the ones above run, and this one
HELPERS = {"run.py", "firmware_curve.py", "firmware_box.py", "firmware_mask.py"}


def not_run() -> list[str]:
    """Scripts in bench/ that this one does not know, so that none goes missing unseen."""
    known = HELPERS | {Path(script).name for script, *_ in BENCHES.values()}
    return sorted(f"bench/{p.name}" for p in (ROOT / "bench").glob("*.py") if p.name not in known)


def available(name: str) -> bool:
    script = ROOT / BENCHES[name][0]
    return script.exists() and "--json" in script.read_text()


# -- running them -----------------------------------------------------------------------------

def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": model, "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_average": list(os.getloadavg())}


def run_one(name: str, out: Path, quick: bool) -> tuple[list[dict], dict]:
    """Run one benchmark; its rows, and what happened (seconds, status)."""
    script, full, small, to_rows = BENCHES[name]
    json_file, text_file = out / f"{name}.json", out / f"{name}.txt"
    json_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / script), *(small if quick else full), "--json", str(json_file)]
    progress(f"== {name}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    tail = collections.deque(maxlen=10)
    with open(text_file, "w") as stdout:
        # a session of its own, so that a benchmark over its time goes with all it started
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

        def echo():  # progress, as it comes
            for line in proc.stderr:
                tail.append(line.rstrip())
                progress(f"   [{name}] {line.rstrip()}")
        reader = threading.Thread(target=echo, daemon=True)
        reader.start()
        try:
            proc.wait(TIME_LIMIT)
            status = "ok" if proc.returncode == 0 else f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"no result within {TIME_LIMIT // 60} minutes"
        reader.join(10)
    seconds = time.monotonic() - started
    rows = []
    if json_file.exists():
        try:
            rows = to_rows(json.loads(json_file.read_text()))
        except (ValueError, KeyError, TypeError, StopIteration, AttributeError) as e:
            status = f"unreadable JSON ({type(e).__name__}: {e})" if status == "ok" else status
    elif status == "ok":
        status = "no JSON written"
    if status != "ok":
        failed = row(name, f"{script}: FAILED, {status}" + (f": {tail[-1]}" if tail else ""), None, "")
        failed["met"], failed["failed"] = False, True
        rows.append(failed)
    for r in rows:
        r["bench"] = name
    progress(f"== {name}: {status} after {seconds:.0f} s\n{text_file.read_text().rstrip()}")
    return rows, {"seconds": round(seconds, 1), "status": status}


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the tables -------------------------------------------------------------------------------

def number(value) -> str:
    """Three significant figures, thousands separated."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def figure(value, unit: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{number(value)} {unit}".strip()


def ratio_text(r: dict) -> str:
    if r["ratio"] is None:
        return ""
    return number(r["ratio"]) + r.get("ratio_unit", "")


def met_text(r: dict) -> str:
    return {True: "yes", False: "**no**", None: ""}[r["met"]]


def tables(results: dict) -> str:
    """The Markdown between the markers: when and where, the targets, the other figures."""
    m = results["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average"])
    lines = [
        "<!-- written by bench/run.py (make bench) from bench-out/results.json; edits here are lost -->",
        "",
        f"Run of {results['started']} ({results['seconds'] / 60:.0f} minutes) on {m['cpus']} x "
        f"{m['cpu'] or m['platform']}, Python {m['python']}; load average at the start {load}.",
        "Each ratio is against the reference measured in the same run: for times (x) ours / "
        "reference, lower is better; for throughputs ours / reference, higher is better.",
        "",
        "| what | ours | reference (same run) | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if r["target"] is not None or r.get("failed"):
            reference = f"{r['reference_what']} {figure(r['reference'], r['unit'])}".strip()
            target = (r["target"] or "") + ("x" if r.get("ratio_unit") == "x" and r["target"] else "")
            lines.append(f"| {r['what']} | {figure(r['ours'], r['unit'])} | {reference} | {ratio_text(r)} "
                         f"| {target} | {met_text(r)} |")
    others = [r for r in results["rows"] if r["target"] is None and not r.get("failed")]
    if others:
        lines += ["", "Other figures of the same run:", "",
                  "| what | ours | reference (same run) | ratio |", "|---|---|---|---|"]
        for r in others:
            reference = f"{r['reference_what']} {figure(r['reference'], r['unit'])}".strip()
            lines.append(f"| {r['what']} | {figure(r['ours'], r['unit'])} | {reference} | {ratio_text(r)} |")
    times = [f"{name} {b['seconds'] / 60:.1f} min ({b['status']})" for name, b in results["benches"].items()]
    lines += ["", f"Time per benchmark: {', '.join(times)}."]
    if results.get("not_run"):
        lines.append(f"Not run, since bench/run.py does not read their figures yet: "
                     f"{', '.join(results['not_run'])}.")
    return "\n".join(lines)


def replace_tables(document: str, block: str) -> str:
    """The document with the text between the markers replaced by block; the markers are
    appended at the end when missing."""
    if BEGIN not in document or END not in document:
        return document.rstrip("\n") + f"\n\n{BEGIN}\n{block}\n{END}\n"
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


# -- driver -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run these benchmarks only, comma-separated (implies --no-docs)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, minutes in all; the figures mean little (implies --no-docs)")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md alone")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out", help="output directory (bench-out/)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "performance.md",
                        help="the page whose tables to rewrite (docs/performance.md)")
    args = parser.parse_args(argv)
    names = [n for n in BENCHES if available(n)]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            parser.error(f"unknown benchmark {', '.join(unknown)}; there are {', '.join(names)}")
        names = wanted
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "machine": machine(), "quick": args.quick, "benches": {}, "rows": [], "not_run": not_run()}
    for script in results["not_run"]:
        progress(f"{script}: not run (bench/run.py does not read its figures yet)")
    started = time.monotonic()
    for k, name in enumerate(names):
        progress(f"[{k + 1}/{len(names)}] {name}, {(time.monotonic() - started) / 60:.1f} min so far")
        rows, outcome = run_one(name, args.out, args.quick)
        results["benches"][name] = outcome
        results["rows"] += rows
    results["seconds"] = round(time.monotonic() - started, 1)
    for r in results["rows"]:
        r["run"], r["machine"] = results["started"], results["machine"]
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    block = tables(results)
    (args.out / "results.md").write_text(block + "\n")
    print(block)
    if not (args.no_docs or args.quick or args.only):
        args.docs.write_text(replace_tables(args.docs.read_text(), block))
        progress(f"wrote {args.out / 'results.json'} and the tables of {args.docs}")
    failed = [n for n, b in results["benches"].items() if b["status"] != "ok"]
    if failed:
        progress(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
