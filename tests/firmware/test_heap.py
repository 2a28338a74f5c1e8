"""What a participant keeps in its heap: the sealed-message buffer follows max_message_size."""

import json

from tests.firmware.conftest import run_upy


def construct(tmp_path, size: int | None) -> tuple[int, int]:
    """(length of the message buffer, live heap) once a participant with this max_message_size is up."""
    root = tmp_path / f"dev{size}"
    root.mkdir()
    config = {"prefix": "pet"} | ({} if size is None else {"max_message_size": size})
    out = run_upy(f"""
        import gc, upet
        from upet.store import Store
        class Client:  # the participant only hands its message handler over while it starts
            def set_callback(self, cb):
                pass
        p = upet.Participant({json.dumps(config)}, store=Store({str(root)!r}), client=Client())
        gc.collect()
        print(len(p._buf), gc.mem_alloc())
    """, tmp=tmp_path)
    length, live = out.split()[:2]
    return int(length), int(live)


def test_the_message_buffer_is_the_configured_size_and_the_only_one(tmp_path):
    default_len, default = construct(tmp_path, None)
    small_len, small = construct(tmp_path, 1024)
    large_len, large = construct(tmp_path, 8000)
    assert (default_len, small_len, large_len) == (3912, 1024, 8000)
    # a smaller maximum frees the rest of the default buffer; a larger one replaces it
    assert small <= default - (3912 - 1024) + 256, (small, default)
    assert large <= default + (8000 - 3912) + 256, (large, default)
