"""PET protocol core: the one place that defines the bytes and the maths.

Modules: `wire` (messages and REST encodings), `mask` (configs, masking,
aggregation), `crypto` (Ed25519, X25519, sealed boxes), `sortition`,
`multipart` (chunking and reassembly), `participant` (reference participant).
"""

__version__ = "0.1.0"
