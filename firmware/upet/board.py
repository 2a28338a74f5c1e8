"""The board layer: the only module that touches `machine` and `network`.

WiFi (connect, reconnect), the status LED, the watchdog and deep sleep. The
pins and timings come from the board's `board_config` module (boards/<NAME>/
config.py, copied to the board as board_config.py). On the Unix port, which
has neither module, every call does nothing.
"""

import time

try:
    import machine
    import network
except ImportError:  # the Unix port
    machine = network = None

try:
    import board_config as cfg
except ImportError:
    cfg = None


def _opt(name, default):
    return getattr(cfg, name, default)


class Board:
    def __init__(self, wifi=None):
        self.wifi = wifi or {}
        self.wlan = self.led = self.wdt = None
        self.max_message_size = _opt("MAX_MESSAGE_SIZE", None)
        self.table_rows = _opt("TABLE_ROWS", None)
        self.deep_sleep_s = _opt("DEEP_SLEEP_S", 0)
        if machine is None:
            return
        pin = _opt("LED", None)
        if pin is not None:
            self.led = machine.Pin(pin, machine.Pin.OUT)
        ms = _opt("WATCHDOG_MS", 0)
        if ms:
            self.wdt = machine.WDT(timeout=ms)

    def feed(self):
        if self.wdt:
            self.wdt.feed()

    def light(self, on):
        if self.led:
            self.led.value(1 if on else 0)

    def ensure_network(self, timeout_ms=20000):
        """Joins the configured WiFi unless connected; OSError when it cannot."""
        if network is None or not self.wifi.get("ssid"):
            return
        if self.wlan is None:
            self.wlan = network.WLAN(network.STA_IF)
            self.wlan.active(True)
        if self.wlan.isconnected():
            return
        self.wlan.connect(self.wifi["ssid"], self.wifi.get("password", ""))
        start = time.ticks_ms()
        while not self.wlan.isconnected():
            self.feed()
            self.light(time.ticks_ms() // 250 % 2)
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                self.wlan.disconnect()
                raise OSError("WiFi %r: no connection" % self.wifi["ssid"])
            time.sleep_ms(100)
        self.light(True)

    def deep_sleep(self, seconds):
        """Deep sleep (WiFi, CPU and RAM off), after which the board resets and main.py starts
        the participant again from flash. The Unix port cannot sleep: the process ends with
        exit status 75 (EX_TEMPFAIL), and pet-fleet starts it again `seconds` later."""
        if machine is None:
            import sys
            sys.exit(75)
        self.light(False)
        machine.deepsleep(int(seconds * 1000))

    def reset(self):
        if machine is not None:
            machine.reset()

    def restart(self, pause_ms=10000):
        """After an error the participant could not handle: a pause (time to read the log, and
        no tight loop of resets), then a reset, after which the participant resumes its round
        from flash. Returns on the Unix port, where the process then ends."""
        if machine is None:
            return
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < pause_ms:
            self.feed()
            self.light(time.ticks_ms() // 100 % 2)  # fast blinking: restarting
            time.sleep_ms(100)
        self.reset()
