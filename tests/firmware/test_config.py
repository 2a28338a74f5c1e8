"""The device checks its config.json at boot (upet.config, the check pet-deploy runs too):
a field upet cannot use stops the start with a ValueError naming the file and the field,
before any key is made or any connection tried."""

import json

import pytest

from tests.firmware.conftest import run_upy

GOOD = {"broker": {"host": "127.0.0.1", "port": 1883, "tls": False}, "username": "", "password": "",
        "prefix": "pet", "wifi": {"ssid": "", "password": ""}, "scalar": 1.0}


@pytest.mark.parametrize("change, message", [
    ({"broker": None}, 'no "broker" object (host, port, tls)'),
    ({"broker": {"host": "", "port": 1883}}, "broker.host must be a host name"),
    ({"broker": {"host": "h", "port": "1883"}}, "broker.port must be a port number, not '1883'"),
    ({"broker": {"host": "h", "port": 70000}}, "broker.port must be a port number, not 70000"),
    ({"broker": {"host": "h", "tls": "yes"}}, "broker.tls must be true or false"),
    ({"password": 1234}, "password must be a string"),
    ({"max_message_size": 193}, "max_message_size must be a whole number of at least 194"),
    ({"max_message_size": 4096.5}, "max_message_size must be a whole number of at least 194"),
    ({"table_rows": 3}, "table_rows must be 1, 2, 4, 8 or 16, not 3"),
    ({"table_rows": True}, "table_rows must be 1, 2, 4, 8 or 16, not True"),
    ({"ack_timeout": 0}, "ack_timeout must be a positive number, not 0"),
    ({"scalar": "2"}, "scalar must be a positive number, not '2'"),
    ({"wifi": ["net"]}, "wifi must hold an ssid and a password string"),
    ({"deep_sleep_s": -5}, "deep_sleep_s must be a whole number of seconds (0: stay awake), not -5"),
    ({"awake_s": 0}, "awake_s must be a positive number, not 0"),
])
def test_a_config_upet_cannot_use_stops_the_start(tmp_path, change, message):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "config.json").write_text(json.dumps(GOOD | change))
    out = run_upy(f"""
        import os, upet
        from upet.store import Store
        try:
            upet.Participant(store=Store({str(tmp_path / "dev")!r}))
            print("started")
        except ValueError as e:
            print(e)
        print(sorted(os.listdir({str(tmp_path / "dev")!r})))
    """, tmp=tmp_path)
    first, files = out.split("\n")[:2]
    assert first.startswith(str(tmp_path / "dev" / "config.json") + ": ") and message in first, out
    assert files == "['config.json']", out  # no key made, nothing saved


def test_a_good_config_starts(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "config.json").write_text(json.dumps(GOOD | {"max_message_size": 194, "table_rows": 1}))
    out = run_upy(f"""
        import upet
        from upet.store import Store
        p = upet.Participant(store=Store({str(tmp_path / "dev")!r}))
        print(p.max_payload, p.phase)
    """, tmp=tmp_path)
    assert out.split("\n")[0] == "10 awaiting", out  # payload bytes a message: 2 of chunk data


def test_tls_without_a_ca_certificate_is_said_at_boot(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "config.json").write_text(json.dumps(GOOD | {"broker": {"host": "h", "tls": True}}))
    script = f"""
        import upet
        from upet.store import Store
        p = upet.Participant(store=Store({str(tmp_path / "dev")!r}))
        print("client", p.client.settings[2], p.client.settings[5])
    """
    out = run_upy(script, tmp=tmp_path)
    ca = str(tmp_path / "dev" / "ca.crt")
    assert f"upet: broker.tls without {ca}: the broker's certificate is not checked" in out, out
    assert "client 8883 {'server_hostname': 'h'}" in out, out
    (tmp_path / "dev" / "ca.crt").write_bytes(b"0\x82")  # a CA on file: checked against it, nothing said
    out = run_upy(script, tmp=tmp_path)
    assert "not checked" not in out and "'cadata': b'0\\x82'" in out, out
