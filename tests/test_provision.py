"""pet-provision: the files it writes, and a real mosquitto enforcing the ACL it generates."""

from __future__ import annotations

import json
import queue
import signal
import stat
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pet.crypto import SigningKeyPair
from tools import provision
from tools.provision import main

TIMEOUT = 5


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def device_config(out, name) -> dict:
    return json.loads((out / "devices" / name / "config.json").read_text())


def gateway_login(out, gateway_id="site1") -> dict:
    return json.loads((out / "gateways" / f"{gateway_id}.json").read_text())


# -- files ------------------------------------------------------------------------------------


def test_devices_get_keys_configs_and_a_registry_without_secrets(tmp_path, capsys):
    out = tmp_path / "fleet"
    assert main(["devices", "--out", str(out), "--count", "2", "--broker", "10.0.0.2", "--tls"]) == 0
    printed = capsys.readouterr().out
    registry = json.loads((out / "devices.json").read_text())
    assert [d["name"] for d in registry] == ["dev001", "dev002"]
    for entry in registry:
        folder = out / "devices" / entry["name"]
        key = (folder / "key").read_bytes()
        assert SigningKeyPair.from_secret_key(key).public_key.hex() == entry["pk"]
        config = device_config(out, entry["name"])
        assert config == {
            "name": entry["name"],
            "broker": {"host": "10.0.0.2", "port": 8883, "tls": True},
            "username": entry["pk"],
            "password": config["password"],
            "prefix": "pet",
            "wifi": {"ssid": "", "password": ""},
            "scalar": 1.0,
        }
        assert len(config["password"]) >= 32
        assert mode(folder / "key") == mode(folder / "config.json") == 0o600
        assert mode(folder) == 0o700
        assert entry["pk"] in printed and str(folder) in printed
        assert config["password"] not in printed and key.hex() not in printed and key[:32].hex() not in printed
        assert set(entry) == {"name", "pk"}
    assert device_config(out, "dev001")["password"] != device_config(out, "dev002")["password"]


def test_reruns_keep_existing_devices_and_gateways(tmp_path):
    out = tmp_path / "fleet"
    main(["devices", "--out", str(out), "--count", "2"])
    main(["gateway", "--out", str(out)])
    before = {n: ((out / "devices" / n / "key").read_bytes(), device_config(out, n)) for n in ("dev001", "dev002")}
    login = gateway_login(out)

    main(["devices", "--out", str(out), "--count", "0"])
    main(["devices", "--out", str(out), "--count", "2", "--name-prefix", "dev", "--port", "1884"])
    main(["gateway", "--out", str(out)])

    registry = json.loads((out / "devices.json").read_text())
    assert [d["name"] for d in registry] == ["dev001", "dev002", "dev003", "dev004"]
    assert len({d["pk"] for d in registry}) == 4
    for name, (key, config) in before.items():
        assert (out / "devices" / name / "key").read_bytes() == key
        assert device_config(out, name) == config
    assert device_config(out, "dev001")["broker"]["port"] == 1883  # new options apply to new devices
    assert device_config(out, "dev003")["broker"]["port"] == 1884
    assert gateway_login(out) == login


