"""Digits on a board: softmax regression 64 -> 10 (650 weights) on a shard of scikit-learn's digits.

The shard is a flash file (make_shard.py writes it): u32 LE count, then per
sample 64 pixel bytes (0..16) and the label byte. Training reads it sample by
sample, so only the model and one sample are in RAM. Weights: W[10][64] row
by row, then b[10]; the participant streams every global model into MODEL.

An optional flash file digits.json sets the training: {"epochs": 2, "rate": 0.05,
"scalar_per_sample": 0.0009765625}. The scalar (the update's weight in the average)
is the shard's sample count times scalar_per_sample; the mask config clamps the
scalar and scalar x weight to its bound (4 for the default b2), so the default
per sample is 1/1024.
"""

import json
import math
import struct
from array import array

CLASSES, FEATURES = 10, 64
LENGTH = CLASSES * FEATURES + CLASSES  # 650
SHARD = "digits.bin"


def _settings(path="digits.json"):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return {}


_SETTINGS = _settings()
EPOCHS = _SETTINGS.get("epochs", 2)
RATE = _SETTINGS.get("rate", 0.05)
SCALAR_PER_SAMPLE = _SETTINGS.get("scalar_per_sample", 1 / 1024)

MODEL = array("f", range(LENGTH))  # allocated before upet loads (main.py imports this module first)
for _i in range(LENGTH):
    MODEL[_i] = 0.0


def samples(path=SHARD):
    """(pixels, label) of every sample in the shard, read one at a time."""
    with open(path, "rb") as f:
        count = struct.unpack("<I", f.read(4))[0]
        row = bytearray(FEATURES + 1)
        for _ in range(count):
            f.readinto(row)
            yield row, row[FEATURES]


def probabilities(w, x, out):
    """Softmax of the logits W x + b into out; x holds pixel bytes 0..16."""
    top = -1e30
    for k in range(CLASSES):
        base = k * FEATURES
        z = w[CLASSES * FEATURES + k]
        for j in range(FEATURES):
            if x[j]:
                z += w[base + j] * x[j] * 0.0625
        out[k] = z
        top = max(top, z)
    total = 0.0
    for k in range(CLASSES):
        out[k] = math.exp(out[k] - top)
        total += out[k]
    for k in range(CLASSES):
        out[k] /= total


def train(params, w=MODEL, epochs=EPOCHS, rate=RATE, path=SHARD):
    """A few epochs of SGD from the current global model; the scalar grows with the sample count."""
    if params.model_length != LENGTH:
        return None
    p = array("f", range(CLASSES))
    count = 0
    for _ in range(epochs):
        count = 0
        for x, label in samples(path):
            probabilities(w, x, p)
            for k in range(CLASSES):
                g = rate * ((1.0 if k == label else 0.0) - p[k])
                base = k * FEATURES
                for j in range(FEATURES):
                    if x[j]:
                        w[base + j] += g * x[j] * 0.0625
                w[CLASSES * FEATURES + k] += g
            count += 1
    return w, count * SCALAR_PER_SAMPLE


def accuracy(w=MODEL, path=SHARD):
    p = array("f", range(CLASSES))
    right = total = 0
    for x, label in samples(path):
        probabilities(w, x, p)
        right += max(range(CLASSES), key=lambda k: p[k]) == label
        total += 1
    return right / total if total else 0.0


def on_model(round_id, weights):
    print("global model of round %d: %.1f%% right on this shard" % (round_id, 100 * accuracy(weights)))
