"""The dashboard in a real headless Chromium, following real rounds.

A coordinator scores every global model with `digits_accuracy` (named by the
model.evaluate setting, as an operator would), reference participants learn
scikit-learn's digits, a real gateway reports through a real mosquitto, and
the page is read through Debian's chromedriver. PET_SCREENSHOT=docs/dashboard.png
also saves the screenshot there (it always goes to the test's tmp_path).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gateway.settings import load_settings as gateway_settings
from pet.crypto import SigningKeyPair
from pet.participant import HttpTransport, Participant
from tests.coordinator_harness import RunningCoordinator, fast_settings
from tests.test_gateway import RunningGateway, broker_address, gateway_env

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLEET = 10
GATEWAY_ID = "site-dash"


# -- the model: softmax regression 64 -> 10 on digits, laid out as firmware/examples/digits -------

@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return data.data[order] / 16.0, data.target[order]


def _probabilities(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    logits = x @ weights[:640].reshape(10, 64).T + weights[640:]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def digits_accuracy(weights: np.ndarray) -> dict:
    """The evaluation hook: the global model on the 297 samples no participant holds."""
    x, y = digits()
    p = _probabilities(weights, x[1500:])
    return {"accuracy": float((p.argmax(axis=1) == y[1500:]).mean()),
            "loss": float(-np.log(p[np.arange(len(p)), y[1500:]] + 1e-12).mean())}


def learner(shard: int):
    """A participant's train hook: five epochs of gradient descent on its 150 samples."""
    x, y = digits()
    x, onehot = x[:1500][shard::FLEET], np.eye(10)[y[:1500][shard::FLEET]]

    def train(params, global_model):
        w = np.zeros(650) if global_model is None else np.array(global_model, dtype=np.float64)
        for _ in range(5):
            error = _probabilities(w, x) - onehot
            w[:640] -= 0.5 * (error.T @ x / len(x)).ravel()
            w[640:] -= 0.5 * error.mean(axis=0)
        return np.clip(w, -3.5, 3.5).astype(np.float32), 1.0  # within the mask config's bound
    return train


# -- the browser --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the dashboard is tested in Debian's chromium "
                    f"(apt-get install chromium chromium-driver, or tools/system-deps)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # selenium-manager must never fetch a driver
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def coordinator():
    settings = fast_settings(**{"model.length": 650, "model.evaluate": "tests.test_dashboard:digits_accuracy"})
    with RunningCoordinator(settings) as c:
        yield c


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).text


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def rows(driver, tbody_id: str) -> list[list[str]]:
    return [[td.text for td in tr.find_elements("css selector", "td")] for tr in css(driver, f"#{tbody_id} tr")]


def gateway_rows(driver, state: str) -> list[list[str]]:
    return [r for r in rows(driver, "gateway-rows") if r[0] == GATEWAY_ID and r[1] == state]


def wait_until(condition, what: str, timeout: float = 10.0):
    """Poll condition() until it is truthy; fail naming what was awaited and what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
            last = result
        except Exception as e:  # an element not there yet
            result, last = None, f"{type(e).__name__}: {e}"
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed {what} (last: {last!r})")
        time.sleep(0.1)


def page_matches_status(driver, status: dict) -> bool:
    return (text(driver, "round-id") == str(status["round_id"]) and text(driver, "phase") == status["phase"]
            and text(driver, "sums") == str(status["sum_participants"])
            and text(driver, "updates") == str(status["updates"]) and text(driver, "sum2") == str(status["sum2"]))


def step_until(fleet, until, timeout: float = 30.0) -> None:
    """Step the participants one at a time until `until()` holds: no one acts after that."""
    deadline = time.monotonic() + timeout
    while True:
        progress = False
        for participant in fleet:
            if until():
                return
            progress = participant.step() or progress
        if time.monotonic() > deadline:
            raise AssertionError("timed out driving the fleet")
        if not progress:
            time.sleep(0.02)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def fmt(value: float) -> str:
    """As dashboard.js's fmt writes a figure below 100: three significant digits."""
    return f"{value:#.3g}"


