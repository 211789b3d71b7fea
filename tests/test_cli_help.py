"""Every script answers --help quickly, without importing torch, unsloth or bitsandbytes."""

import pytest

from tests.conftest import ROOT, help_probe, load_script

SCRIPTS = [
    "train.py",
    "eval_generate.py",
    "eval_score.py",
    "eval_mmlu.py",
    "compare_ifeval.py",
    "compare_mmlu.py",
    "eval_wandb.py",
    "inference.py",
    "export.py",
    "merge_shards.py",
    "run_pipeline.py",
    "tools/carry_pieces.py",
    "bench/loader_parity.py",
    "bench/precision_report.py",
    "bench/train_throughput.py",
    "bench/generate_throughput.py",
    "bench/score_speed.py",
    "bench/cli_bench.py",
    "bench/study_report.py",
    "bench/profile_generate.py",
    "bench/decode_parity.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_is_light(script):
    done, loaded = help_probe(script, ("torch", "unsloth", "bitsandbytes"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert loaded == "LOADED []"


# train.py, eval_generate.py, eval_mmlu.py and inference.py build their parsers from settings dataclasses.
HAND_WRITTEN_PARSERS = ["eval_score.py", "compare_ifeval.py", "compare_mmlu.py", "eval_wandb.py", "run_pipeline.py"]


@pytest.mark.parametrize("script", HAND_WRITTEN_PARSERS)
def test_every_option_says_what_it_is(script):
    parser = load_script(ROOT / script, script.removesuffix(".py")).make_parser()
    for action in parser._actions:
        if action.option_strings:
            described = (action.help or "").split("(default")[0].strip()
            assert described, f"{script} {action.option_strings[0]} has no help text beyond its default"


def test_run_pipeline_needs_no_smoke_flag_for_its_only_mode():
    run_pipeline = load_script(ROOT / "run_pipeline.py", "run_pipeline")
    plain, flagged = (run_pipeline.make_parser().parse_args(argv) for argv in ([], ["--smoke"]))
    assert {**vars(plain), "smoke": True} == vars(flagged)


def settings_classes():
    import eval_mmlu
    import inference
    import train
    from sfteval.ifeval.run import RunConfig
    from sfteval.model.export import ExportSettings
    from sfteval.model.settings import ModelSettings
    from sfteval.train.trainer import TrainSettings

    return [
        TrainSettings,
        train.TrainCommand,
        RunConfig,
        ModelSettings,
        eval_mmlu.MmluSettings,
        inference.ChatSettings,
        ExportSettings,
    ]


def test_every_generated_option_has_help():
    import dataclasses

    for dtype in settings_classes():
        for field in dataclasses.fields(dtype):
            assert field.metadata.get("help", "").strip(), f"{dtype.__name__}.{field.name} has no help text"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_names_no_hardware_timing(script):
    import re

    done, _ = help_probe(script, ())
    timing = re.search(r"\b(H100|H200|A100)\b.*\d|\d[\d,.]* ?(tokens/s|min\b|ms/step)", done.stdout)
    assert timing is None, f"{script} --help names a measured figure: {timing.group(0)!r}"
