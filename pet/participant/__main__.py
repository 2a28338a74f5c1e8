"""pet-participant: take part in rounds from any Linux box (a Raspberry Pi, a server).

The local model is a .npy file of float32 weights, read again each round, so
a training job can rewrite it between rounds; the latest global model is
written to <state>/global-latest.npy.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from pet.config import configure_logging
from pet.participant import HttpTransport, Participant, Settings, StateStore


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pet-participant", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8081", help="coordinator URL (default %(default)s)")
    parser.add_argument("--mqtt", metavar="HOST:PORT",
                        help="take part through a gateway's MQTT broker instead of the coordinator's URL")
    parser.add_argument("--prefix", default="pet", help="MQTT topic prefix (default %(default)s)")
    parser.add_argument("--username", help="MQTT username (pet-provision makes it the public key's hex)")
    parser.add_argument("--password", help="MQTT password")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificate file: connect to the broker with TLS")
    parser.add_argument("--state", type=Path, default=Path("pet-participant"),
                        help="state directory: key, round progress, unsent messages (default %(default)s)")
    parser.add_argument("--model", type=Path, required=True, help=".npy file with the local model (float32)")
    parser.add_argument("--scalar", type=float, default=1.0,
                        help="aggregation weight, e.g. the number of local samples (default 1)")
    parser.add_argument("--max-message-size", type=int, default=Settings.max_message_size,
                        help="largest sealed message; larger ones are chunked (0: never chunk)")
    parser.add_argument("--token", default=None, help="bearer token, if the coordinator wants one")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if not args.model.exists():
        parser.error(f"{args.model} does not exist")

    def train(params, global_model):
        weights = np.load(args.model).astype(np.float32).reshape(-1)
        if len(weights) != params.model_length:
            logging.error("%s has %d weights, the round wants %d", args.model, len(weights), params.model_length)
        return weights

    def save_global(weights):
        path = args.state / "global-latest.npy"
        np.save(path, weights.astype(np.float32))
        logging.info("new global model saved to %s", path)

    store = StateStore(args.state)
    if args.mqtt:
        from pet.participant.mqtt import DeviceClient, MqttTransport
        host, _, port = args.mqtt.rpartition(":")
        if not (host and port.isdigit()):
            parser.error(f"--mqtt wants HOST:PORT, got {args.mqtt!r}")
        pk = store.load_or_create_keys().public_key
        client = DeviceClient((host, int(port)), args.prefix, pk, username=args.username, password=args.password,
                              tls_ca=args.tls_ca)
        transport = MqttTransport(client)
        where = f"mqtt://{args.mqtt}"
    else:
        transport = HttpTransport(args.url, token=args.token)
        where = args.url
    p = Participant(transport, train, store=store, on_global_model=save_global,
                    settings=Settings(scalar=args.scalar, max_message_size=args.max_message_size or None))
    logging.info("participant %s, coordinator %s", p.public_key.hex()[:16], where)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        p.run(stop)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
