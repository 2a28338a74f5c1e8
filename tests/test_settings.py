"""Coordinator settings: defaults, TOML, PET__* overrides, validation and the CLI."""

import inspect
import os
import subprocess
import sys
import tomllib
import types
from dataclasses import replace
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.settings import (Count, MaskSettings, Settings, SettingsError, Time,
                                  load_settings, parse_mask_config)
from pet.mask.config import DEFAULT_MCU_CONFIG, MaskConfig
from pet.multipart import Reassembler

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "coordinator.toml"


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "coordinator.toml"
    path.write_text(text)
    return path


def error(tmp_path=None, text: str | None = None, **env) -> SettingsError:
    """The SettingsError raised by a file (when text is given) and/or PET__ variables."""
    path = write(tmp_path, text) if text is not None else None
    with pytest.raises(SettingsError) as info:
        load_settings(path, env=env)
    return info.value


# -- defaults, file, environment ----------------------------------------------------------------

def test_defaults_without_a_file():
    s = load_settings(env={})
    assert s == Settings()
    assert s.api.bind == "127.0.0.1:8081" and (s.api.host, s.api.port) == ("127.0.0.1", 8081)
    assert s.api.token == "" and s.api.max_body_bytes == 16777216 and s.api.workers == 2
    assert s.pet.sum.prob == 0.5 and s.pet.sum.count == Count(1, 100)
    assert s.pet.sum.time == Time(5.0, 3600.0) and s.pet.sum.dropout_margin == 0
    assert s.pet.update.prob == 0.9 and s.pet.update.count == Count(3, 1000)
    assert s.pet.update.time == Time(10.0, 3600.0)
    assert s.pet.sum2.count == Count(1, 100) and s.pet.sum2.time == Time(5.0, 3600.0)
    assert s.mask.config == DEFAULT_MCU_CONFIG and s.mask.name == "W32/F32/b2/m10"
    assert s.model.length == 650
    assert (s.store.kind, s.store.data_dir, s.store.path, s.store.url, s.store.prefix, s.store.resume) == (
        "sqlite", "pet-data", "pet-data/coordinator.db", "redis://127.0.0.1:6379/0", "pet:", True)
    assert s.history.keep == 10 and s.log.level == "info"


def test_multipart_defaults_are_the_reassemblers():
    params = inspect.signature(Reassembler).parameters
    m = Settings().multipart
    for name in ("max_message_bytes", "max_chunks", "max_age", "max_pending_messages",
                 "max_pending_bytes"):
        assert getattr(m, name) == params[name].default


def test_full_file(tmp_path):
    path = write(tmp_path, """
[api]
bind = "0.0.0.0:9000"
token = "s3cret"
max_body_bytes = 1000000
workers = 4

[pet.sum]
prob = 0.01
count = { min = 2, max = 50 }
time = { min = 1, max = 60 }
dropout_margin = 3

[pet.update]
prob = 0.1
count = { min = 10, max = 1000 }
time = { min = 2.5, max = 120 }

[pet.sum2]
count = { min = 2, max = 40 }
time = { min = 1, max = 60 }

[mask]
config = "Prime/F32/B0/M3"

[model]
length = 4

[store]
kind = "redis"
url = "redis://redis:6379/1"
prefix = "test:"
resume = false

[history]
keep = 3

[multipart]
max_message_bytes = 1000
max_chunks = 10
max_age = 30
max_pending_messages = 5
max_pending_bytes = 5000

[log]
level = "debug"
""")
    s = load_settings(path, env={})
    assert (s.api.host, s.api.port, s.api.token, s.api.max_body_bytes, s.api.workers) == (
        "0.0.0.0", 9000, "s3cret", 1000000, 4)
    assert s.pet.sum.prob == 0.01 and s.pet.sum.count == Count(2, 50)
    assert s.pet.sum.time == Time(1.0, 60.0) and isinstance(s.pet.sum.time.min, float)
    assert s.pet.sum.dropout_margin == 3 and s.pet.sum_count_min == 5
    assert s.pet.update.count == Count(10, 1000) and s.pet.update.time == Time(2.5, 120.0)
    assert s.pet.sum2.count == Count(2, 40)
    assert s.mask.config == MaskConfig.xaynet("Prime", "F32", "B0", "M3")
    assert s.model.length == 4
    assert (s.store.kind, s.store.url, s.store.prefix, s.store.resume) == (
        "redis", "redis://redis:6379/1", "test:", False)
    assert s.history.keep == 3 and s.multipart.max_age == 30.0 and s.log.level == "debug"