def test_broker_files(tmp_path, capsys):
    out = tmp_path / "fleet"
    main(["devices", "--out", str(out), "--count", "2"])
    main(["gateway", "--out", str(out), "--id", "barn"])
    assert main(["broker", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = out / "mosquitto"
    passwd = (folder / "passwd").read_text().splitlines()
    users = [line.split(":", 1)[0] for line in passwd]
    assert users == [d["pk"] for d in json.loads((out / "devices.json").read_text())] + ["gateway-barn"]
    assert all(line.split(":", 1)[1].startswith("$7$") for line in passwd)  # hashed by mosquitto_passwd
    assert mode(folder / "passwd") == 0o600
    assert gateway_login(out, "barn")["password"] not in printed
    acl = (folder / "acl").read_text()
    assert "user gateway-barn\ntopic readwrite pet/#\n" in acl
    assert "pattern write pet/dev/%u/msg\n" in acl and "pattern read pet/round/seeds/%u\n" in acl
    first_user = acl.index("\nuser ")
    assert "\ntopic " not in acl[:first_user]  # no topic lines for anonymous clients
    conf = (folder / "mosquitto.conf").read_text()
    assert f"password_file {folder.resolve() / 'passwd'}" in conf and "allow_anonymous false" in conf


def test_every_subcommand_has_help(capsys):
    for command in ("devices", "gateway", "broker"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "--out" in capsys.readouterr().out


def test_broker_needs_mosquitto_passwd(tmp_path, monkeypatch, capsys):
    out = tmp_path / "fleet"
    main(["devices", "--out", str(out), "--count", "1"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["broker", "--out", str(out)]) == 1
    assert "install mosquitto" in capsys.readouterr().err


def test_broker_refuses_a_prefix_the_devices_do_not_use(tmp_path, capsys):
    out = tmp_path / "fleet"
    main(["devices", "--out", str(out), "--count", "1", "--prefix", "farm"])
    assert main(["broker", "--out", str(out)]) == 1
    assert "--prefix farm" in capsys.readouterr().err
    assert main(["broker", "--out", str(out), "--prefix", "farm"]) == 0
    assert "pattern write farm/dev/%u/msg" in (out / "mosquitto" / "acl").read_text()


def test_bad_names_are_refused(tmp_path):
    with pytest.raises(provision.ProvisionError):
        provision.provision_gateway(tmp_path, "a/b")
    with pytest.raises(provision.ProvisionError):
        provision.provision_devices(tmp_path, 1, name_prefix="+")


# -- the ACL in a real broker -----------------------------------------------------------------


class Client:
    """A paho client that keeps what it receives in a queue."""

    def __init__(self, broker, username=None, password=None, protocol=mqtt.MQTTv311):
        self.messages: queue.Queue = queue.Queue()
        self.connected: queue.Queue = queue.Queue()
        self.puback: dict = {}
        self.subacks: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol, reconnect_on_failure=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connected.put(rc)
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_publish = lambda c, u, mid, rc, props: self.puback.__setitem__(mid, rc)
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.put(rcs)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.result = self.connected.get(timeout=TIMEOUT)

    def subscribe(self, *topics):
        """Returns once the broker has the subscriptions (mosquitto grants even those the ACL
        will never deliver to)."""
        result, _ = self.client.subscribe([(t, 1) for t in topics])
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"
        return self.puback[info.mid]

    def received_until(self, topic) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message on `topic`. The broker
        handles publishes one at a time and delivers in order, so anything it let through
        before that message is in the list."""
        got = []
        while True:
            got.append(self.messages.get(timeout=TIMEOUT))
            if got[-1][0] == topic:
                return got

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    assert main(["devices", "--out", str(out), "--count", "3"]) == 0
    assert main(["gateway", "--out", str(out)]) == 0
    assert main(["broker", "--out", str(out)]) == 0
    return out


@pytest.fixture
def broker(fleet, mosquitto_factory):
    folder = fleet / "mosquitto"
    return mosquitto_factory(f"allow_anonymous false\npassword_file {folder / 'passwd'}\nacl_file {folder / 'acl'}")


@pytest.fixture
def connect(broker):
    clients = []

    def make(login: dict | None, **kwargs) -> Client:
        clients.append(Client(broker, login and login["username"], login and login["password"], **kwargs))
        assert clients[-1].result == 0, clients[-1].result
        return clients[-1]

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def devices(fleet):
    return [device_config(fleet, f"dev{i:03d}") for i in (1, 2, 3)]


@pytest.fixture
def gateway_creds(fleet):
    return gateway_login(fleet)


def test_only_provisioned_logins_connect(broker, devices, gateway_creds):
    me = devices[0]
    for username, password in [(None, None), (me["username"], "wrong"), (me["username"], gateway_creds["password"]),
                               ("gateway-site1", me["password"]), ("stranger", "x")]:
        c = Client(broker, username, password)
        assert c.result.is_failure, (username, c.result)
        c.close()
    for username, password in [(me["username"], me["password"]), (gateway_creds["username"], gateway_creds["password"])]:
        c = Client(broker, username, password)
        assert c.result == 0
        c.close()


def test_the_generated_broker_config_runs(fleet, mosquitto_factory, devices, tmp_path):
    conf = (fleet / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace(f"persistence_location {(fleet / 'mosquitto').resolve()}/", f"persistence_location {tmp_path}/")
    broker = mosquitto_factory(conf.replace("\nlistener 1883\n", "\n"))  # the fixture has its own port
    anonymous = Client(broker)
    assert anonymous.result.is_failure
    anonymous.close()
    c = Client(broker, devices[0]["username"], devices[0]["password"])
    assert c.result == 0
    c.close()


def test_devices_added_later_log_in_after_a_reload(tmp_path, mosquitto_factory):
    out = tmp_path / "fleet"
    main(["devices", "--out", str(out), "--count", "1"])
    main(["broker", "--out", str(out)])
    folder = out / "mosquitto"
    broker = mosquitto_factory(f"allow_anonymous false\npassword_file {folder / 'passwd'}\nacl_file {folder / 'acl'}")
    main(["devices", "--out", str(out), "--count", "1"])
    main(["broker", "--out", str(out)])
    broker.proc.send_signal(signal.SIGHUP)  # what `systemctl reload mosquitto` sends
    new = device_config(out, "dev002")
    deadline = time.monotonic() + TIMEOUT
    while (c := Client(broker, new["username"], new["password"])).result != 0:
        c.close()
        assert time.monotonic() < deadline, "the new login was not accepted after SIGHUP"
        time.sleep(0.05)
    c.close()


def test_a_device_publishes_only_its_own_uplink(connect, devices, gateway_creds):
    me, other = devices[0], devices[1]
    gateway = connect(gateway_creds)
    gateway.subscribe("pet/#")
    gateway.publish("pet/round/params", b"real params", retain=True)
    assert gateway.received_until("pet/round/params") == [("pet/round/params", b"real params")]
    device = connect(me)
    forged = [f"pet/dev/{other['username']}/msg", f"pet/dev/{me['username']}/ack", "pet/round/params",
              f"pet/round/seeds/{other['username']}", "pet/model/global", "pet/gw/site1/status", "pet/x"]
    for topic in forged:
        device.publish(topic, b"forged")  # QoS 1 in MQTT 3.1.1: PUBACK even when refused
    own = f"pet/dev/{me['username']}/msg"
    device.publish(own, b"mine")
    assert gateway.received_until(own) == [(own, b"mine")]
    late = connect(gateway_creds)  # the retained params are the gateway's, not the device's
    late.subscribe("pet/round/params")
    assert late.received_until("pet/round/params") == [("pet/round/params", b"real params")]


def test_mqtt5_says_why_a_publish_is_refused(connect, devices):
    me, other = devices[0], devices[1]
    device = connect(me, protocol=mqtt.MQTTv5)
    assert device.publish(f"pet/dev/{other['username']}/msg", b"forged") == "Not authorized"
    assert not device.publish(f"pet/dev/{me['username']}/msg", b"mine").is_failure  # or "No matching subscribers"


def test_a_device_reads_only_its_own_acks(connect, devices, gateway_creds):
    me, other = devices[0], devices[1]
    device = connect(me)
    device.subscribe(f"pet/dev/{other['username']}/ack", "pet/dev/+/ack", "pet/#", "#",
                     f"pet/dev/{other['username']}/msg", f"pet/dev/{me['username']}/ack")
    gateway = connect(gateway_creds)
    gateway.publish(f"pet/dev/{other['username']}/ack", b"theirs")
    connect(other).publish(f"pet/dev/{other['username']}/msg", b"their uplink")
    gateway.publish(f"pet/dev/{me['username']}/ack", b"mine")
    got = device.received_until(f"pet/dev/{me['username']}/ack")
    assert {payload for _, payload in got} == {b"mine"}  # once per matching subscription


def test_a_device_reads_the_round_state_and_only_its_own_seed_column(connect, devices, gateway_creds):
    me, other = devices[0], devices[1]
    gateway = connect(gateway_creds)
    retained = {"pet/round/params": b"params", "pet/round/sums": b"sums", "pet/model/global": b"model",
                "pet/gw/site1/status": b"online"}
    for d in devices:
        retained[f"pet/round/seeds/{d['username']}"] = d["name"].encode()
    for topic, payload in retained.items():
        assert gateway.publish(topic, payload, retain=True) == 0

    device = connect(me)
    device.subscribe("pet/round/params", "pet/round/sums", "pet/model/global", "pet/gw/+/status",
                     f"pet/round/seeds/{other['username']}", "pet/round/seeds/+")
    barrier = f"pet/dev/{me['username']}/ack"  # retained messages are queued before later publishes
    device.subscribe(barrier)
    gateway.publish(barrier, b"barrier")
    got = dict(device.received_until(barrier))
    del got[barrier]
    mine = f"pet/round/seeds/{me['username']}"
    assert got == {t: p for t, p in retained.items() if not t.startswith("pet/round/seeds/") or t == mine}


def test_the_gateway_reads_every_uplink_and_writes_round_topics(connect, devices, gateway_creds):
    gateway = connect(gateway_creds)
    gateway.subscribe("pet/dev/+/msg")
    for d in devices:
        connect(d).publish(f"pet/dev/{d['username']}/msg", d["name"].encode())
    got = set()
    while len(got) < len(devices):
        got.add(gateway.messages.get(timeout=TIMEOUT))
    assert got == {(f"pet/dev/{d['username']}/msg", d["name"].encode()) for d in devices}
    reader = connect(gateway_creds)
    reader.subscribe("pet/round/#")
    gateway.publish("pet/round/sums", b"sum dict")
    assert reader.received_until("pet/round/sums") == [("pet/round/sums", b"sum dict")]
