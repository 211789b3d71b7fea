import json
import subprocess
import sys

import pytest

from sfteval.model import parity
from tests.conftest import ROOT


def test_first_divergence():
    assert parity.first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert parity.first_divergence([1, 2, 3], [1, 5, 3]) == 1
    assert parity.first_divergence([1, 2], [1, 2, 3]) == 2


@pytest.mark.slow
def test_hf_fp32_batched_equals_one_by_one_on_smollm2(smollm2_dir, shared_data):
    rows = [json.loads(line) for line in (shared_data / "ifeval" / "input_data.jsonl").open()][:6]
    run = parity.run_worker(str(smollm2_dir), "hf", "fp32", rows, max_new_tokens=24, batch_size=3)
    summary = parity.summarize(run, None)
    assert summary["batch_invariant"] and summary["batched_equals_single"] == 1.0
    assert all(item["batched_ids"] for item in run["items"])
    # Against itself as the reference: identical outputs and zero log-prob difference.
    for item in run["items"]:
        item["reference_logprob"] = item["own_logprob"]
    against_self = parity.summarize(run, run)
    assert against_self["identical_to_reference"] == 1.0
    assert against_self["mean_abs_logprob_diff_per_token"] == 0.0


def test_cli_rejects_a_bad_run_spec():
    done = subprocess.run(
        [sys.executable, "bench/loader_parity.py", "--model", "x", "--prompts", "y", "--runs", "vllm:bf16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "expected LOADER:PRECISION" in done.stderr


def test_divergence_margin_reads_the_two_choices_at_the_first_parting(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    prompt = [128000, 791, 4062, 374]
    answer = [1176, 2103, 3305, 4407]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + answer[:2]])).logits[0, -1]
    other = int(logits.argsort(descending=True)[1])
    other = other if other != answer[2] else int(logits.argsort(descending=True)[0])
    parted = answer[:2] + [other, 9]
    margin = parity.divergence_margin(model, prompt, answer, parted, stop_ids=[128009])
    assert margin["position"] == 2
    assert margin["logit_gap"] == pytest.approx(abs(float(logits[answer[2]] - logits[other])), abs=1e-3)
    assert margin["rank_b"] <= 1 and margin["rank_a"] == int((logits > logits[answer[2]]).sum())
    assert parity.divergence_margin(model, prompt, answer, list(answer), stop_ids=[128009]) is None
    stopped = parity.divergence_margin(model, prompt, answer[:2], answer, stop_ids=[128009, 128001])
    best_stop = 128009 if logits[128009] >= logits[128001] else 128001
    assert stopped["logit_gap"] == pytest.approx(abs(float(logits[best_stop] - logits[answer[2]])), abs=1e-3)

    summary = parity.margin_summary([None, margin, {**margin, "logit_gap": 2.0, "rank_a": 5}])
    assert (summary["n"], summary["identical"], summary["median_first_divergence"]) == (3, 1, 2)
    assert summary["gap_at_most_1.0"] == int(margin["logit_gap"] <= 1.0)  # the 2.0 gap is not counted
    assert summary["both_in_top2"] == int(max(margin["rank_a"], margin["rank_b"]) <= 1)  # rank 5 is not


def test_decode_parity_cli_counts_identical_answers(tiny_llama_dir, shared_data, tmp_path):
    rows = [json.loads(line) for line in (shared_data / "ifeval" / "input_data.jsonl").read_text().splitlines()[:3]]
    metadata = {"template": "chat", "generation": {"stop_token_ids": [128009]}}
    answers = ["First answer here.", "Second one, a bit longer.", "Third."]

    def write(name, texts):
        responses = [{**r, "response": t} for r, t in zip(rows, texts)]
        document = {"schema_version": 1, "kind": "ifeval_responses", "metadata": metadata, "responses": responses}
        path = tmp_path / name
        path.write_text(json.dumps(document))
        return str(path)

    reference = write("a.json", answers)
    other = write("b.json", [answers[0], "Second one, a bit shorter.", answers[2]])
    out = tmp_path / "parity.json"
    command = [sys.executable, str(ROOT / "bench" / "decode_parity.py"), "--model", str(tiny_llama_dir)]
    command += ["--reference", reference, "--runs", other, reference, "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["identical"], r["n"]) for r in runs] == [(2, 3), (3, 3)]
    assert runs[0]["rows"][0]["key"] == rows[1]["key"] and runs[0]["rows"][0]["position"] > 0
    assert "2 of 3 identical" in done.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode != 0 and "Traceback" not in again.stderr