def test_partial_table_keeps_the_other_defaults(tmp_path):
    s = load_settings(write(tmp_path, "[pet.sum]\ncount = { min = 4 }\n"), env={})
    assert s.pet.sum.count == Count(4, 100) and s.pet.sum.prob == 0.5


def test_example_file_loads():
    s = load_settings(EXAMPLE, env={})
    assert s.validate() is s


def test_env_overrides(tmp_path):
    path = write(tmp_path, "[pet.sum]\nprob = 0.2\n[api]\nbind = \"127.0.0.1:1\"\n")
    s = load_settings(path, env={
        "PET__PET__SUM__PROB": "0.01",           # beats the file
        "PET__STORE__KIND": "redis",             # plain text
        "PET__PET__UPDATE__COUNT__MIN": "100",   # nested, an integer
        "pet__api__bind": "0.0.0.0:8081",        # any case
        "PET__Store__Resume": "false",           # boolean
        "PET__PET__SUM2__COUNT": "{ min = 2, max = 3 }",  # a whole table
        "PET__MASK__CONFIG": "Prime/F32/B0/M6",
        "PET__LOG__LEVEL": '"warning"',          # a quoted string
        "OTHER": "ignored", "PET_SINGLE": "ignored",
    })
    assert s.pet.sum.prob == 0.01 and s.store.kind == "redis" and s.store.resume is False
    assert s.pet.update.count == Count(100, 1000) and s.api.bind == "0.0.0.0:8081"
    assert s.pet.sum2.count == Count(2, 3) and s.mask.name == "Prime/F32/B0/M6"
    assert s.log.level == "warning"


def test_the_sqlite_file_goes_in_the_data_dir_unless_path_is_given(tmp_path):
    assert load_settings(env={"PET__STORE__DATA_DIR": "/srv/pet"}).store.path == "/srv/pet/coordinator.db"
    explicit = write(tmp_path, '[store]\npath = "elsewhere.db"\n')
    s = load_settings(explicit, env={"PET__STORE__DATA_DIR": "/srv/pet"})
    assert (s.store.data_dir, s.store.path) == ("/srv/pet", "elsewhere.db")
    assert load_settings(env={"PET__STORE__PATH": ":memory:"}).store.path == ":memory:"


def test_flags_win_over_file_and_env(tmp_path):
    path = write(tmp_path, '[store]\ndata_dir = "from-file"\n[log]\nlevel = "error"\n')
    s = load_settings(path, env={"PET__STORE__DATA_DIR": "from-env", "PET__LOG__LEVEL": "warning"},
                      flags={"store.data_dir": ("--data-dir", "from-flag")})
    assert (s.store.data_dir, s.store.path, s.log.level) == (
        "from-flag", "from-flag/coordinator.db", "warning")
    with pytest.raises(SettingsError) as info:
        load_settings(env={"PET__STORE__URL": "redis://fine:6379"},
                      flags={"store.kind": ("--redis", "redis"), "store.url": ("--redis", "http://x")})
    assert str(info.value).startswith("command-line option --redis: store.url must start with redis://")


def test_env_numbers_for_string_keys_stay_text():
    assert load_settings(env={"PET__API__TOKEN": "123"}).api.token == "123"
    assert load_settings(env={"PET__API__TOKEN": ""}).api.token == ""


