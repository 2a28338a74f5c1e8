"""upet.store's round file: what Store.save_round writes, upet.boot reads back."""

import json

from .conftest import run_upy


def test_saved_round_is_json_with_bytes_as_hex_and_comes_back(tmp_path):
    state = {"params": bytes(range(136)), "msg_id": 65535, "sum_sig": bytes(64), "phase": "update",
             "sending": True, "chunk": 3, "scalar": 0.25, "ephm_sk": b"", "note": 'a "quoted" \\ text'}
    out = run_upy(f"""
        from upet.store import Store
        from upet.boot import saved_round
        store = Store({str(tmp_path)!r})
        print(saved_round(store))  # nothing saved yet
        store.save_round({{}})
        print(saved_round(store))
        state = {state!r}
        store.save_round(state)
        back = saved_round(store)
        for k in state:
            v = state[k]
            print(k, (bytes.fromhex(back[k]) if isinstance(v, bytes) else back[k]) == v)
        open(store.path("round.json"), "w").write('{{"params": "00')  # damaged
        print(saved_round(store))
    """, tmp=tmp_path)
    lines = out.split("\n")
    assert lines[:2] == ["None", "{}"], out
    assert sorted(lines[2:2 + len(state)]) == sorted(f"{k} True" for k in state), out
    assert lines[2 + len(state)] == "None", out  # a file that is not JSON: no saved round


def test_saved_round_file_is_plain_json(tmp_path):
    run_upy(f"""
        from upet.store import Store
        Store({str(tmp_path)!r}).save_round({{"params": bytes([1, 2, 255]), "chunk": 0, "sending": None}})
    """, tmp=tmp_path)
    assert json.loads((tmp_path / "round.json").read_text()) == {"params": "0102ff", "chunk": 0, "sending": None}
