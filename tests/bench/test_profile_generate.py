"""bench/profile_generate.py: eval_generate.py's run inside torch's profiler, on the tiny Llama on CPU."""

import json
import subprocess
import sys

from tests.conftest import ROOT

BENCH = ROOT / "bench" / "profile_generate.py"


def test_profiles_the_real_run(tmp_path, tiny_llama_dir, shared_data):
    out, responses = tmp_path / "prof.json", tmp_path / "r.json"
    args = [
        "--model",
        str(tiny_llama_dir),
        "--precision",
        "fp32",
        "--prompts",
        str(shared_data / "ifeval" / "input_data.jsonl"),
    ]
    args += ["--limit", "3", "--max-new-tokens", "4", "--output", str(responses), "--no-progress"]
    done = subprocess.run(
        [sys.executable, str(BENCH), "--out", str(out), "--top", "5", "--", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.read_text())
    metadata = summary["metadata"]
    assert summary["kind"] == "generate_profile" and "git_commit" in metadata and metadata["library_versions"]
    assert metadata["finished"] and metadata["run_summary"]["n_prompts"] == 3
    assert metadata["eval_generate_args"] == args
    assert len(summary["top_cpu"]) == 5 and summary["top_cpu"][0]["self_cpu_ms"] > 0
    assert any(row["name"] == "aten::mm" for row in summary["top_cpu"])  # the layers' matmuls ran under it
    assert len(json.loads(responses.read_text())["responses"]) == 3
    assert "most CPU time" in done.stdout


def test_refuses_an_existing_summary(tmp_path):
    out = tmp_path / "prof.json"
    out.write_text("{}")
    done = subprocess.run(
        [sys.executable, str(BENCH), "--out", str(out), "--", "--limit", "1"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert out.read_text() == "{}"