def test_env_errors_name_the_variable():
    e = error(PET__PET__UPDATE__COUNT__MIN="1")
    assert str(e) == ("environment variable PET__PET__UPDATE__COUNT__MIN: "
                      "pet.update.count.min must be >= 3, got 1")
    assert e.key == "pet.update.count.min"
    assert "did you mean pet.sum.prob?" in str(error(PET__PET__SUM__PORB="0.1"))
    assert "did you mean api?" in str(error(PET__APII__BIND="x"))
    assert "api.bind takes no sub-keys" in str(error(PET__API__BIND__PORT="1"))
    assert "known keys: api, pet, mask" in str(error(PET__NOTHING="1"))
    assert "pet.sum.prob must be a number, got 'high'" in str(error(PET__PET__SUM__PROB="high"))


def test_file_errors_name_the_file(tmp_path):
    e = error(tmp_path, "[pet.update]\ncount = { min = 1, max = 10 }\n")
    assert str(e) == f"{tmp_path / 'coordinator.toml'}: pet.update.count.min must be >= 3, got 1"
    assert e.source == str(tmp_path / "coordinator.toml")
    assert "not valid TOML" in str(error(tmp_path, "[api\n"))
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", env={})


def test_cross_rule_names_where_the_changed_key_came_from(tmp_path):
    e = error(tmp_path, "[pet.update]\ncount = { max = 1000 }\n", PET__MASK__CONFIG="W32/F32/b2/m8")
    assert str(e).startswith(f"{tmp_path / 'coordinator.toml'}: pet.update.count.max is 1000")
    e = error(PET__MASK__CONFIG="W32/F32/b2/m8")
    assert str(e).startswith("environment variable PET__MASK__CONFIG: pet.update.count.max")


# -- unknown keys and wrong types ---------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("[pet.sum]\nporb = 0.1\n", "unknown key pet.sum.porb (did you mean pet.sum.prob?)"),
    ("[apii]\nbind = \"x:1\"\n", "unknown key apii (did you mean api?)"),
    ("[pet.sum]\ncount = { min = 1, mxa = 2 }\n",
     "unknown key pet.sum.count.mxa (did you mean pet.sum.count.max?)"),
    ("[store]\nzzz = 1\n", "unknown key store.zzz; known keys in store: kind, data_dir, path, url"),
])
def test_unknown_keys(tmp_path, text, message):
    assert message in str(error(tmp_path, text))


@pytest.mark.parametrize("text, message", [
    ('[pet.sum]\nprob = "high"\n', "pet.sum.prob must be a number, got 'high' (string)"),
    ("[pet.sum]\nprob = true\n", "pet.sum.prob must be a number, got True (boolean)"),
    ("[pet.update]\ncount = { min = 3.5 }\n",
     "pet.update.count.min must be an integer, got 3.5 (float)"),
    ("[pet.sum]\ncount = 5\n", "pet.sum.count must be a table, got 5 (integer)"),
    ("[api]\nbind = 8081\n", "api.bind must be a string, got 8081 (integer)"),
    ('[store]\nresume = "yes"\n', "store.resume must be true or false, got 'yes' (string)"),
    ("[mask]\nconfig = 3\n", "mask.config must be a string naming a mask config, got 3"),
    ("pet = 1\n", "pet must be a table"),
])
def test_wrong_types(tmp_path, text, message):
    assert message in str(error(tmp_path, text))


# -- validation: one failing example per rule ----------------------------------------------------

