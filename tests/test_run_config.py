"""Run files: every setting of a run in TOML or JSON, read into the typed configs."""

import json
import tomllib
from pathlib import Path

import pytest

from engine.train.footage_stage import FootageTrainConfig
from engine.train.parallel import ParallelConfig
from engine.train.recipe import PRESETS, Preset, preset_toml
from engine.train.run_config import apply_overrides, build, dump_toml, read_file

PRESET_FILES = Path(__file__).parent.parent / "engine" / "train" / "presets"


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_shipped_presets_are_written_as_run_files(name):
    """engine/train/presets/NAME.toml is the preset, field for field (regenerate with
    `python -m engine train --preset NAME --print-config > engine/train/presets/NAME.toml`)."""
    text = (PRESET_FILES / f"{name}.toml").read_text()
    assert text == preset_toml(PRESETS[name], name)
    assert build(Preset, tomllib.loads(text)["recipe"]) == PRESETS[name]


def test_overrides_reach_nested_fields_with_their_types():
    base = tomllib.loads(preset_toml(PRESETS["tiny"]))
    data = apply_overrides(base, ["recipe.t2v_train.joint_steps=9", "recipe.t2v_train.lr=2e-4", "recipe.notes=hi"])
    p = build(Preset, data["recipe"])
    assert p.t2v_train.joint_steps == 9 and p.t2v_train.lr == 2e-4 and p.notes == "hi"
    assert p.tae == PRESETS["tiny"].tae  # the rest as it was
    assert base["recipe"]["t2v_train"]["joint_steps"] == 4  # the input is not changed


def test_a_misspelt_setting_is_an_error_that_lists_the_real_ones():
    with pytest.raises(ValueError, match=r"footage\.stepz is not a setting of FootageTrainConfig.*steps"):
        build(FootageTrainConfig, {"stepz": 3}, "footage.")
    with pytest.raises(ValueError, match=r"parallel\.mod is not a setting of ParallelConfig"):
        build(FootageTrainConfig, {"parallel": {"mod": "ddp"}}, "footage.")
    with pytest.raises(ValueError, match="parallel mode must be one of ddp, fsdp"):
        build(FootageTrainConfig, {"parallel": {"mode": "zero3"}})
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        apply_overrides({}, ["footage.steps"])


def test_toml_and_json_run_files_read_the_same(tmp_path):
    cfg = FootageTrainConfig(
        latents="lat", model="m", steps=7, parallel=ParallelConfig(mode="fsdp", checkpointing=True)
    )
    (tmp_path / "run.toml").write_text(dump_toml({"footage": cfg}))
    (tmp_path / "run.json").write_text(json.dumps({"footage": tomllib.loads(dump_toml(cfg))}))
    for f in ("run.toml", "run.json"):
        assert build(FootageTrainConfig, read_file(tmp_path / f)["footage"]) == cfg
    (tmp_path / "bad.toml").write_text("[footage\nsteps = 3")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        read_file(tmp_path / "bad.toml")
