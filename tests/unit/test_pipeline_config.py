"""Pipeline file errors name the file, the stage and the field: unknown kind, bad references, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_pipeline
from pipeline.runner import prepare
from rlvr.config import ConfigError

GRPO = '{ train = { steps = 2 } }'


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pipe.toml"
    path.write_text(body)
    return path


def stage(name: str, kind: str = "grpo", model: str | None = None, config: str = GRPO) -> str:
    line = f'\n[[stages]]\nname = "{name}"\nkind = "{kind}"\nconfig = {config}\n'
    return line + (f'model = "{model}"\n' if model else "")


def error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(tmp_path, body))
    return str(e.value)


def test_a_valid_pipeline_resolves_names_and_defaults(tmp_path: Path) -> None:
    body = stage("a", model="tiny") + stage("b", model="@previous") + stage("c", model="@a")
    cfg = load_pipeline(write(tmp_path, body))
    assert [s.name for s in cfg.stages] == ["a", "b", "c"]
    assert cfg.run_dir == Path("runs/pipe") and cfg.name == "pipe"


def test_unknown_stage_kind(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", kind="rlhf"))
    assert "pipe.toml" in msg and "stages.0.kind" in msg and "unknown stage kind 'rlhf'" in msg


def test_reference_to_a_missing_stage(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a") + stage("b", model="@nope"))
    assert "stages.1 (b).model" in msg and "'@nope' refers to no stage" in msg


def test_previous_in_the_first_stage(tmp_path: Path) -> None:
    assert '"@previous" in the first stage refers to nothing' in error(tmp_path, stage("a", model="@previous"))


def test_cycle(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", model="@b") + stage("b", model="@a"))
    assert "cycle" in msg and ("a -> b -> a" in msg or "b -> a -> b" in msg)


def test_self_reference_is_a_cycle(tmp_path: Path) -> None:
    assert "cycle: a -> a" in error(tmp_path, stage("a", model="@a"))


def test_forward_reference(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", model="@b") + stage("b", model="tiny"))
    assert "stages.0 (a).model" in msg and "later stage" in msg


def test_duplicate_names(tmp_path: Path) -> None:
    assert "duplicate stage name(s): a" in error(tmp_path, stage("a") + stage("a"))


def test_stage_config_errors_name_the_stage_and_field(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", config='{ train = { stepz = 2 } }'))
    assert "stages.0 (a, kind grpo)" in msg and "train.stepz" in msg


def test_missing_stage_config_file(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", config='"nowhere.toml"'))
    assert "stages.0 (a, kind grpo)" in msg and "nowhere.toml: no such config file" in msg


def test_unavailable_kind_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import stages

    monkeypatch.setitem(stages.KINDS, "export", stages.StageKind("export", "no_such_module_rlvr"))
    msg = error(tmp_path, stage("a") + stage("b", kind="export", model="@a", config="{}"))
    assert "stage kind export is not available" in msg


def test_student_select_is_checked(tmp_path: Path) -> None:
    distill = '{ student_layers = 2, student_select = "%s" }'
    msg = error(tmp_path, stage("a", model="tiny") + stage("d", "distill", "@a", distill % "best"))
    assert "stages.1 (d, kind distill)" in msg and "student_select = 'best'" in msg and "greedy" in msg
    msg = error(tmp_path, stage("a", model="tiny") + stage("d", "distill", "@a", '{ student_select = "greedy" }'))
    assert "student_select needs student_layers" in msg
    load_pipeline(write(tmp_path, stage("a", model="tiny") + stage("d", "distill", "@a", distill % "greedy")))


def test_file_config_with_overrides_and_hashes(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text("[train]\nsteps = 7\nprompts_per_step = 3\n")
    body = (f'run_dir = "{tmp_path / "run"}"\n[[stages]]\nname = "a"\nkind = "grpo"\nmodel = "tiny"\n'
            f'config = "{tmp_path / "g.toml"}"\n[stages.overrides]\ntrain.steps = 2\n' + stage("b", model="@a"))
    cfg = load_pipeline(write(tmp_path, body))
    prepared = prepare(cfg)
    assert prepared[0].table == {"train": {"steps": 2, "prompts_per_step": 3}}
    assert prepared[1].deps == ["a"]
    # A change upstream changes every downstream hash.
    cfg2 = load_pipeline(write(tmp_path, body.replace("steps = 2", "steps = 3")))
    prepared2 = prepare(cfg2)
    assert prepared2[0].digest != prepared[0].digest and prepared2[1].digest != prepared[1].digest
    assert prepare(load_pipeline(write(tmp_path, body)))[1].digest == prepared[1].digest


def test_command_line_overrides_of_the_pipeline_file(tmp_path: Path) -> None:
    cfg = load_pipeline(write(tmp_path, stage("a")), [f"run_dir={tmp_path / 'elsewhere'}"])
    assert cfg.run_dir == tmp_path / "elsewhere"


def test_models_list_is_for_eval_stages(tmp_path: Path) -> None:
    msg = error(tmp_path, stage("a", model="tiny") + '\n[[stages]]\nname = "b"\nkind = "grpo"\nmodels = ["@a"]\n')
    assert "stages.1" in msg and "only an eval stage compares several models" in msg