@pytest.mark.parametrize("text, key, message", [
    ('[api]\nbind = "localhost"\n', "api.bind", "must be host:port"),
    ('[api]\nbind = "::1:8081"\n', "api.bind", "IPv6 host needs brackets"),
    ('[api]\nbind = "host:99999"\n', "api.bind", "port must be a number from 0 to 65535"),
    ('[api]\ntoken = "a b"\n', "api.token", "must not contain whitespace"),
    ("[api]\nmax_body_bytes = 100\n", "api.max_body_bytes", "must be >= 185"),
    ("[api]\nworkers = 0\n", "api.workers", "must be >= 1, got 0"),
    ("[pet.sum]\nprob = 0\n", "pet.sum.prob", "must be > 0 and < 1, got 0.0"),
    ("[pet.sum]\nprob = 1\n", "pet.sum.prob", "must be > 0 and < 1, got 1.0"),
    ("[pet.update]\nprob = 0\n", "pet.update.prob", "must be > 0 and <= 1, got 0.0"),
    ("[pet.update]\nprob = 1.5\n", "pet.update.prob", "must be > 0 and <= 1, got 1.5"),
    ("[pet.sum]\ncount = { min = 0 }\n", "pet.sum.count.min", "must be >= 1, got 0"),
    ("[pet.update]\ncount = { min = 2 }\n", "pet.update.count.min", "must be >= 3, got 2"),
    ("[pet.sum2]\ncount = { min = 0 }\n", "pet.sum2.count.min", "must be >= 1, got 0"),
    ("[pet.sum]\ncount = { min = 5, max = 4 }\n", "pet.sum.count.min",
     "pet.sum.count.min must be <= pet.sum.count.max, got 5 > 4"),
    ("[pet.update]\ncount = { min = 50, max = 40 }\n", "pet.update.count.min", "<= pet.update.count.max"),
    ("[pet.sum2]\ncount = { min = 5, max = 4 }\n", "pet.sum2.count.min", "<= pet.sum2.count.max"),
    ("[pet.sum]\ntime = { min = -1 }\n", "pet.sum.time.min", "must be >= 0, got -1.0"),
    ("[pet.sum]\ntime = { min = 10, max = 5 }\n", "pet.sum.time.min", "<= pet.sum.time.max"),
    ("[pet.update]\ntime = { min = 10, max = 5 }\n", "pet.update.time.min", "<= pet.update.time.max"),
    ("[pet.sum2]\ntime = { min = 10, max = 5 }\n", "pet.sum2.time.min", "<= pet.sum2.time.max"),
    ("[pet.sum2]\ntime = { max = inf }\n", "pet.sum2.time.max", "finite number of seconds"),
    ("[pet.sum]\ncount = { max = 5 }\n[pet.sum2]\ncount = { min = 6, max = 7 }\n",
     "pet.sum2.count.min", "pet.sum2.count.min must be <= pet.sum.count.max, got 6 > 5"),
    ("[pet.sum]\ncount = { max = 5 }\n[pet.sum2]\ncount = { min = 1, max = 7 }\n",
     "pet.sum2.count.max", "pet.sum2.count.max must be <= pet.sum.count.max, got 7 > 5"),
    ("[pet.sum]\ndropout_margin = -1\n", "pet.sum.dropout_margin", "must be >= 0, got -1"),
    ("[pet.sum]\ncount = { max = 5 }\ndropout_margin = 3\n[pet.sum2]\ncount = { min = 3, max = 5 }\n",
     "pet.sum.dropout_margin", "(3) + pet.sum.dropout_margin (3) = 6 sum participants needed, "
     "more than pet.sum.count.max (5)"),
    ('[mask]\nconfig = "Prime/F32/B0/M3"\n[pet.update]\ncount = { max = 1001 }\n',
     "pet.update.count.max", "pet.update.count.max is 1001 but mask config Prime/F32/B0/M3 can "
     "aggregate at most 1000 models"),
    ("[model]\nlength = 0\n", "model.length", "must be from 1 to 4294967295, got 0"),
    ("[model]\nlength = 4294967296\n", "model.length", "must be from 1 to 4294967295"),
    ('[store]\nkind = "postgres"\n', "store.kind", "must be one of sqlite, redis, got 'postgres'"),
    ('[store]\npath = ""\n', "store.path", "must name the sqlite file"),
    ('[store]\ndata_dir = ""\n', "store.data_dir", "must name a directory"),
    ('[store]\nkind = "redis"\nurl = "http://x"\n', "store.url", "must start with redis://"),
    ("[history]\nkeep = 0\n", "history.keep", "must be >= 1, got 0"),
    ("[multipart]\nmax_message_bytes = 0\n", "multipart.max_message_bytes", "must be >= 1"),
    ("[multipart]\nmax_chunks = 0\n", "multipart.max_chunks", "must be >= 1"),
    ("[multipart]\nmax_chunks = 65537\n", "multipart.max_chunks", "must be <= 65536"),
    ("[multipart]\nmax_age = 0\n", "multipart.max_age", "must be a positive number of seconds"),
    ("[multipart]\nmax_pending_messages = 0\n", "multipart.max_pending_messages", "must be >= 1"),
    ("[multipart]\nmax_pending_bytes = 0\n", "multipart.max_pending_bytes", "must be >= 1"),
    ('[log]\nlevel = "loud"\n', "log.level", "must be one of debug, info, warning, error"),
])
def test_validation(tmp_path, text, key, message):
    e = error(tmp_path, text)
    assert e.key == key
    assert key in str(e) and message in str(e)
    assert str(e).startswith(str(tmp_path / "coordinator.toml") + ": ")


