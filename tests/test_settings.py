"""Run settings declared once (``segbench.run.settings``): a setting added to ``SETTINGS`` alone reaches the flag,
``RunConfig``, the task, the cell key and the shared-base key, as its ``decides`` says; a setting at its default
leaves every key as it was."""

from __future__ import annotations

import json

import pytest

from segbench.cli import build_parser, main
from segbench.run import settings as run_settings
from segbench.run.folder import RunFolder
from segbench.run.runner import RunConfig, _plan, load_tables
from segbench.run.settings import Setting

TINY = {"synthetic": {"num_images": 10, "size": (48, 40)}}
METHODS = ["otsu", "slic", "slic+crf", "unet"]


@pytest.fixture
def declare(monkeypatch):
    """Add settings to ``SETTINGS`` for one test, as a contributor adds a row to the table."""

    def add(*settings: Setting) -> None:
        monkeypatch.setattr(run_settings, "SETTINGS", [*run_settings.SETTINGS, *settings])

    return add


def _plan_of(tmp_path, **given):
    config = RunConfig(out=tmp_path, datasets=["synthetic"], methods=METHODS, dataset_options=TINY, **given)
    tasks, _ = _plan(config, RunFolder(tmp_path))
    return {t.method: t for t in tasks}


def test_a_fit_setting_reaches_flag_config_task_cell_key_and_base_key(tmp_path, declare):
    before = _plan_of(tmp_path)
    declare(Setting("toy_level", 0, "a toy setting that decides a fit", parse=int, decides="fit"))

    args = build_parser().parse_args(["run", "--toy-level", "3"])
    assert run_settings.from_args(args)["toy_level"] == 3
    assert RunConfig(out=tmp_path, datasets=["synthetic"], methods=["otsu"], toy_level=3).toy_level == 3

    at_default = _plan_of(tmp_path)
    assert {m: t.key for m, t in at_default.items()} == {m: t.key for m, t in before.items()}  # old runs resume
    assert {m: t.base_key for m, t in at_default.items()} == {m: t.base_key for m, t in before.items()}

    changed = _plan_of(tmp_path, toy_level=3)
    for method in METHODS:
        assert changed[method].toy_level == 3 and at_default[method].toy_level == 0  # the task carries it
        assert changed[method].key != at_default[method].key
        assert changed[method].base_key != at_default[method].base_key
    # pipelines on one base still share it under the new value, and only with each other
    assert changed["slic"].base_key == changed["slic+crf"].base_key != changed["otsu"].base_key
    assert changed["slic+crf"].base_cell == changed["slic"].key and changed["slic"].save_base


def test_a_cell_setting_changes_the_cell_key_not_the_base_key(tmp_path, declare):
    declare(Setting("toy_score", "a", "a toy setting that decides scores only", parse=str, decides="cell"))
    plain, scored = _plan_of(tmp_path), _plan_of(tmp_path, toy_score="b")
    for method in METHODS:
        assert scored[method].toy_score == "b"
        assert scored[method].key != plain[method].key
        assert scored[method].base_key == plain[method].base_key


def test_a_run_setting_enters_no_key_and_travels_only_when_the_worker_needs_it(tmp_path, declare):
    declare(Setting("toy_driver", 1, "driver only", parse=int),
            Setting("toy_worker", 1, "the cell needs it", parse=int, worker=True))
    plain, other = _plan_of(tmp_path), _plan_of(tmp_path, toy_driver=2, toy_worker=2)
    for method in METHODS:
        assert other[method].key == plain[method].key and other[method].base_key == plain[method].base_key
        assert "toy_driver" not in other[method].settings and other[method].toy_worker == 2


def test_an_axis_setting_makes_a_cell_per_value(tmp_path, declare):
    declare(Setting("toy_axis", 1, "a toy grid axis", parse=int, decides="fit", axis=True, config_name="toy_axes",
                    label=lambda v: f"toy{v}"))
    args = build_parser().parse_args(["run", "--toy-axis", "1,2"])
    assert run_settings.from_args(args)["toy_axes"] == [1, 2]
    config = RunConfig(out=tmp_path, datasets=["synthetic"], methods=["otsu"], dataset_options=TINY, toy_axes=[1, 2])
    tasks, _ = _plan(config, RunFolder(tmp_path))
    assert [t.toy_axis for t in tasks] == [1, 2]
    assert "toy" not in tasks[0].key.split("-")[0] and "__toy2-" in tasks[1].key  # labelled only off its default
    assert tasks[0].key == _plan_of(tmp_path)["otsu"].key


def test_a_method_option_setting_reaches_the_methods_that_declare_it(tmp_path, declare):
    declare(Setting("toy_epochs", None, "epochs of every deep method", parse=int, decides="fit", method_option="epochs"))
    plain, set_ = _plan_of(tmp_path), _plan_of(tmp_path, toy_epochs=2)
    assert set_["unet"].method_options == {"unet": {"epochs": 2}}
    assert set_["unet"].key != plain["unet"].key and set_["unet"].base_key != plain["unet"].base_key
    for method in ("otsu", "slic", "slic+crf"):  # no such option: the setting cannot change them
        assert set_[method].method_options == {} and set_[method].key == plain[method].key
    explicit = _plan_of(tmp_path, toy_epochs=2, method_options={"unet": {"epochs": 5}})
    assert explicit["unet"].method_options == {"unet": {"epochs": 5}}  # --opt wins


def test_unknown_settings_are_refused_naming_the_declared_ones(tmp_path):
    with pytest.raises(TypeError, match="toy_nothing.*declared in segbench.run.settings"):
        RunConfig(out=tmp_path, datasets=["synthetic"], methods=["otsu"], toy_nothing=1)


def test_every_setting_has_one_flag_and_reaches_environment_json(tmp_path):
    flags = [s.flag for s in run_settings.SETTINGS]
    assert len(flags) == len(set(flags))
    config = RunConfig(out=tmp_path, datasets=["synthetic"], methods=["otsu"], cldice=True)
    recorded = config.to_json()
    assert {s.field for s in run_settings.SETTINGS} <= set(recorded) and recorded["cldice"] is True
    json.dumps(recorded, default=str)


def test_a_run_resumes_with_the_same_keys_after_a_new_setting_is_declared(tmp_path, declare, capsys):
    out = tmp_path / "run"
    argv = ["run", "--datasets", "synthetic", "--methods", "otsu", "--dataset-opt", "synthetic.num_images=10",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    cells = sorted(p.name for p in (out / "cells").iterdir())
    written = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/cell.json")}
    declare(Setting("toy_level", 0, "declared after the run", parse=int, decides="fit"))
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "cells").iterdir()) == cells  # no cell under a new key
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/cell.json")} == written  # none recomputed
    summary, _ = load_tables(out)
    assert len(summary) == 1
