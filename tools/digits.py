"""scikit-learn's 8x8 digits for a simulated fleet: the split, the devices' shards, the baseline.

Everything is fixed by a seed, so every run (and the coordinator's evaluation
hook in another process) sees the same data:

- `split()`: a stratified train/test split of the 1,797 digits (25% test).
- `shards(devices)`: non-IID shards of the training set. Each device gets two
  pieces of the label-sorted data (so most of its samples come from two or
  three classes) plus an even share of the rest, shuffled.
- `shard_bytes(pixels, labels)`: a shard as the flash file that the board's
  app (firmware/examples/digits/app.py) reads.
- `evaluate(weights)`: the test accuracy of a 650-weight softmax regression
  laid out as the app lays it out (W[10][64] row by row, then b[10]), as the
  coordinator's `evaluate` hook takes it: `{"accuracy": x}`.
- `baseline_accuracy()`: a softmax regression trained centrally on the whole
  training set (scikit-learn's LogisticRegression), on the same test split.
"""

from __future__ import annotations

import functools
import struct

import numpy as np

CLASSES, FEATURES = 10, 64
LENGTH = CLASSES * FEATURES + CLASSES  # 650
SEED = 0
TEST_FRACTION = 0.25
IID_FRACTION = 0.3  # share of the training set dealt evenly; the rest goes out by label
SCALE = 1 / 16  # pixels are 0..16; the model sees them in 0..1, as the app does


class DigitsError(ValueError):
    """A request the digits data cannot satisfy (too many devices, a wrong model length)."""


@functools.lru_cache(maxsize=None)
def split(seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pixels, train labels, test pixels, test labels); pixels uint8 0..16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.uint8), digits.target.astype(np.uint8), test_size=TEST_FRACTION,
        random_state=seed, stratify=digits.target)
    return x_train, y_train, x_test, y_test


def shards(devices: int, seed: int = SEED, iid_fraction: float = IID_FRACTION) -> list[np.ndarray]:
    """Indices into the training set, one array per device, disjoint and covering it all.

    The label-sorted part is cut into 2 x devices pieces and each device gets two
    at random, so its shard is dominated by two or three classes."""
    y = split(seed)[1]
    if not 1 <= devices <= len(y) // 4:
        raise DigitsError(f"the digits training set has {len(y)} samples: from 1 to {len(y) // 4} "
                          f"devices can have a shard, not {devices}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    k = int(round(iid_fraction * len(y)))
    even, rest = order[:k], order[k:]
    by_label = rest[np.argsort(y[rest], kind="stable")]
    pieces = np.array_split(by_label, 2 * devices)
    deal = rng.permutation(2 * devices)
    return [rng.permutation(np.concatenate([pieces[deal[2 * i]], pieces[deal[2 * i + 1]], even[i::devices]]))
            for i in range(devices)]


def shard_bytes(pixels: np.ndarray, labels: np.ndarray) -> bytes:
    """The app's shard file: u32 LE count, then per sample 64 pixel bytes (0..16) and the label."""
    rows = np.concatenate([np.asarray(pixels, np.uint8), np.asarray(labels, np.uint8)[:, None]], axis=1)
    return struct.pack("<I", len(rows)) + rows.tobytes()


def device_shard(device: int, devices: int, seed: int = SEED) -> bytes:
    """Device number `device` (0-based) of a fleet of `devices`: its shard file."""
    x, y = split(seed)[:2]
    index = shards(devices, seed)[device]
    return shard_bytes(x[index], y[index])


def classes_of(device: int, devices: int, seed: int = SEED) -> dict[int, int]:
    """label -> samples in a device's shard (for people: how non-IID it is)."""
    y = split(seed)[1][shards(devices, seed)[device]]
    labels, counts = np.unique(y, return_counts=True)
    return {int(label): int(n) for label, n in zip(labels, counts)}


def predict(weights, pixels: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != LENGTH:
        raise DigitsError(f"the digits model has {LENGTH} weights, got {len(w)}")
    logits = (pixels * SCALE) @ w[:CLASSES * FEATURES].reshape(CLASSES, FEATURES).T + w[CLASSES * FEATURES:]
    return np.argmax(logits, axis=1)


def evaluate(weights) -> dict:
    """{"accuracy": share of the test digits the model gets right}."""
    _, _, x_test, y_test = split()
    return {"accuracy": float(np.mean(predict(weights, x_test) == y_test))}


@functools.lru_cache(maxsize=None)
def baseline_accuracy(seed: int = SEED) -> float:
    """Test accuracy of a softmax regression trained centrally on the whole training set."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train, x_test, y_test = split(seed)
    model = LogisticRegression(max_iter=5000).fit(x_train * SCALE, y_train)
    return float(model.score(x_test * SCALE, y_test))
