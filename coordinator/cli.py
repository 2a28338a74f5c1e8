"""pet-coordinator: load and check the settings, then run the coordinator."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from coordinator.settings import LOG_LEVELS, Settings, SettingsError, load_settings
from pet.config import configure_logging

ENV_HELP = """\
environment overrides:
  Every setting can also be given by an environment variable named
  PET__<SECTION>__<KEY>, with __ between nested keys; names are
  case-insensitive. Variables win over the file, and the options above win
  over both. A value is read as a TOML value (number, true/false, "quoted
  string", array) when it parses as one, and as plain text otherwise. For
  example:

    PET__PET__SUM__PROB=0.01 PET__PET__UPDATE__COUNT__MIN=100 \\
    PET__API__BIND=0.0.0.0:8081 PET__STORE__KIND=redis \\
      pet-coordinator --config coordinator.toml

exit status: 0 when done, 2 when the settings are wrong (one line on stderr).
See docs/coordinator.md for every key."""


ROLES = ("leader", "worker")


def _count(text: str) -> int:
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not (text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 65535, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pet-coordinator", epilog=ENV_HELP,
        description="Coordinator of XayNet's PET federated-learning protocol.\n"
                    "Without options it serves on 127.0.0.1:8081 and keeps its rounds\n"
                    "in ./pet-data/coordinator.db (SQLite).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="TOML settings file (optional: every key has a default)")
    parser.add_argument("--port", type=_port, metavar="N",
                        help="HTTP port; replaces the port of api.bind")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="directory of the SQLite file (store.data_dir)")
    parser.add_argument("--redis", metavar="URL",
                        help="keep rounds in Redis at URL, not SQLite (store.url)")
    parser.add_argument("--evaluate", metavar="MODULE:FUNCTION",
                        help="score every new global model with this function, e.g. "
                             "digits.evaluate:accuracy (model.evaluate); modules in the "
                             "working directory are found too")
    parser.add_argument("--processes", type=_count, metavar="N",
                        help="processes that judge messages on this port: the leader and N-1 "
                             "workers it starts (api.processes; needs --redis)")
    parser.add_argument("--role", choices=ROLES, default="leader",
                        help="leader (default): runs the rounds; worker: judges messages for the "
                             "leader that keeps its rounds in the same Redis (needs --redis and the "
                             "leader's settings)")
    parser.add_argument("--leader-pid", type=int, help=argparse.SUPPRESS)  # a worker the leader started
    parser.add_argument("--log-level", choices=LOG_LEVELS, metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)} (log.level)")
    parser.add_argument("--check", action="store_true",
                        help="check the settings, print 'configuration OK', exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings as TOML and exit")
    return parser


def _flags(args: argparse.Namespace) -> dict:
    """The settings the options set, as load_settings takes them."""
    flags = {}
    if args.data_dir is not None:
        flags["store.data_dir"] = ("--data-dir", args.data_dir)
    if args.redis is not None:
        flags["store.kind"] = ("--redis", "redis")
        flags["store.url"] = ("--redis", args.redis)
    if args.evaluate is not None:
        flags["model.evaluate"] = ("--evaluate", args.evaluate)
    if args.log_level:
        flags["log.level"] = ("--log-level", args.log_level)
    if args.processes is not None:
        flags["api.processes"] = ("--processes", args.processes)
    return flags


def _worker_command(args: argparse.Namespace) -> list[str]:
    """How the leader starts a worker process: the options that set its settings, as given."""
    options = {"--config": args.config, "--port": args.port, "--data-dir": args.data_dir, "--redis": args.redis,
               "--evaluate": args.evaluate, "--log-level": args.log_level}
    command = [sys.executable, "-m", "coordinator", "--role", "worker", "--leader-pid", str(os.getpid())]
    for option, value in options.items():
        if value is not None:
            command += [option, str(value)]
    return command


def _with_port(settings: Settings, port: int) -> Settings:
    host = settings.api.host
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return replace(settings, api=replace(settings.api, bind=bind))


def _make_data_dir(settings: Settings) -> None:
    """SQLite creates its file but not the directory it goes in."""
    store = settings.store
    if store.kind == "sqlite" and store.path != ":memory:":
        Path(store.path).parent.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # model.evaluate may name a module of the working directory
        sys.path.append(os.getcwd())
    try:
        settings = load_settings(args.config, os.environ, _flags(args))
    except SettingsError as e:
        print(f"pet-coordinator: {e}", file=sys.stderr)
        return 2
    if args.port is not None:
        settings = _with_port(settings, args.port)
    if args.print_config:
        sys.stdout.write(settings.to_toml())
    if args.check:
        print("configuration OK")
    if args.print_config or args.check:
        return 0

    try:
        _make_data_dir(settings)
    except OSError as e:
        print(f"pet-coordinator: cannot create the directory of {settings.store.path}: {e.strerror}",
              file=sys.stderr)
        return 2
    if args.role == "worker" and settings.store.kind != "redis":
        print("pet-coordinator: --role worker needs the redis store (--redis URL): a worker judges "
              "messages for the leader that keeps its rounds there", file=sys.stderr)
        return 2
    configure_logging(settings.log.level)
    from coordinator.store import StoreError
    from coordinator.worker import NoLeader
    try:
        if args.role == "worker":
            from coordinator.server import run_worker  # imported late: only needed to actually serve
            run_worker(settings, args.leader_pid)
        else:
            from coordinator.server import run
            if settings.api.processes > 1:
                run(settings, _worker_command(args))
            else:
                run(settings)
    except (StoreError, NoLeader) as e:
        print(f"pet-coordinator: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
