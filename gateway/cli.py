"""pet-gateway: load and check the settings, then run the gateway."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from gateway.settings import LOG_LEVELS, SettingsError, load_settings
from pet.config import configure_logging

ENV_HELP = """\
environment overrides:
  Every setting can also be given by an environment variable named
  PET__<SECTION>__<KEY>, with __ between nested keys; names are
  case-insensitive. Variables win over the file, and the options above win
  over both. A value is read as a TOML value (number, true/false, "quoted
  string") when it parses as one, and as plain text otherwise. For example:

    PET__MQTT__HOST=broker.local PET__COORDINATOR__URL=https://pet.example.org \\
    PET__COORDINATOR__TOKEN=s3cret pet-gateway --config gateway.toml

exit status: 0 when done, 2 when the settings are wrong (one line on stderr).
See docs/gateway.md for every key."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pet-gateway", epilog=ENV_HELP,
        description="Relays PET messages between devices on an MQTT broker and the coordinator's\n"
                    "HTTP API, and publishes the round's state as retained MQTT messages.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="TOML settings file (optional: every key has a default)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)} (log.level)")
    parser.add_argument("--check", action="store_true",
                        help="check the settings, print 'configuration OK', exit")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings as TOML and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = {"log.level": ("--log-level", args.log_level)} if args.log_level else {}
    try:
        settings = load_settings(args.config, os.environ, flags)
    except SettingsError as e:
        print(f"pet-gateway: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(settings.to_toml())
    if args.check:
        print("configuration OK")
    if args.print_config or args.check:
        return 0

    configure_logging(settings.log.level)
    from gateway.app import run  # imported late: only needed to actually serve
    try:
        run(settings)
    except KeyboardInterrupt:
        return 130
    except (OSError, sqlite3.Error) as e:  # the queue's file, the HTTP port
        print(f"pet-gateway: {e}", file=sys.stderr)
        return 1
    return 0
