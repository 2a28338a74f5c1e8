"""The docs name what the code does."""

from pathlib import Path

from pet.verdict import REASONS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_verdict_reason_is_documented():
    text = (DOCS / "protocol.md").read_text()
    for reason, (status, _) in REASONS.items():
        assert f"| `{reason}` | {status} |" in text, f"docs/protocol.md lacks the verdict {reason}"