def test_accepted_edges(tmp_path):
    s = load_settings(write(tmp_path, """
[api]
bind = "[::1]:0"
[pet.update]
prob = 1.0
count = { min = 3, max = 3 }
time = { min = 0, max = 0 }
[pet.sum]
count = { min = 1, max = 4 }
dropout_margin = 3
[pet.sum2]
count = { min = 1, max = 4 }
[log]
level = "WARNING"
"""), env={})
    assert (s.api.host, s.api.port) == ("::1", 0) and s.pet.sum_count_min == 4


def test_validate_catches_programmatic_settings():
    s = Settings()
    bad = replace(s, mask=MaskSettings(MaskConfig.mcu(2, 9)))  # 512 models < 1000 updates
    with pytest.raises(SettingsError, match="pet.update.count.max is 1000") as info:
        bad.validate()
    assert info.value.source is None


# -- mask config names --------------------------------------------------------------------------

@pytest.mark.parametrize("name, config", [
    ("Prime/F32/B0/M3", MaskConfig.xaynet("Prime", "F32", "B0", "M3")),
    ("Integer/F64/Bmax/M12", MaskConfig.xaynet("Integer", "F64", "Bmax", "M12")),
    ("power2/i32/b6/m9", MaskConfig.xaynet("Power2", "I32", "B6", "M9")),
    ("W32/F32/b2/m10", MaskConfig.mcu(2, 10)),
    ("W64/F32/b0/m20", MaskConfig.mcu(0, 20, wide=True)),
    ("w32/f32/B4/M8", MaskConfig.mcu(4, 8)),
])
def test_mask_names(name, config):
    assert parse_mask_config(name) == config
    s = load_settings(env={"PET__MASK__CONFIG": name, "PET__PET__UPDATE__COUNT__MAX": "100"})
    assert s.mask.config == config and s.mask.name == config.name


@pytest.mark.parametrize("name, reason", [
    ("Prime/F32/B0", "four parts"),
    ("Prime/F32/B0/M5", "unknown name 'm5'"),
    ("Prime/F16/B0/M3", "unknown name 'f16'"),
    ("W32/F64/b2/m10", "F32 data only"),
    ("W32/F32/2/m10", "b<k> and m<k>"),
    ("W32/F32/b20/m20", "at most 30"),
    ("W128/F32/b2/m10", "unknown name 'w128'"),
])
def test_bad_mask_names(name, reason):
    e = error(PET__MASK__CONFIG=name)
    assert e.key == "mask.config" and reason in str(e)
    assert 'XayNet style "<Integer|Prime|Power2>/' in str(e) and '"W32/F32/b<k>/m<k>"' in str(e)


# -- rendering ----------------------------------------------------------------------------------

def test_to_toml_round_trips_and_hides_the_token(tmp_path):
    s = load_settings(EXAMPLE, env={"PET__API__TOKEN": "s3cret", "PET__MULTIPART__MAX_AGE": "12.5"})
    text = s.to_toml()
    assert "s3cret" not in text and 'token = "***"' in text
    assert tomllib.loads(text)["pet"]["sum"]["count"] == {"min": s.pet.sum.count.min,
                                                          "max": s.pet.sum.count.max}
    again = load_settings(write(tmp_path, text), env={"PET__API__TOKEN": "s3cret"})
    assert again == s
    assert 'token = ""' in Settings().to_toml()


