"""cli_bench reads each script's figures from the file the script wrote."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("cli_bench", ROOT / "bench" / "cli_bench.py")
cli_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli_bench)


def test_train_figures_and_metadata_come_from_train_config(tmp_path):
    """train_config.json is an envelope: GPU, commit and versions sit under `metadata`."""
    config = {
        "kind": "train_config",
        "metadata": {
            "git_commit": "abc1234",
            "library_versions": {"torch": "2.11.0"},
            "gpu": {"name": "NVIDIA H100 80GB HBM3", "count": 1},
            "recipe": {"name": "fast-80gb"},
        },
        "results": {
            "tokens_seen": 176045,
            "tokens_per_second": 1882.3,
            "steady_tokens_per_second": 13012.5,
            "steady_from_step": 5,
            "peak_gpu_memory_gb": 55.3,
        },
    }
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "train_config.json").write_text(json.dumps(config))
    found = cli_bench.read_result("train.py", "", tmp_path)
    assert found["tokens"] == 176045 and found["tokens_per_second"] == 1882.3
    assert (found["steady_tokens_per_second"], found["steady_from_step"]) == (13012.5, 5)
    assert found["metadata"]["gpu"]["name"] == "NVIDIA H100 80GB HBM3"
    assert found["metadata"]["git_commit"] == "abc1234" and found["metadata"]["recipe"] == {"name": "fast-80gb"}


def test_a_train_run_without_its_file_gives_no_figures(tmp_path):
    assert cli_bench.read_result("train.py", "", tmp_path) == {}


def test_generation_figures_come_from_the_file_named_on_the_last_line(tmp_path):
    """eval_generate.py prints its output file last; the record keeps each batch's seconds, the
    first of which holds a compiled run's compile."""
    output = tmp_path / "m_bf16.json"
    meta = {
        "n_prompts": 541,
        "tokens_generated": 692480,
        "tokens_per_second": 6208.0,
        "peak_gpu_memory_gb": 63.0,
        "load_seconds": 8.5,
        "batching": {"batches": 3, "batch_seconds": [45.1, 33.2, 33.2]},
        "generation": {"compile": True},
        "git_commit": "abc1234",
        "gpu": {"name": "NVIDIA H200"},
    }
    output.write_text(json.dumps({"kind": "ifeval_responses", "metadata": meta, "responses": []}))
    found = cli_bench.read_result("eval_generate.py", f"progress\n{output}\n", tmp_path)
    assert (found["n_prompts"], found["tokens"], found["load_seconds"]) == (541, 692480, 8.5)
    assert found["batch_seconds"] == [45.1, 33.2, 33.2]
    assert found["metadata"]["gpu"] == {"name": "NVIDIA H200"}


def test_a_run_past_its_timeout_is_recorded_with_what_it_wrote(monkeypatch):
    """subprocess hands over a timed-out process's output as bytes even in text mode."""

    def timed_out(argv, **kwargs):
        raise cli_bench.subprocess.TimeoutExpired(argv, kwargs["timeout"], output=b"step 1\n", stderr=b"compiling\n")

    monkeypatch.setattr(cli_bench.subprocess, "run", timed_out)
    record = cli_bench.run_one("train.py --model M --max-steps 30", timeout=140)
    assert record["returncode"] is None and record["args"] == ["--model", "M", "--max-steps", "30"]
    assert record["log_tail"][-2:] == ["compiling", "(timed out after 140 s)"]
    assert "tokens" not in record and record["process_tokens_per_second"] is None


def bench_record(when: str, *args: str) -> dict:
    return {"script": "eval_generate.py", "args": list(args), "measured_at": when, "process_seconds": 1.0}


def test_merge_appends_the_records_out_does_not_hold(tmp_path, capsys):
    out, gpu = tmp_path / "latest.json", tmp_path / "gpu.json"
    here = [bench_record("t1", "--precision", "bf16")]
    there = [bench_record("t1", "--precision", "bf16"), bench_record("t2", "--precision", "4bit")]
    out.write_text(json.dumps(here))
    gpu.write_text(json.dumps(there))
    assert cli_bench.main(["--out", str(out), "--merge", str(gpu)]) == 0
    assert json.loads(out.read_text()) == here + there[1:]
    assert "1 record(s) added" in capsys.readouterr().err
    # Merging the same file again adds nothing; records are kept in the order they came.
    assert cli_bench.main(["--out", str(out), "--merge", str(gpu)]) == 0
    assert json.loads(out.read_text()) == here + there[1:]
    assert "0 record(s) added" in capsys.readouterr().err


def test_merge_refuses_a_file_that_is_not_a_record_list(tmp_path, capsys):
    from sfteval import cli

    out, other = tmp_path / "latest.json", tmp_path / "other.json"
    out.write_text("[]")
    other.write_text(json.dumps({"kind": "ifeval_responses"}))
    assert cli.run(cli_bench.main, ["--out", str(out), "--merge", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a list of cli_bench records" in err
    assert out.read_text() == "[]"
