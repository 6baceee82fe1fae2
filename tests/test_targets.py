"""Target profiles: schema, search path, user profiles, error messages, `mtedge targets`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from toolchain.cli import main
from toolchain.targets.profile import (ENV_PATH, TargetError, builtin_dir, list_profiles, load_profile,
                                       profile_schema)

EXPECTED = {"jetson-orin-nano-4gb", "jetson-orin-nano-8gb", "jetson-orin-nx-8gb", "jetson-orin-nx-16gb",
            "jetson-agx-orin-32gb", "jetson-agx-orin-64gb", "jetson-xavier-nx", "jetson-agx-xavier", "host-cpu"}
BUILTIN = sorted(builtin_dir().glob("*.toml"))


def test_every_expected_profile_ships() -> None:
    assert {p.stem for p in BUILTIN} == EXPECTED


@pytest.mark.parametrize("path", BUILTIN, ids=lambda p: p.stem)
def test_profile_validates_against_schema(path: Path) -> None:
    data = tomllib.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(profile_schema())
    jsonschema.validate(data, profile_schema())
    assert data["name"] == path.stem
    prof = load_profile(path.stem)
    assert prof.peak_ops_per_s("int8") >= prof.peak_ops_per_s("fp16") >= prof.peak_ops_per_s("fp32") > 0
    assert "sparse" not in json.dumps(data["peak"])  # dense figures only
    if prof.backend == "tensorrt":
        assert "data sheet" in path.read_text().lower() or "[DS]" in path.read_text()  # figures cite a source


def test_versions_recorded_per_family() -> None:
    profiles = list_profiles()
    for name, p in profiles.items():
        if "orin" in name:
            assert (p.software["tensorrt"], p.software["cuda"], p.software["jetpack"][0]) == ("10.3", "12.6", "6")
            assert p.buildable() == (True, "")
        if "xavier" in name:
            assert p.software["tensorrt"].startswith("8.5") and p.software["cuda"] == "11.4"
            assert p.software["jetpack"].startswith("5.1")
            ok, why = p.buildable()
            assert not ok and "TensorRT >= 10" in why
    assert profiles["jetson-orin-nano-8gb"].dla_cores == 0 and profiles["jetson-agx-orin-64gb"].dla_cores == 2
    assert profiles["jetson-orin-nano-8gb"].channel_multiple("fp16") == 8
    assert profiles["jetson-orin-nano-8gb"].channel_multiple("mixed") == 32


def test_unknown_target_lists_known_ones() -> None:
    with pytest.raises(TargetError) as e:
        load_profile("orin-nano")
    msg = str(e.value)
    assert "unknown target 'orin-nano'" in msg and "host-cpu" in msg and "jetson-agx-orin-32gb" in msg
    assert "<name>.toml" in msg and "--profile-dir" in msg


def _user_profile(tmp_path: Path, name: str = "my-board", **edits: str) -> Path:
    text = (builtin_dir() / "jetson-orin-nano-8gb.toml").read_text().replace(
        'name = "jetson-orin-nano-8gb"', f'name = "{name}"')
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text(text)
    return d


def test_user_profile_dir_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _user_profile(tmp_path)
    assert load_profile("my-board", [d]).builtin is False
    with pytest.raises(TargetError):
        load_profile("my-board")
    monkeypatch.setenv(ENV_PATH, str(d))
    profiles = list_profiles()
    assert "my-board" in profiles and EXPECTED <= set(profiles)


def test_user_profile_shadows_builtin(tmp_path: Path) -> None:
    d = _user_profile(tmp_path, name="host-cpu")
    assert load_profile("host-cpu", [d]).backend == "tensorrt"


@pytest.mark.parametrize("old,new,needle", [
    ("bandwidth_gbs = 68.0", 'bandwidth_gbs = "fast"', "field 'memory.bandwidth_gbs' is 'fast' (str); expected a number"),
    ("sm_count = 8", "sm_count = 8.5", "field 'gpu.sm_count' is 8.5 (float); expected an integer"),
    ('backend = "tensorrt"', 'backend = "tensorflow"', "field 'backend' is 'tensorflow' (str); expected one of"),
    ("total_mb = 8192\n", "", "missing field 'memory.total_mb' (an integer"),
    ("[power]", "colour = 1\n[power]", "unknown field 'channels.colour'"),
    ('tensorrt = "10.3"\n', "", "missing field 'software.tensorrt'"),
])
def test_bad_user_field_names_file_field_and_type(tmp_path: Path, old: str, new: str, needle: str) -> None:
    d = _user_profile(tmp_path, **{old: new})
    with pytest.raises(TargetError) as e:
        load_profile("my-board", [d])
    assert str(d / "my-board.toml") in str(e.value)
    assert needle in str(e.value)


def test_name_must_match_file(tmp_path: Path) -> None:
    d = _user_profile(tmp_path)
    (d / "other.toml").write_text((d / "my-board.toml").read_text())
    with pytest.raises(TargetError, match="rename the file to my-board.toml"):
        load_profile("other", [d])


def test_missing_profile_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="is not a directory"):
        list_profiles([tmp_path / "nope"])


def test_cli_targets_json_and_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["targets", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == EXPECTED
    xavier = next(r for r in rows if r["name"] == "jetson-agx-xavier")
    assert xavier["buildable"] is False and "TensorRT" in xavier["why_not"]
    d = _user_profile(tmp_path)
    assert main(["targets", "--profile-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "jetson-agx-orin-64gb" in out and "my-board" in out and "TensorRT < 10" in out


def test_cli_bad_profile_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = _user_profile(tmp_path, **{"sm_count = 8": 'sm_count = "eight"'})
    assert main(["targets", "--profile-dir", str(d)]) == 2
    assert "gpu.sm_count" in capsys.readouterr().err
