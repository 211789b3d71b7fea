"""compare_ifeval.py on real data: the shared Phi-3 responses (official prompt/response JSONL)
against a copy with some responses emptied and some commas removed, both scored on the fly
with the real prompts. Flips and McNemar p-values are checked against what the changes
must do and against scipy's binomial test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scipy.stats import binomtest

import compare_ifeval
from sfteval import cli, records
from sfteval.ifeval import compare
from tests.conftest import ROOT, help_probe

N_BROKEN, N_FIXED = 15, 8


def run_cli(args, capsys):
    rc = cli.run(compare_ifeval.main, [str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory):
    """Original and changed runs, scored through compare.load_run (the on-the-fly path), and
    the keys the change must flip, chosen from the official scorer's verdicts in the file."""
    folder = tmp_path_factory.mktemp("compare")
    prompts = shared_data / "ifeval" / "input_data.jsonl"
    original = shared_data / "ifeval" / "phi3_eval_results_strict.jsonl"
    with open(prompts, encoding="utf-8") as handle:
        keys = [json.loads(line)["key"] for line in handle]
    with open(original, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    passing = [i for i, r in enumerate(rows) if r["follow_all_instructions"]]
    only_comma = [
        i
        for i, r in enumerate(rows)
        if [x for x, ok in zip(r["instruction_id_list"], r["follow_instruction_list"]) if not ok]
        == ["punctuation:no_comma"]
    ]
    broken, fixed = passing[:N_BROKEN], only_comma[:N_FIXED]
    changed = folder / "changed.jsonl"
    with open(changed, "w", encoding="utf-8") as handle:
        for i, r in enumerate(rows):
            response = "" if i in broken else r["response"].replace(",", "") if i in fixed else r["response"]
            handle.write(json.dumps({"prompt": r["prompt"], "response": response}) + "\n")
    doc_a = compare.load_run(original, str(prompts))
    doc_b = compare.load_run(changed, str(prompts))
    scores_a = records.write_json_atomic(folder / "phi3.scores.json", doc_a)
    scores_b = records.write_json_atomic(folder / "changed.scores.json", doc_b)
    return {
        "a": doc_a,
        "b": doc_b,
        "scores_a": scores_a,
        "scores_b": scores_b,
        "broken": {keys[i] for i in broken},
        "fixed": {keys[i] for i in fixed},
        "prompts": prompts,
        "original": original,
        "changed": changed,
    }


def test_flips_are_exactly_the_changed_prompts(pair):
    result = compare.compare(pair["a"], pair["b"])
    flips = result["flips"]["strict"]
    assert {f["key"] for f in flips["pass_to_fail"]} == pair["broken"]
    assert {f["key"] for f in flips["fail_to_pass"]} == pair["fixed"]
    for f in flips["fail_to_pass"]:
        assert f["changed_instructions"] == ["+punctuation:no_comma"]
        assert "," in f["response_a"] and "," not in f["response_b"]
    for f in flips["pass_to_fail"]:
        assert f["response_b"] == "(empty)" and f["response_a"] != "(empty)"
        assert all(c.startswith("-") for c in f["changed_instructions"])
    assert result["n_prompts"] == 541 and result["n_instructions"] == 834


def test_mcnemar_matches_scipy_on_the_discordant_pairs(pair):
    result = compare.compare(pair["a"], pair["b"])
    by_metric = {m["metric"]: m for m in result["metrics"]}
    strict = by_metric["prompt_level_strict_acc"]["mcnemar"]
    assert (strict["pass_to_fail"], strict["fail_to_pass"]) == (N_BROKEN, N_FIXED)
    assert strict["p_value"] == pytest.approx(binomtest(N_BROKEN, N_BROKEN + N_FIXED, 0.5).pvalue, rel=1e-12)
    # every metric, with the discordant pairs counted here from the two scored files
    pa, pb = pair["a"]["per_prompt"], pair["b"]["per_prompt"]
    for mode in ("strict", "loose"):
        paired = {
            f"prompt_level_{mode}_acc": [(a[f"follow_all_{mode}"], b[f"follow_all_{mode}"]) for a, b in zip(pa, pb)],
            f"inst_level_{mode}_acc": [
                (x, y)
                for a, b in zip(pa, pb)
                for x, y in zip(a[f"follow_instruction_list_{mode}"], b[f"follow_instruction_list_{mode}"])
            ],
        }
        for metric, verdicts in paired.items():
            lost = sum(1 for x, y in verdicts if x and not y)
            gained = sum(1 for x, y in verdicts if y and not x)
            test = by_metric[metric]["mcnemar"]
            assert (test["pass_to_fail"], test["fail_to_pass"]) == (lost, gained)
            assert test["p_value"] == pytest.approx(binomtest(lost, lost + gained, 0.5).pvalue, rel=1e-12)


def test_accuracies_and_differences(pair):
    result = compare.compare(pair["a"], pair["b"])
    for m in result["metrics"]:
        key = m["metric"]
        assert m["a"]["acc"] == pair["a"]["summary"][key]
        assert m["b"]["acc"] == pair["b"]["summary"][key]
        assert m["a"]["ci"] == pair["a"]["summary"][f"{key}_ci"]
        assert m["difference"] == pytest.approx(m["b"]["acc"] - m["a"]["acc"])
        low, high = m["difference_ci"]
        assert low <= m["difference"] <= high
    strict = next(m for m in result["metrics"] if m["metric"] == "prompt_level_strict_acc")
    assert strict["difference"] == pytest.approx((N_FIXED - N_BROKEN) / 541)
    # the scorer agrees with the official verdicts shipped with the file
    assert round(pair["a"]["summary"]["prompt_level_strict_acc"] * 541) == 264


def test_per_instruction_deltas_sorted(pair):
    result = compare.compare(pair["a"], pair["b"])
    rows = result["per_instruction"]
    deltas = [r["delta_strict"] for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    top = rows[0]
    assert top["instruction_id"] == "punctuation:no_comma"
    assert top["n"] == 66
    assert top["delta_strict"] == pytest.approx(N_FIXED / 66)
    assert {r["instruction_id"] for r in rows} == set(pair["a"]["per_instruction"])
    for r in rows:
        assert r["a_strict_acc"] == pytest.approx(pair["a"]["per_instruction"][r["instruction_id"]]["strict_acc"])


def test_cli_prints_and_writes_markdown_plot_json(pair, tmp_path, capsys):
    md, png, js = tmp_path / "cmp.md", tmp_path / "cmp.png", tmp_path / "cmp.json"
    rc, out, err = run_cli(
        ["--model1", pair["scores_a"], "--model2", pair["scores_b"], "--names", "phi3", "changed"]
        + ["--markdown", md, "--plot", png, "--json", js],
        capsys,
    )
    assert rc == 0, err
    saved = json.loads(js.read_text())
    assert saved["kind"] == "ifeval_comparison" and saved["schema_version"] == 1
    assert saved["metadata"]["inputs"][0]["sha256"] == records.sha256_file(pair["scores_a"])
    text = md.read_text()
    for m in saved["metrics"]:
        for side in ("a", "b"):
            value, (low, high) = m[side]["acc"], m[side]["ci"]
            cell = f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
            assert cell in text and cell in out
        assert f"{100 * m['difference']:+.1f}" in text
    assert "![IFEval comparison](cmp.png)" in text
    assert f"{N_BROKEN} pass→fail, {N_FIXED} fail→pass" in text
    assert f"{N_BROKEN} pass -> fail, {N_FIXED} fail -> pass" in out
    assert text.count("| 1") >= N_BROKEN + N_FIXED  # every strict flip has a row (keys 1000+)
    from tests.report.test_report import check_png

    check_png(png)
    # nothing is overwritten
    rc, _, err = run_cli(["--model1", pair["scores_a"], "--model2", pair["scores_b"], "--plot", png], capsys)
    assert rc == 2 and "already exists" in err


def test_cli_scores_official_jsonl_on_the_fly(pair, tmp_path, capsys):
    """A small slice of the official files, scored from JSONL in the CLI itself."""
    lines = pair["original"].read_text(encoding="utf-8").splitlines()[:20]
    changed_lines = pair["changed"].read_text(encoding="utf-8").splitlines()[:20]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("\n".join(lines) + "\n")
    b.write_text("\n".join(changed_lines) + "\n")
    rc, out, err = run_cli(
        ["--model1", a, "--model2", b, "--prompts", pair["prompts"], "--json", tmp_path / "c.json"], capsys
    )
    assert rc == 0, err
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["n_prompts"] == 20
    keys = {f["key"] for f in saved["flips"]["strict"]["pass_to_fail"] + saved["flips"]["strict"]["fail_to_pass"]}
    assert keys and keys <= pair["broken"] | pair["fixed"]
    assert "official prompt/response JSONL" in out


def _variant(doc, path, change):
    copy = json.loads(json.dumps(doc))
    change(copy)
    return records.write_json_atomic(path, copy)


def test_different_prompt_sets_are_refused_unless_common_only(pair, tmp_path, capsys):
    a = pair["scores_a"]
    subset = _variant(pair["b"], tmp_path / "subset.scores.json", lambda d: d.update(per_prompt=d["per_prompt"][:50]))
    rc, out, err = run_cli(["--model1", a, "--model2", subset], capsys)
    assert rc == 2 and "different prompts (541 vs 50, 50 in common)" in err and "--common-only" in err
    assert err.count("\n") == 1 and not out
    rc, out, err = run_cli(["--model1", a, "--model2", subset, "--common-only", "--json", tmp_path / "c.json"], capsys)
    assert rc == 0, err
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["n_prompts"] == 50 and "Compared on the 50 prompts both runs share" in saved["notes"][0]
    # on a subset the accuracies are recomputed on the shared prompts
    expected = sum(p["follow_all_strict"] for p in pair["a"]["per_prompt"][:50]) / 50
    assert saved["metrics"][0]["a"]["acc"] == pytest.approx(expected)

    def other_set(d):
        d["metadata"]["prompt_set"]["sha256"] = "f" * 64

    other = _variant(pair["b"], tmp_path / "other.scores.json", other_set)
    rc, _, err = run_cli(["--model1", a, "--model2", other], capsys)
    assert rc == 2 and "different prompt sets" in err and err.count("\n") == 1
    rc, out, _ = run_cli(["--model1", a, "--model2", other, "--common-only"], capsys)
    assert rc == 0 and "checksums differ" in out

    def reworded(d):
        d["per_prompt"][3]["prompt"] += " Please."

    edited = _variant(pair["b"], tmp_path / "edited.scores.json", reworded)
    rc, _, err = run_cli(["--model1", a, "--model2", edited], capsys)
    assert rc == 2 and "1 prompt(s) with the same key differ" in err
    rc, out, _ = run_cli(["--model1", a, "--model2", edited, "--common-only"], capsys)
    assert rc == 0 and "paired on 540 prompts" in out


def test_other_benchmarks_and_bad_files_are_one_line_errors(pair, shared_data, tmp_path, capsys):
    from tests.report.test_report import lm_eval_doc, tinymmlu_doc

    tiny = records.write_json_atomic(tmp_path / "t.json", tinymmlu_doc(shared_data, adapter=None, precision="bf16"))
    lm = records.write_json_atomic(tmp_path / "results_2026-11-20T10-31-07.json", lm_eval_doc())
    empty = tmp_path / "empty.json"
    empty.write_text("")
    cases = [
        (tiny, "holds tinymmlu_results results, not IFEval"),
        (lm, "lm-eval results file, not IFEval"),
        (empty, "is empty"),
        (tmp_path / "missing.json", "does not exist"),
    ]
    for path, message in cases:
        rc, out, err = run_cli(["--model1", pair["scores_a"], "--model2", path], capsys)
        assert rc == 2 and message in err, err
        assert err.startswith("error: ") and err.count("\n") == 1


def test_help_is_instant_and_light():
    done, loaded = help_probe("compare_ifeval.py", ("torch", "scipy", "wandb", "matplotlib", "lm_eval", "numpy"))
    assert done.returncode == 0, done.stderr
    assert "--common-only" in done.stdout and "--model1" in done.stdout
    assert loaded == "LOADED []"


def test_compare_runs_without_torch_or_scipy(pair):
    """The laptop's light install has neither: block both and compare two scores files."""
    code = (
        "import sys\nfor m in ('torch', 'scipy', 'transformers'): sys.modules[m] = None\n"
        "import compare_ifeval\nfrom sfteval import cli\n"
        f"sys.exit(cli.run(compare_ifeval.main, ['--model1', {str(pair['scores_a'])!r}, '--model2', {str(pair['scores_b'])!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Prompts that flipped (prompt-level strict): 15 pass -> fail, 8 fail -> pass" in done.stdout


def test_responses_files_of_this_project_are_scored_on_the_fly(shared_data, tmp_path, capsys):
    from tests.report.test_report import LIMIT, responses_doc

    a = records.write_json_atomic(
        tmp_path / "base.json",
        responses_doc(shared_data, adapter=None, precision="bf16", tokens_per_second=900.0, peak_gb=16.1),
    )
    b = records.write_json_atomic(
        tmp_path / "lora.json",
        responses_doc(
            shared_data,
            adapter="lora_model_bf16",
            precision="bf16",
            tokens_per_second=880.0,
            peak_gb=16.4,
            empty_first=3,
        ),
    )
    rc, out, err = run_cli(["--model1", a, "--model2", b, "--json", tmp_path / "c.json"], capsys)
    assert rc == 0, err
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["n_prompts"] == LIMIT
    assert (
        saved["runs"][1]["description"]
        == "unsloth/Meta-Llama-3.1-8B + lora_model_bf16, precision bf16, template alpaca"
    )
    first_three = {
        r["key"]
        for r in responses_doc(shared_data, adapter=None, precision="bf16", tokens_per_second=1, peak_gb=1)[
            "responses"
        ][:3]
    }
    lost = {f["key"] for f in saved["flips"]["strict"]["pass_to_fail"]}
    assert lost and lost <= first_three and not saved["flips"]["strict"]["fail_to_pass"]


def test_long_run_names_keep_their_columns_apart(pair, capsys):
    long_a, long_b = "gemma3-270m-alpaca5k-bf16", "gemma3-270m-alpaca5k-4bit"
    rc, out, err = run_cli(
        ["--model1", pair["scores_a"], "--model2", pair["scores_b"], "--names", long_a, long_b], capsys
    )
    assert rc == 0, err
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert f" {long_a} " in header and f" {long_b} " in header and f" {long_b} - {long_a} (pts)" in header
    row = next(line for line in out.splitlines() if line.startswith("prompt-level strict"))
    assert row.index("[") > header.index(long_a) - 2  # the values sit under their names