# -- the command line ---------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    """The CLI reads os.environ: start it without PET__ variables."""
    for name in list(os.environ):
        if name.upper().startswith("PET__"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_cli_check(tmp_path, capsys, clean_env):
    assert main(["--check"]) == 0
    assert capsys.readouterr().out == "configuration OK\n"
    assert main(["--check", "--config", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "configuration OK\n"
    bad = write(tmp_path, "[pet.update]\ncount = { min = 1 }\n")
    assert main(["--check", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "pet.update.count.min must be >= 3" in err
    clean_env.setenv("PET__PET__SUM__PORB", "0.1")
    assert main(["--check"]) == 2
    assert "did you mean pet.sum.prob?" in capsys.readouterr().err


def test_cli_print_config(capsys, clean_env):
    clean_env.setenv("PET__API__TOKEN", "s3cret")
    assert main(["--print-config", "--log-level", "debug"]) == 0
    out = capsys.readouterr().out
    assert 'token = "***"' in out and 'level = "debug"' in out and "s3cret" not in out
    tomllib.loads(out)


def test_cli_help_explains_env_overrides(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "PET__<SECTION>__<KEY>" in out and "PET__PET__SUM__PROB=0.01" in out
    for option in ("--config FILE", "--port N", "--data-dir DIR", "--redis URL", "--log-level LEVEL",
                   "--check", "--print-config"):
        assert f" {option}" in out


def effective(capsys, *argv) -> dict:
    assert main(["--print-config", *argv]) == 0
    return tomllib.loads(capsys.readouterr().out)


def test_cli_options_win_over_file_and_env(tmp_path, capsys, clean_env):
    path = write(tmp_path, '[api]\nbind = "0.0.0.0:1"\n[store]\ndata_dir = "file-dir"\n')
    clean_env.setenv("PET__STORE__DATA_DIR", "env-dir")
    clean_env.setenv("PET__LOG__LEVEL", "error")
    out = effective(capsys, "-c", str(path), "--port", "9000", "--data-dir", "flag-dir",
                    "--log-level", "debug")
    assert out["api"]["bind"] == "0.0.0.0:9000" and out["log"]["level"] == "debug"
    assert (out["store"]["data_dir"], out["store"]["path"]) == ("flag-dir", "flag-dir/coordinator.db")
    url = "redis://10.0.0.5:6380/2"
    store = effective(capsys, "--redis", url)["store"]
    assert (store["kind"], store["url"]) == ("redis", url)
    clean_env.setenv("PET__API__BIND", "[::1]:1")
    assert effective(capsys, "--port", "0")["api"]["bind"] == "[::1]:0"


def test_cli_option_errors(capsys, clean_env):
    with pytest.raises(SystemExit) as info:
        main(["--port", "65536"])
    assert info.value.code == 2 and "--port: must be a number from 0 to 65535" in capsys.readouterr().err
    assert main(["--check", "--redis", "localhost:6379"]) == 2
    assert capsys.readouterr().err == ("pet-coordinator: command-line option --redis: store.url must start "
                                       "with redis://, rediss://, unix://, got 'localhost:6379'\n")


@pytest.fixture
def fake_server(clean_env):
    """Replaces coordinator.server.run; returns the settings it was given."""
    seen = []
    clean_env.setitem(sys.modules, "coordinator.server", types.SimpleNamespace(run=seen.append))
    clean_env.setattr("logging.basicConfig", lambda **kw: seen.append(kw["level"]))
    return seen


def test_cli_without_options_serves_sqlite_in_pet_data(tmp_path, fake_server, clean_env):
    clean_env.chdir(tmp_path)
    assert main([]) == 0
    level, settings = fake_server
    assert level == "INFO" and isinstance(settings, Settings)
    assert (settings.store.kind, settings.store.path) == ("sqlite", "pet-data/coordinator.db")
    assert settings.api.port == 8081 and settings.mask.config == DEFAULT_MCU_CONFIG
    assert (tmp_path / "pet-data").is_dir()


def test_cli_creates_the_data_dir(tmp_path, fake_server, clean_env):
    clean_env.chdir(tmp_path)
    assert main(["--data-dir", str(tmp_path / "a" / "b"), "--log-level", "warning"]) == 0
    assert fake_server[0] == "WARNING" and (tmp_path / "a" / "b").is_dir()
    assert main(["--redis", "redis://127.0.0.1:1/0", "--data-dir", "unused"]) == 0
    assert not (tmp_path / "unused").exists()   # redis needs no directory
    clean_env.setenv("PET__STORE__PATH", ":memory:")
    assert main(["--data-dir", "unused"]) == 0
    assert not (tmp_path / "unused").exists()


def test_cli_reports_a_data_dir_it_cannot_create(tmp_path, capsys, fake_server, clean_env):
    (tmp_path / "file").write_text("")
    assert main(["--data-dir", str(tmp_path / "file" / "dir")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pet-coordinator: cannot create the directory of ") and err.count("\n") == 1
    assert fake_server == []


def test_python_dash_m_coordinator(tmp_path):
    bad = write(tmp_path, "[api]\nworkers = 0\n")
    run = subprocess.run([sys.executable, "-m", "coordinator", "--check", "-c", str(bad)],
                         cwd=ROOT, env={"PATH": os.environ.get("PATH", "")},
                         capture_output=True, text=True)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"pet-coordinator: {bad}: api.workers must be >= 1, got 0\n"


# -- the evaluation hook ------------------------------------------------------------------------

def test_evaluate_names_a_function_that_is_imported_at_start_up(tmp_path):
    assert Settings().model.evaluate == ""
    s = load_settings(env={"PET__MODEL__EVALUATE": "json:loads"})
    assert s.model.evaluate == "json:loads"
    from coordinator.settings import load_hook
    import json
    assert load_hook("json:loads") is json.loads and load_hook("os.path:join") is os.path.join


FORM = 'expected "package.module:function", e.g. "digits.evaluate:accuracy"'


@pytest.mark.parametrize("spec, message", [
    ("json", f"model.evaluate 'json': {FORM}"),
    (":loads", f"model.evaluate ':loads': {FORM}"),
    ("no_such_module_here:score", "model.evaluate 'no_such_module_here:score': cannot import "
                                  "no_such_module_here (No module named 'no_such_module_here')"),
    ("json:no_such_function", "model.evaluate 'json:no_such_function': json has no no_such_function"),
    ("json:__name__", "model.evaluate 'json:__name__': json:__name__ is a str, not a function"),
])
def test_bad_evaluate_hooks(tmp_path, spec, message):
    e = error(tmp_path, f'[model]\nevaluate = "{spec}"\n')
    assert str(e) == f"{tmp_path / 'coordinator.toml'}: {message}" and e.key == "model.evaluate"


def test_an_evaluate_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_hook_module.py").write_text("raise RuntimeError('no data set here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    e = error(PET__MODEL__EVALUATE="broken_hook_module:score")
    assert "importing broken_hook_module failed: RuntimeError: no data set here" in str(e)


def test_cli_evaluate_finds_modules_in_the_working_directory(tmp_path, capsys, clean_env):
    (tmp_path / "site_hook_module.py").write_text("def score(weights):\n    return {'accuracy': 1.0}\n")
    clean_env.chdir(tmp_path)
    clean_env.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model = effective(capsys, "--evaluate", "site_hook_module:score")["model"]
    assert model["evaluate"] == "site_hook_module:score"
    assert main(["--check", "--evaluate", "site_hook_module:nope"]) == 2
    assert capsys.readouterr().err == ("pet-coordinator: command-line option --evaluate: model.evaluate "
                                       "'site_hook_module:nope': site_hook_module has no nope\n")
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--evaluate MODULE:FUNCTION" in capsys.readouterr().out
