"""--speed continuous (transformers' continuous batching) on the tiny random Llama at fp32:
the same tokens as the batched path, rows stopping at different steps, groups written to the
side file, and a run cut off mid-way resumed to the same responses."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.cli import UserError
from sfteval.ifeval import run as ifeval_run
from sfteval.ifeval import side_file
from tests.conftest import ROOT, load_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCRIPT = ROOT / "eval_generate.py"
LIMIT, SLOTS, NEW_TOKENS, GROUP = 16, 4, 12, 3
# ".condition": the random model's second token for several of the first 16 prompts (found by
# generating), made a stop token so that those rows end by eos after 2 tokens while the others
# run to the length limit; with 4 requests per step the freed places go to waiting prompts.
EXTRA_STOP_ID = 50705

eval_generate = load_script(SCRIPT, "eval_generate")


@pytest.fixture(scope="module")
def stop_model(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama with EXTRA_STOP_ID as a second EOS in its generation config."""
    folder = tmp_path_factory.mktemp("tiny_llama_stops") / "model"
    shutil.copytree(tiny_llama_dir, folder)
    config_path = folder / "generation_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token_id"] = [config["eos_token_id"], EXTRA_STOP_ID]
    config_path.write_text(json.dumps(config))
    return folder


def args(model, shared_data, out, *extra):
    return [
        "--model", str(model), "--precision", "fp32",
        "--prompts", str(shared_data / "ifeval" / "input_data.jsonl"),
        "--limit", str(LIMIT), "--max-new-tokens", str(NEW_TOKENS), "--batch-size", str(SLOTS),
        "--output", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def run_main(argv) -> Path:
    assert eval_generate.main(argv) == 0
    return sorted(Path(argv[argv.index("--output") + 1]).glob("*[0-9].json"))[-1]


def responses(path: Path) -> list[tuple]:
    rows = json.loads(path.read_text())["responses"]
    return [(r["key"], r["response"], r["new_tokens"], r["stop_reason"]) for r in rows]


@pytest.fixture(scope="module")
def batched(stop_model, shared_data, tmp_path_factory) -> Path:
    """The default path: left-padded batches of 4 through model.generate."""
    path = run_main(args(stop_model, shared_data, tmp_path_factory.mktemp("batched")))
    stops = [r[3] for r in responses(path)]
    assert "eos" in stops and "length" in stops, f"the test needs rows ending both ways, got {stops}"
    return path


def test_continuous_gives_the_batched_tokens(batched, stop_model, shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ifeval_run, "CONTINUOUS_GROUP_ROWS", GROUP)
    path = run_main(args(stop_model, shared_data, tmp_path, "--speed", "continuous"))
    assert responses(path) == responses(batched)
    assert {r[3] for r in responses(path)} == {"eos", "length"}
    meta = json.loads(path.read_text())["metadata"]
    gen = meta["generation"]
    assert gen["speed"] == "continuous" and not (gen["static_cache"] or gen["compile"] or gen["gqa_decode"])
    cb = gen["continuous"]
    assert cb["attn_implementation"] == meta["attn_implementation"] == "paged|sdpa"
    assert cb["max_requests_per_batch"] == SLOTS and cb["max_requests_requested"] == SLOTS
    assert meta["sessions"][0]["speed"] == "continuous"
    assert meta["sessions"][0]["speed_reason"].startswith("continuous: ")
    # finished rows reached the side file in groups of GROUP, each with its batch record
    assert meta["batching"]["batches"] == math.ceil(LIMIT / GROUP)
    assert len(meta["batching"]["batch_seconds"]) == meta["batching"]["batches"]
    assert meta["tokens_generated"] == sum(r[2] for r in responses(path))
    assert not list(tmp_path.glob("*.partial.jsonl"))


class Crash(Exception):
    pass


def test_cut_off_run_resumes_to_the_same_responses(batched, stop_model, shared_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ifeval_run, "CONTINUOUS_GROUP_ROWS", GROUP)
    append = side_file.SideFile.append
    groups = []

    def crash_after_two_groups(self, objects):
        if any("batch" in obj for obj in objects):
            if len(groups) == 2:
                raise Crash
            groups.append(objects)
        append(self, objects)

    monkeypatch.setattr(side_file.SideFile, "append", crash_after_two_groups)
    with pytest.raises(Crash):
        eval_generate.main(args(stop_model, shared_data, tmp_path, "--speed", "continuous"))
    monkeypatch.setattr(side_file.SideFile, "append", append)
    partial = next(tmp_path.glob("*.partial.jsonl"))
    kept = [line for line in partial.read_text().splitlines() if '"key"' in line]
    assert len(kept) == 2 * GROUP

    # the rest with continuous batching again, the settings found by --resume
    resumed = run_main(args(stop_model, shared_data, tmp_path, "--resume", "--speed", "continuous"))
    assert responses(resumed) == responses(batched)
    meta = json.loads(resumed.read_text())["metadata"]
    assert meta["resumed"] is True and [s["rows"] for s in meta["sessions"]] == [2 * GROUP, LIMIT - 2 * GROUP]
    assert not partial.exists()


def test_rows_finished_before_a_generation_error_are_kept(stop_model, shared_data, tmp_path, monkeypatch):
    from sfteval.model import continuous

    results = continuous.ContinuousRun.results

    def failing_after_two(self, poll_seconds=1.0):
        finished = 0
        for item in results(self, poll_seconds):
            yield item
            finished += item is not None
            if finished == 2:
                raise RuntimeError("continuous batching request prompt9 failed: CUDA out of memory")

    monkeypatch.setattr(continuous.ContinuousRun, "results", failing_after_two)
    with pytest.raises(RuntimeError, match="out of memory"):
        eval_generate.main(args(stop_model, shared_data, tmp_path, "--speed", "continuous"))
    partial = side_file.read_partial(next(tmp_path.glob("*.partial.jsonl")))
    assert len(partial.rows) == 2 and partial.batches[0]["rows"] == 2


def test_refused_where_it_cannot_work():
    with pytest.raises(UserError, match="unsloth loader has none"):
        ifeval_run.check_continuous(ifeval_run.RunConfig(speed="continuous"), "unsloth")
    with pytest.raises(UserError, match="leave out --static-cache, --gqa-decode"):
        config = ifeval_run.RunConfig(speed="continuous", static_cache=True, gqa_decode=True)
        ifeval_run.check_continuous(config, "hf")
    ifeval_run.check_continuous(ifeval_run.RunConfig(speed="continuous"), "hf")


def test_help_offers_continuous():
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "continuous" in done.stdout


def test_cpu_cache_holds_every_layer_group():
    """A model mixing sliding-window and full attention keeps one paged cache per layer group
    (Gemma 3 270M: 15 sliding + 3 full layers, six groups of three); the CPU cache must hold every
    request at full length in each group, or transformers refuses to schedule any request."""
    from transformers import Gemma3TextConfig

    from sfteval.model import continuous

    layer_types = (["sliding_attention"] * 5 + ["full_attention"]) * 3
    config = Gemma3TextConfig(num_hidden_layers=18, layer_types=layer_types, sliding_window=512)
    lengths, new_tokens = [100, 300], 1280
    cb = continuous.batching_config(config, False, lengths, new_tokens, None, 0)
    per_group = sum(math.ceil((n + new_tokens) / cb.block_size) for n in lengths)
    assert cb.num_blocks == 1 + 6 * per_group
    single = continuous.batching_config(
        Gemma3TextConfig(num_hidden_layers=18, layer_types=["full_attention"] * 18), False, lengths, new_tokens, None, 0
    )
    assert single.num_blocks == 1 + per_group