# -- the tests ----------------------------------------------------------------------------------

def test_the_page_follows_the_rounds(browser, coordinator, mosquitto_url, tmp_path):
    c, driver = coordinator, browser
    driver.get(c.url + "/")

    # a fresh coordinator: round 1 waits in Sum for its first sum participant
    wait_until(lambda: text(driver, "link") == "live", "the event stream connected")
    wait_until(lambda: page_matches_status(driver, c.status()) and text(driver, "phase") == "sum",
               "round 1 in the sum phase")
    assert text(driver, "mask-config") == "W32/F32/b2/m10"
    assert text(driver, "model-size") == "650 weights (2.5 KiB as float32)"
    assert text(driver, "latest-model") == "none yet"
    assert css(driver, "#phases li.current")[0].text == "sum"
    assert css(driver, "#rounds-empty")[0].is_displayed() and not css(driver, "#chart-participants g.bar")
    assert text(driver, "deadline-max").startswith("in ")

    # a real gateway reports itself on every GET /status
    queue = tmp_path / "queue.db"
    env = gateway_env(broker_address(mosquitto_url), c.url, queue, "dash", gateway_id=GATEWAY_ID)
    gateway = RunningGateway(gateway_settings(None, env=env))
    try:
        # its first poll may come before its broker connection is up: wait for both
        row = wait_until(lambda: [r for r in gateway_rows(driver, "live") if r[2] == "connected"],
                         "the gateway as live and connected to its broker")[0]
        assert row[3] == "0" and row[5] == "127.0.0.1"

        # a refused message shows up with its reason
        req = urllib.request.Request(c.url + "/message", data=b"\x00" * 300, method="POST")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=10)
        wait_until(lambda: text(driver, "rejected") == "1", "one rejected message")
        assert rows(driver, "reasons") == [["undecryptable", "1"]]
        refused = rows(driver, "rejection-rows")
        assert [r[1:4] for r in refused] == [["1", "sum", "undecryptable"]]

        # participants take their roles: the page follows the phases and counts
        fleet = [Participant(HttpTransport(c.url), learner(i),
                             keys=SigningKeyPair.from_seed((100 + i).to_bytes(32, "little")))
                 for i in range(FLEET)]
        step_until(fleet, lambda: c.status()["updates"] >= 3)
        # nobody sends a mask now: after update.time.min the round waits in Sum2
        wait_until(lambda: c.status()["phase"] == "sum2" and page_matches_status(driver, c.status()),
                   "the sum2 phase with its counts")
        status = c.status()
        assert status["sum_participants"] >= 1 and status["updates"] >= 3 and status["sum2"] == 0
        assert css(driver, "#phases li.current")[0].text == "sum2"
        assert text(driver, "needed") == f"0 / {status['needed']}"

        # the first global model: a bar, a duration and the evaluation figures
        step_until(fleet, lambda: c.status()["latest_model"] is not None)
        wait_until(lambda: len(css(driver, "#chart-participants g.bar")) == 1, "the first round on the chart")
        first = get_json(c.url + "/rounds")[0]
        assert first["round_id"] == 1 and first["outcome"] == "completed"
        assert first["reasons"]["undecryptable"] == 1 and set(first["evaluation"]) == {"accuracy", "loss"}
        assert rows(driver, "round-rows")[0][:6] == ["1", "completed", str(first["sums"]), str(first["updates"]),
                                                     str(first["sum2"]), f"{first['duration']:.1f} s"]
        assert rows(driver, "round-rows")[0][6] == str(sum(first["reasons"].values()))
        wait_until(lambda: text(driver, "latest-figures") != "", "the latest model's figures")
        assert text(driver, "latest-figures").split("\n") == ["accuracy", fmt(first["evaluation"]["accuracy"]),
                                                              "loss", fmt(first["evaluation"]["loss"])]
        assert not css(driver, "#no-figures")[0].is_displayed()

        # more rounds: the charts grow a bar and a point per round
        step_until(fleet, lambda: (c.status()["latest_model"] or {}).get("round_id", 0) >= 4, timeout=60)
        history = get_json(c.url + "/rounds")
        wait_until(lambda: len(css(driver, "#chart-participants g.bar")) == len(history), "a bar per round")
        bars = [int(g.get_attribute("data-round")) for g in css(driver, "#chart-participants g.bar")]
        assert bars == [r["round_id"] for r in history]
        completed = [r for r in history if r["outcome"] == "completed"]
        captions = [f.text for f in css(driver, "#figure-charts figcaption")]
        assert captions == ["accuracy", "loss"]
        accuracy_chart, loss_chart = css(driver, "#figure-charts figure")
        points = accuracy_chart.find_elements("css selector", "circle")
        assert [int(p.get_attribute("data-round")) for p in points] == [r["round_id"] for r in completed]
        # higher accuracy is drawn higher up (a smaller y), whichever way the figures went
        heights = [float(p.get_attribute("cy")) for p in points]
        figures = [r["evaluation"]["accuracy"] for r in completed]
        for (h1, f1), (h2, f2) in zip(zip(heights, figures), zip(heights[1:], figures[1:])):
            assert (h2 < h1) == (f2 > f1) or f1 == f2
        assert len(loss_chart.find_elements("css selector", "circle")) == len(completed)
        newest = rows(driver, "round-rows")[0]
        assert newest[0] == str(history[-1]["round_id"])
        assert newest[7] == (f"accuracy {fmt(history[-1]['evaluation']['accuracy'])}, "
                             f"loss {fmt(history[-1]['evaluation']['loss'])}")
        assert len(rows(driver, "round-rows")) == min(len(history), 8)

        # a round under way for the picture
        step_until(fleet, lambda: c.status()["updates"] >= 1)  # fewer than update.count.min: it waits
        wait_until(lambda: page_matches_status(driver, c.status()), "the update phase of the next round")
        assert text(driver, "phase") == "update"
        chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height + chrome + 4)
        assert driver.save_screenshot(str(tmp_path / "dashboard.png"))
        if os.environ.get("PET_SCREENSHOT"):
            shutil.copyfile(tmp_path / "dashboard.png", ROOT / os.environ["PET_SCREENSHOT"])
    finally:
        gateway.stop()

    # a gateway that stops polling turns late
    wait_until(lambda: gateway_rows(driver, "late"), "the stopped gateway as late", timeout=15)


