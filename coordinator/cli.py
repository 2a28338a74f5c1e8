"""pet-coordinator: load and check the settings, then run the coordinator."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace

from coordinator.settings import LOG_LEVELS, SettingsError, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

ENV_HELP = """\
environment overrides:
  Every setting can also be given by an environment variable named
  PET__<SECTION>__<KEY>, with __ between nested keys; names are
  case-insensitive and win over the file. A value is read as a TOML value
  (number, true/false, "quoted string", array) when it parses as one, and as
  plain text otherwise. For example:

    PET__PET__SUM__PROB=0.01 PET__PET__UPDATE__COUNT__MIN=100 \\
    PET__API__BIND=0.0.0.0:8081 PET__STORE__KIND=redis \\
      pet-coordinator --config coordinator.toml

exit status: 0 when done, 2 when the settings are wrong.
See docs/coordinator.md for every key."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pet-coordinator", epilog=ENV_HELP,
        description="Coordinator of XayNet's PET federated-learning protocol.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="TOML settings file (optional: every key has a default)")
    parser.add_argument("--check", action="store_true",
                        help="check the settings, print 'configuration OK' and exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings as TOML and exit")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="overrides log.level")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ)
    except SettingsError as e:
        print(f"pet-coordinator: {e}", file=sys.stderr)
        return 2
    if args.log_level:
        settings = replace(settings, log=replace(settings.log, level=args.log_level))
    if args.print_config:
        sys.stdout.write(settings.to_toml())
    if args.check:
        print("configuration OK")
    if args.print_config or args.check:
        return 0

    logging.basicConfig(level=settings.log.level.upper(), format=LOG_FORMAT)
    from coordinator.server import run  # imported late: only needed to actually serve
    try:
        run(settings)
    except KeyboardInterrupt:
        return 130
    return 0
