"""upet.transient: code a participant runs rarely is in the heap only while it runs."""

import shutil

from tests.firmware.conftest import firmware_path, run_upy


def test_a_module_loaded_for_one_call_leaves_the_heap(tmp_path):
    (tmp_path / "lib" / "upet").mkdir(parents=True)
    for init in (firmware_path() / "upet").glob("__init__.*"):  # upet itself, beside two modules of the test's
        shutil.copy(init, tmp_path / "lib" / "upet")
    (tmp_path / "lib" / "upet" / "rare.py").write_text(
        "BIG = bytearray(20000)  # module data: freed with the module\n"
        "def twice(x):\n    return 2 * x\n")
    (tmp_path / "lib" / "upet" / "kept.py").write_text("def twice(x):\n    return 2 * x\n")
    out = run_upy(f"""
        import gc, sys
        sys.path[:] = [{str(tmp_path / "lib")!r}]
        import upet
        gc.collect()
        before = gc.mem_alloc()
        print(upet.transient("rare", "twice", 21))
        gc.collect()
        print("loaded after the call:", "upet.rare" in sys.modules, "rare" in upet.__dict__)
        print("heap kept under 2 KB:", gc.mem_alloc() - before < 2048)
        import upet.kept
        print(upet.transient("kept", "twice", 4))
        print("resident module stays:", sys.modules.get("upet.kept") is upet.kept)
        try:
            upet.transient("rare", "missing")
        except AttributeError:
            print("unknown function: AttributeError, and unloaded:", "upet.rare" not in sys.modules)
    """, tmp=tmp_path)
    assert out.split("\n")[:5] == [
        "42",
        "loaded after the call: False False",
        "heap kept under 2 KB: True",
        "8",
        "resident module stays: True",
    ]
    assert "unknown function: AttributeError, and unloaded: True" in out


def test_a_participant_keeps_no_start_up_code(tmp_path):
    import json
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "config.json").write_text(json.dumps(
        {"broker": {"host": "127.0.0.1", "port": 1883}, "prefix": "pet"}))
    out = run_upy(f"""
        import sys, upet
        from upet.store import Store
        p = upet.Participant(store=Store({str(tmp_path / "dev")!r}))
        print(sorted(m for m in sys.modules if m.startswith("upet.")
                     and m.split(".")[1] in ("boot", "sortition", "seeds", "global_model")))
        print(len(p.pk), p.phase, type(p.client).__name__)
    """, tmp=tmp_path)
    assert out.split("\n")[:2] == ["[]", "32 awaiting MQTTClient"]
    assert len((tmp_path / "dev" / "key").read_bytes()) == 64  # made on first boot