def test_the_page_shows_untrusted_text_as_text(browser, coordinator):
    """A gateway id is whatever a client sends in X-Pet-Gateway: it must never become markup."""
    hostile = "<img/src=x/onerror=document.title='owned'><b>bold</b>"
    req = urllib.request.Request(coordinator.url + "/status", headers={"X-Pet-Gateway": hostile})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    browser.get(coordinator.url + "/")
    wait_until(lambda: [r for r in rows(browser, "gateway-rows") if r[0] == hostile], "the id as plain text")
    assert not css(browser, "#gateway-rows img") and not css(browser, "#gateway-rows b")
    assert browser.title == "PET coordinator"


def test_the_page_fetches_nothing_from_elsewhere(browser, coordinator):
    browser.get(coordinator.url + "/")
    wait_until(lambda: text(browser, "link") == "live", "the event stream connected")
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert {u.split("?")[0] for u in urls} >= {coordinator.url + "/dashboard/dashboard.css",
                                              coordinator.url + "/dashboard/dashboard.js"}
    assert all(u.startswith(coordinator.url + "/") for u in urls), urls
    with urllib.request.urlopen(coordinator.url + "/", timeout=10) as r:
        policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_the_page_says_when_the_coordinator_is_gone(browser):
    c = RunningCoordinator(fast_settings())
    try:
        browser.get(c.url + "/")
        wait_until(lambda: text(browser, "link") == "live", "the event stream connected")
    finally:
        c.stop()
    wait_until(lambda: css(browser, "#link")[0].get_attribute("data-state") == "down", "the coordinator as gone")
    link = text(browser, "link")
    assert link == "reconnecting" or link.startswith("no news for"), link
