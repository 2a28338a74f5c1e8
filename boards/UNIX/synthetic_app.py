"""A stand-in app for fleet simulations on the Unix port: a model of any size, no data.

Every device pulls the global model half-way towards one fixed target,
target(i) = ((i * 37) % 200 - 100) / 200 (in -0.5 .. 0.5), plus noise of its
own in -0.1 .. 0.1, so the global model comes closer to the target round by
round (pet-demo reports the RMS distance). Reads synthetic.json:
{"length": N, "device": k}; pet-fleet writes it.
"""

import json
from array import array

with open("synthetic.json") as _f:
    _SETTINGS = json.load(_f)
LENGTH = _SETTINGS["length"]
DEVICE = _SETTINGS["device"]

MODEL = array("f", range(LENGTH))  # allocated before upet loads (main.py imports this module first)
for _i in range(LENGTH):
    MODEL[_i] = 0.0


def target(i):
    return ((i * 37) % 200 - 100) / 200


def train(params, w=MODEL):
    if params.model_length != LENGTH:
        return None
    x = ((params.seed[0] << 16 | params.seed[1] << 8 | params.seed[2]) ^ DEVICE * 40503) & 0x7FFFFFFF
    for i in range(LENGTH):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        w[i] += 0.5 * (target(i) - w[i]) + (x / 0x7FFFFFFF - 0.5) * 0.2
    return w, 1.0


def on_model(round_id, weights):
    print("global model of round %d" % round_id)
