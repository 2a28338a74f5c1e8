"""The device's config.json, checked field by field (docs/raspberry-pi.md lists the fields):
at boot (upet.boot, which loads this module for that call only) and by pet-deploy before
anything reaches a board. Plain Python, so CPython runs it too.
"""


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(config, broker=True):
    """Raises ValueError naming the first field of a parsed config.json that upet cannot use;
    broker=False: the participant is given its MQTT client, so "broker" goes unused."""
    def need(ok, what):
        if not ok:
            raise ValueError(what)

    need(isinstance(config, dict), "expected a JSON object, as pet-provision writes it")
    if broker:
        b = config.get("broker")
        need(isinstance(b, dict), 'no "broker" object (host, port, tls)')
        need(isinstance(b.get("host"), str) and b["host"] != "", "broker.host must be a host name")
        port = b.get("port", 1883)
        need(_whole(port) and 0 < port < 65536, "broker.port must be a port number, not %r" % (port,))
        need(isinstance(b.get("tls", False), bool), "broker.tls must be true or false")
    for name in ("username", "password", "prefix"):
        need(isinstance(config.get(name, ""), str), "%s must be a string" % name)
    size = config.get("max_message_size", 3912)
    need(_whole(size) and size >= 194, "max_message_size must be a whole number of at least 194 (a sealed "
         "chunk's 184 bytes of header and seal and 8 of chunk header, then its data), not %r" % (size,))
    rows = config.get("table_rows", 4)
    need(_whole(rows) and rows in (1, 2, 4, 8, 16), "table_rows must be 1, 2, 4, 8 or 16, not %r" % (rows,))
    sleep = config.get("deep_sleep_s", 0)
    need(_whole(sleep) and sleep >= 0, "deep_sleep_s must be a whole number of seconds (0: stay awake), "
         "not %r" % (sleep,))
    for name in ("ack_timeout", "scalar", "awake_s"):
        value = config.get(name, 1)
        need(_number(value) and value > 0, "%s must be a positive number, not %r" % (name, value))
    wifi = config.get("wifi", {})
    need(isinstance(wifi, dict) and isinstance(wifi.get("ssid", ""), str)
         and isinstance(wifi.get("password", ""), str), "wifi must hold an ssid and a password string")
