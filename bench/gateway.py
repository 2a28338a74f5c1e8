"""Gateway relay throughput (4 KB uplinks) against mosquitto pub -> sub alone, in the same run.

P paho clients (the devices, MQTT 3.1.1) publish N uplinks at QoS 1 on
<prefix>/dev/<pk_hex>/msg to a mosquitto of the bench's own. They reach:

  mosquitto alone  a plain paho subscriber (MQTT 5, QoS 1, its own process) that counts them
  gateway          `python -m gateway` (its own process; the SQLite queue as configured,
                   the defaults otherwise) relaying them to a bare HTTP sink (its own
                   process, raw asyncio) that answers every uplink as accepted and counts;
                   so the coordinator's own work is left out

Time runs from the first publish to the receipt of the last uplink; every uplink
must arrive, once. The gateway is measured twice: with a sink that offers
POST /messages (several uplinks per request) and with one that offers only
POST /message (one request per uplink, XayNet's route). Each figure is the best
of --repeat runs, the runs of the three taken in turn. ratio = gateway msg/s /
mosquitto msg/s; the target is 0.5.

Usage: python bench/gateway.py [--messages N] [--size BYTES] [--publishers P]
       [--repeat R] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.5
SPAWN = multiprocessing.get_context("spawn")  # the receivers start clean, with no paho threads


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str, pause: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(pause)


# -- the counting end (in a process of its own) ------------------------------------------------

class Tally:
    """Counts distinct uplinks by their sequence number (the first 8 bytes). Numbers from n
    up are warm-ups: they only set `warm`. `done` is set once all n have arrived."""

    def __init__(self, n: int, warm, done, duplicates):
        self.n, self.warm, self.done, self.duplicates = n, warm, done, duplicates
        self.seen: set[int] = set()

    def add(self, payload: bytes) -> None:
        seq = int.from_bytes(payload[:8], "big")
        if seq >= self.n:
            self.warm.set()
        elif seq in self.seen:
            self.duplicates.value += 1
        else:
            self.seen.add(seq)
            if len(self.seen) == self.n:
                self.done.set()


def subscriber_main(host: str, port: int, prefix: str, n: int, ready, warm, done, duplicates) -> None:
    tally = Tally(n, warm, done, duplicates)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}",
                         protocol=paho.MQTTv5)
    client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/dev/+/msg", qos=1)
    client.on_subscribe = lambda *a: ready.set()
    client.on_message = lambda c, u, msg: tally.add(msg.payload)
    client.connect(host, port)
    client.loop_forever()


class SinkProtocol(asyncio.Protocol):
    """The least HTTP/1.1 (keep-alive, Content-Length bodies) the gateway needs:
    POST /message, POST /messages (u32 BE length | bytes, repeated; a JSON list of
    verdicts back) when batch is on, GET /status, GET /params (204: no round key)."""

    STATUS = json.dumps({"round_id": 1, "phase": "sum", "phase_started": 0.0,
                         "latest_model": None}).encode()
    ACCEPTED = b'{"accepted": true, "reason": "", "detail": ""}'

    def __init__(self, tally: Tally, batch: bool):
        self.tally, self.batch = tally, batch
        self.buffer = bytearray()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            method, path = lines[0].split(" ")[:2]
            self.transport.write(self.answer(method, path, body))

    def answer(self, method: str, path: str, body: bytes) -> bytes:
        if method == "POST" and path == "/message":
            self.tally.add(body)
            return reply(200)
        if method == "POST" and path == "/messages" and self.batch:
            count, at = 0, 0
            while at < len(body):
                length = int.from_bytes(body[at:at + 4], "big")
                self.tally.add(body[at + 4:at + 4 + length])
                count, at = count + 1, at + 4 + length
            return reply(200, b"[" + b", ".join([self.ACCEPTED] * count) + b"]")
        if method == "GET" and path == "/status":
            return reply(200, self.STATUS)
        if method == "GET" and path == "/params":
            return reply(204)
        return reply(404)


def reply(status: int, body: bytes = b"") -> bytes:
    reason = {200: "OK", 204: "No Content", 404: "Not Found"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    return head.encode() + b"\r\n" + body


def sink_main(n: int, batch: bool, port_out, warm, done, duplicates) -> None:
    async def serve():
        tally = Tally(n, warm, done, duplicates)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SinkProtocol(tally, batch), "127.0.0.1", 0)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()
    asyncio.run(serve())


class Receiver:
    """One counting process: the subscriber or the sink."""

    def __init__(self, target, *args):
        self.warm, self.done = SPAWN.Event(), SPAWN.Event()
        self.duplicates = SPAWN.Value("q", 0)
        self.process = SPAWN.Process(target=target, args=(*args, self.warm, self.done, self.duplicates),
                                     daemon=True)
        self.process.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


# -- the broker, the gateway and the devices ---------------------------------------------------

class Mosquitto:
    """A mosquitto of the bench's own on a free loopback port, queueing without limit."""

    def __init__(self, workdir: Path, messages: int):
        exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        if exe is None:
            raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 f"max_queued_messages {2 * messages + 1000}", f"log_dest file {workdir}/mosquitto.log"]
        if os.getuid() == 0:  # as root it would switch to the user "mosquitto"
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepts() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto did not start (config {conf})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(accepts, 10, "mosquitto to start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Gateway:
    """`python -m gateway` with a settings file of its own (defaults but for the addresses)."""

    def __init__(self, workdir: Path, name: str, broker_port: int, prefix: str, sink_url: str):
        self.http_port = free_port()
        config = workdir / f"{name}.toml"
        config.write_text(f'[gateway]\nid = "{name}"\n\n'
                          f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nprefix = "{prefix}"\n\n'
                          f'[coordinator]\nurl = "{sink_url}"\n\n'
                          f'[queue]\npath = "{workdir / (name + ".db")}"\n\n'
                          f'[http]\nbind = "127.0.0.1:{self.http_port}"\n\n'
                          f'[log]\nlevel = "warning"\n')
        self.log = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PET__")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config)],
                                         cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_until(self.healthy, 30, f"the gateway to connect to the broker (log: {self.log})", 0.05)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Publishers:
    """P device clients, each with its own uplink topic; messages go round-robin."""

    def __init__(self, port: int, count: int):
        self.clients, self.keys = [], []
        connected = threading.Semaphore(0)
        for i in range(count):
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-dev-{os.getpid()}-{i}")
            client.on_connect = lambda *a: connected.release()
            client.connect("127.0.0.1", port)
            client.loop_start()
            self.clients.append(client)
            self.keys.append(hashlib.sha256(b"bench device %d" % i).hexdigest())
        for _ in range(count):
            if not connected.acquire(timeout=10):
                raise RuntimeError("a publisher did not connect")

    def publish(self, prefix: str, payloads: list[bytes]) -> list:
        n = len(self.clients)
        topics = [f"{prefix}/dev/{key}/msg" for key in self.keys]
        return [self.clients[i % n].publish(topics[i % n], p, qos=1) for i, p in enumerate(payloads)]

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


# -- one run ---------------------------------------------------------------------------------

def timed_run(publishers: Publishers, prefix: str, payloads: list[bytes], size: int,
              receiver: Receiver) -> float:
    """Warm up (until one uplink got through), then the time from the first publish to the
    last receipt."""
    n = len(payloads)
    k = 0
    while not receiver.warm.is_set():  # the first may be published before the subscription is in
        warm_up = (n + k).to_bytes(8, "big") + bytes(size - 8)
        publishers.publish(prefix, [warm_up])
        receiver.warm.wait(0.5)
        k += 1
        if k > 60:
            raise RuntimeError("no warm-up uplink got through")
    started = time.perf_counter()
    infos = publishers.publish(prefix, payloads)
    if not receiver.done.wait(60 + n / 50):
        raise RuntimeError(f"not every uplink arrived (prefix {prefix})")
    seconds = time.perf_counter() - started
    if receiver.duplicates.value:
        raise RuntimeError(f"{receiver.duplicates.value} uplinks arrived twice")
    wait_until(lambda: all(i.is_published() for i in infos), 30, "the publishers' PUBACKs")
    return seconds


def run_mosquitto(broker: Mosquitto, publishers: Publishers, prefix: str, payloads, size) -> float:
    ready = SPAWN.Event()
    receiver = Receiver(subscriber_main, "127.0.0.1", broker.port, prefix, len(payloads), ready)
    try:
        if not ready.wait(20):
            raise RuntimeError("the subscriber did not subscribe")
        return timed_run(publishers, prefix, payloads, size, receiver)
    finally:
        receiver.stop()


def run_gateway(workdir: Path, name: str, broker: Mosquitto, publishers: Publishers, prefix: str,
                payloads, size, batch: bool) -> float:
    port_out = SPAWN.Queue()
    receiver = Receiver(sink_main, len(payloads), batch, port_out)
    gateway = None
    try:
        sink_url = f"http://127.0.0.1:{port_out.get(timeout=20)}"
        gateway = Gateway(workdir, name, broker.port, prefix, sink_url)
        return timed_run(publishers, prefix, payloads, size, receiver)
    finally:
        if gateway is not None:
            gateway.stop()
        receiver.stop()


def run(messages: int, size: int, publisher_count: int, repeat: int, workdir: Path) -> list[dict]:
    payloads = [i.to_bytes(8, "big") + os.urandom(size - 8) for i in range(messages)]
    broker = Mosquitto(workdir, messages)
    publishers = Publishers(broker.port, publisher_count)
    ways = {"mosquitto pub -> sub": None, "gateway, POST /messages": True,
            "gateway, POST /message only": False}
    best = dict.fromkeys(ways, float("inf"))
    try:
        for r in range(repeat):
            for k, (what, batch) in enumerate(ways.items()):
                prefix = f"bench{r}x{k}"
                progress(f"run {r + 1}/{repeat}: {what}, {messages} x {size} bytes, "
                         f"{publisher_count} publishers")
                if batch is None:
                    seconds = run_mosquitto(broker, publishers, prefix, payloads, size)
                else:
                    seconds = run_gateway(workdir, f"gw{r}x{k}", broker, publishers, prefix, payloads,
                                          size, batch)
                progress(f"  {messages / seconds:,.0f} msg/s")
                best[what] = min(best[what], seconds)
    finally:
        publishers.close()
        broker.stop()
    reference = messages / best["mosquitto pub -> sub"]
    rows = []
    for what, batch in ways.items():
        rate = messages / best[what]
        rows.append({"what": what, "messages": messages, "size": size, "publishers": publisher_count,
                     "msg_per_s": rate, "mb_per_s": rate * size / 1e6, "ratio": rate / reference,
                     "target": None if batch is None else TARGET})
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'what':<30} {'messages':>8} {'msg/s':>8} {'MB/s':>6} {'ratio':>6} {'target':>6}")
    for r in rows:
        target = f"{r['target']:.1f}" if r["target"] is not None else ""
        print(f"{r['what']:<30} {r['messages']:>8} {r['msg_per_s']:>8.0f} {r['mb_per_s']:>6.1f} "
              f"{r['ratio']:>6.3f} {target:>6}")
    print(f"ratio = msg/s / mosquitto pub -> sub msg/s; {rows[0]['size']}-byte uplinks, "
          f"{rows[0]['publishers']} publishers at QoS 1; the gateway's HTTP end is a bare sink")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Progress goes to stderr, the table to stdout.")
    parser.add_argument("--messages", type=int, default=5000, help="uplinks per run (default 5000)")
    parser.add_argument("--size", type=int, default=4096, help="bytes per uplink (default 4096, at least 8)")
    parser.add_argument("--publishers", type=int, default=8, help="device clients (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs each (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short run: 1000 uplinks, one run each")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    if args.size < 8:
        parser.error("--size must be at least 8 (the uplinks carry a sequence number)")
    if args.quick:
        args.messages, args.repeat = 1000, 1
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        rows = run(args.messages, args.size, args.publishers, args.repeat, Path(tmp))
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
