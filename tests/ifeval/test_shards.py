"""IFEval generation split across processes: shards i/N merged by merge_shards.py, and two
processes under `accelerate launch` (gloo on the CPU, merged by the main one), each give the
one-process run's responses exactly (SmolLM2, fp32, greedy). Scaling on GPUs is not measured here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import cli
from sfteval.ifeval import run as ifeval_run
from sfteval.ifeval import shards
from tests.conftest import ROOT, load_script

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

LIMIT, NEW_TOKENS = 5, 8  # an odd count: the shards are uneven
merge_script = load_script(ROOT / "merge_shards.py", "merge_shards")


def config(smollm2_dir, shared_data, output, **changes) -> ifeval_run.RunConfig:
    settings = dict(
        model=str(smollm2_dir), precision="fp32", prompts=str(shared_data / "ifeval" / "input_data.jsonl"),
        limit=LIMIT, max_new_tokens=NEW_TOKENS, batch_size=2, output=str(output), progress=False,
    )  # fmt: skip
    return ifeval_run.RunConfig(**{**settings, **changes})


def responses(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())["responses"]


@pytest.fixture(scope="module")
def reference(smollm2_dir, shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_process") / "run.json"
    return ifeval_run.run(config(smollm2_dir, shared_data, out)).output


@pytest.fixture(scope="module")
def shard_files(smollm2_dir, shared_data, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("shards") / "run.json"
    return [ifeval_run.run(config(smollm2_dir, shared_data, out, shard=f"{i}/2")).output for i in (1, 0)]


def test_two_shards_merge_into_the_one_process_run(reference, shard_files, capsys):
    assert [p.name for p in shard_files] == ["run.shard1of2.json", "run.shard0of2.json"]
    first = json.loads(shard_files[1].read_text())["metadata"]
    assert first["shard"] == {"index": 0, "count": 2, "n_prompts_all_shards": LIMIT} and first["n_prompts"] == 3
    assert cli.run(merge_script.main, [str(p) for p in shard_files]) == 0
    merged = Path(capsys.readouterr().out.strip())
    assert merged == shard_files[0].with_name("run.json")
    assert responses(merged) == responses(reference)
    assert merged.with_name("run.official.jsonl").read_text() == reference.with_name("run.official.jsonl").read_text()
    meta = json.loads(merged.read_text())["metadata"]
    assert meta["n_prompts"] == LIMIT and meta["shard"] is None and [s["index"] for s in meta["shards"]] == [0, 1]
    assert meta["tokens_generated"] == sum(r["new_tokens"] for r in responses(reference))
    assert {s["shard"] for s in meta["sessions"]} == {0, 1}
    assert len(meta["batching"]["batch_seconds"]) == meta["batching"]["batches"] >= 2
    # Nothing is overwritten.
    assert cli.run(merge_script.main, [str(p) for p in shard_files]) == 2
    assert "already exists" in capsys.readouterr().err


def test_merge_refuses_what_is_not_one_whole_run(reference, shard_files, smollm2_dir, shared_data, tmp_path):
    with pytest.raises(cli.UserError, match="shard\\(s\\) 1/2 missing"):
        shards.merge([shard_files[1]], tmp_path / "a.json")
    with pytest.raises(cli.UserError, match="are both shard 0/2"):
        shards.merge([shard_files[1], shard_files[1]], tmp_path / "b.json")
    with pytest.raises(cli.UserError, match="a whole run, not a shard"):
        shards.merge([reference, shard_files[1]], tmp_path / "c.json")
    other = ifeval_run.run(config(smollm2_dir, shared_data, tmp_path / "other.json", shard="1/2", max_new_tokens=1))
    with pytest.raises(cli.UserError, match="generation.max_new_tokens"):
        shards.merge([shard_files[1], other.output], tmp_path / "d.json")
    assert not list(tmp_path.glob("[abcd].json"))


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "0/0"])
def test_bad_shard_is_a_one_line_error(text, tmp_path):
    with pytest.raises(cli.UserError, match="--shard takes i/N"):
        ifeval_run.parse_shard(text)


def test_an_explicit_shard_under_a_launcher_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert ifeval_run.parse_shard(None) == ifeval_run.Shard(1, 2, from_launcher=True)
    with pytest.raises(cli.UserError, match="leave it out"):
        ifeval_run.parse_shard("0/2")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_accelerate_launch_two_processes_write_one_file(reference, smollm2_dir, shared_data, tmp_path):
    out = tmp_path / "launched.json"
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(ROOT / "eval_generate.py"),
        "--model", str(smollm2_dir), "--precision", "fp32", "--prompts", str(shared_data / "ifeval" / "input_data.jsonl"),
        "--limit", str(LIMIT), "--max-new-tokens", str(NEW_TOKENS), "--batch-size", "2", "--output", str(out),
        "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "launched.json", "launched.shard0of2.json", "launched.shard1of2.json",
    ]  # fmt: skip
    assert responses(out) == responses(reference)
    assert done.stdout.split().count(str(out)) == 1  # the main process names the merged file
