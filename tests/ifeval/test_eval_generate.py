"""eval_generate.py on the real SmolLM2-135M-Instruct at fp32 (exact on a CPU, unlike bf16):
batched = one by one, a SIGKILLed run resumed = an uninterrupted run, the file format, and
the one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sfteval.cli import UserError
from sfteval.ifeval import run as ifeval_run
from sfteval.ifeval import side_file, speed_plan
from sfteval.model import generation
from tests.conftest import ROOT, load_script

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCRIPT = ROOT / "eval_generate.py"
LIMIT, BATCH, NEW_TOKENS = 4, 2, 8
# One thread everywhere: the subprocess and in-process runs then add up their floats in the
# same order (exact equality), and they do not fight over the test machine's two cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


eval_generate = load_script(SCRIPT, "eval_generate")


def base_args(smollm2_dir, shared_data, out, *extra):
    return [
        "--model", str(smollm2_dir), "--precision", "fp32",
        "--prompts", str(shared_data / "ifeval" / "input_data.jsonl"),
        "--limit", str(LIMIT), "--max-new-tokens", str(NEW_TOKENS),
        "--output", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def run_main(argv) -> Path:
    assert eval_generate.main(argv) == 0
    outputs = sorted(Path(argv[argv.index("--output") + 1]).glob("*[0-9].json"))
    return outputs[-1]


def responses(path: Path) -> list[tuple]:
    rows = json.loads(path.read_text())["responses"]
    return [(r["key"], r["response"], r["new_tokens"], r["stop_reason"]) for r in rows]


@pytest.fixture(scope="module")
def reference(smollm2_dir, shared_data, tmp_path_factory) -> Path:
    """An uninterrupted batched run: 4 prompts, batch size 2, 8 new tokens."""
    out = tmp_path_factory.mktemp("reference")
    return run_main(base_args(smollm2_dir, shared_data, out, "--batch-size", str(BATCH)))


def test_document_follows_the_format(reference, shared_data):
    doc = json.loads(reference.read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "ifeval_responses"
    meta = doc["metadata"]
    for key in ("created_at", "command", "host", "git_commit", "library_versions", "gpu", "adapter_train_config"):
        assert key in meta
    assert (meta["precision"], meta["loader"], meta["template"], meta["n_prompts"], meta["limit"]) == (
        "fp32", "hf", "chat", LIMIT, LIMIT,
    )  # fmt: skip
    gen = meta["generation"]
    assert gen["max_new_tokens"] == NEW_TOKENS and gen["do_sample"] is False and gen["batch_size"] == BATCH
    assert gen["stop_tokens"][0] == "<|im_end|>"
    assert meta["prompt_set"]["n_prompts"] == 541 and len(meta["prompt_set"]["sha256"]) == 64
    assert meta["padding"]["side"] == "left" and meta["resumed"] is False
    assert meta["tokens_generated"] == sum(r["new_tokens"] for r in doc["responses"]) > 0
    assert meta["tokens_per_second"] > 0 and meta["wall_seconds"] > 0
    assert reference.name.startswith(Path(meta["model"]).name) and "_fp32_" in reference.name
    # rows in prompt-set order, carrying what a scorer needs
    source = [json.loads(line) for line in (shared_data / "ifeval" / "input_data.jsonl").open()][:LIMIT]
    assert [r["key"] for r in doc["responses"]] == [s["key"] for s in source]
    for row, src in zip(doc["responses"], source):
        assert row["prompt"] == src["prompt"] and row["instruction_id_list"] == src["instruction_id_list"]
        assert row["stop_reason"] in ("eos", "length") and 1 <= row["new_tokens"] <= NEW_TOKENS
        assert (row["stop_reason"] == "length") == (row["new_tokens"] == NEW_TOKENS)
    # the official-scorer file, and no side file left behind
    stem = reference.name[: -len(".json")]
    official = [json.loads(line) for line in (reference.parent / f"{stem}.official.jsonl").open()]
    assert official == [{"prompt": r["prompt"], "response": r["response"]} for r in doc["responses"]]
    assert not (reference.parent / f"{stem}.partial.jsonl").exists()


def test_one_by_one_with_static_cache_and_flipped_padding_side_equals_batched(
    reference, smollm2_dir, shared_data, tmp_path, monkeypatch
):
    original = generation.generate_batch

    def flipping(model, tokenizer, *args, **kwargs):  # what unsloth does after generate (issue #3283)
        result = original(model, tokenizer, *args, **kwargs)
        tokenizer.padding_side = "right"
        return result

    monkeypatch.setattr(generation, "generate_batch", flipping)
    single = run_main(base_args(smollm2_dir, shared_data, tmp_path, "--batch-size", "1", "--static-cache"))
    assert responses(single) == responses(reference)
    meta = json.loads(single.read_text())["metadata"]
    assert meta["padding"]["padding_side_resets"] == LIMIT - 1
    assert meta["generation"]["static_cache"] is True and meta["generation"]["batch_size"] == 1


def test_gqa_decode_gives_the_batched_responses(reference, smollm2_dir, shared_data, tmp_path):
    """SmolLM2 has 9 query heads on 3 key/value heads: the grouped decode path must not change a token."""
    grouped = run_main(base_args(smollm2_dir, shared_data, tmp_path, "--batch-size", str(BATCH), "--gqa-decode"))
    assert responses(grouped) == responses(reference)
    meta = json.loads(grouped.read_text())["metadata"]
    assert meta["attn_implementation"] == "sdpa_gqa_decode" and meta["sessions"][0]["gqa_decode"] is True


def test_killed_run_resumes_to_the_same_responses(reference, smollm2_dir, shared_data, tmp_path):
    argv = base_args(smollm2_dir, shared_data, tmp_path, "--batch-size", str(BATCH))
    process = subprocess.Popen([sys.executable, str(SCRIPT), *argv], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    partial = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(tmp_path.glob("*.partial.jsonl"))
        if found and sum('"key"' in line for line in found[0].read_text().splitlines()) >= BATCH:
            partial = found[0]
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    _out, err = process.communicate()
    assert partial is not None, f"the run ended before it could be killed: {err[-2000:]}"
    assert not list(tmp_path.glob("*[0-9].json")), "the run finished before the kill"
    kept = [json.loads(line) for line in partial.read_text().splitlines() if '"key"' in line]
    assert BATCH <= len(kept) < LIMIT

    # other settings are refused before any model is loaded
    with pytest.raises(UserError, match="differs in: generation"):
        eval_generate.main(base_args(smollm2_dir, shared_data, tmp_path, "--resume", "--max-new-tokens", "5"))
    # --resume without a path finds the newest matching side file in the output folder
    resumed = run_main(base_args(smollm2_dir, shared_data, tmp_path, "--resume", "--batch-size", str(BATCH)))
    assert responses(resumed) == responses(reference)
    meta = json.loads(resumed.read_text())["metadata"]
    assert meta["resumed"] is True and [s["rows"] for s in meta["sessions"]] == [len(kept), LIMIT - len(kept)]
    assert meta["sessions"][1]["rows_before"] == len(kept)
    assert not partial.exists()
    # a finished run is left alone, and its name is never reused
    assert eval_generate.main(["--resume", str(resumed), *base_args(smollm2_dir, shared_data, tmp_path)]) == 0
    with pytest.raises(UserError, match="already exists"):
        eval_generate.main(base_args(smollm2_dir, shared_data, resumed))


def test_adapter_gives_base_model_template_and_name(smollm2_dir, shared_data, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "lora_model_fp32"
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    train_config = {"base_model": str(smollm2_dir), "template": "alpaca", "model": {"eos_token": "<|endoftext|>"}}
    (adapter / "train_config.json").write_text(json.dumps(train_config))
    argv = base_args(smollm2_dir, shared_data, tmp_path / "out", "--limit", "1", "--max-new-tokens", "2")
    argv = argv[2:] + ["--lora", str(adapter), "--merge-adapter"]  # no --model: the adapter names its base
    doc_path = run_main(argv)
    meta = json.loads(doc_path.read_text())["metadata"]
    assert meta["template"] == "alpaca" and meta["adapter_train_config"]["template"] == "alpaca"
    assert meta["merge_adapter"] is True
    assert meta["model"] == str(smollm2_dir) and "_lora_model_fp32_fp32_" in doc_path.name
    # the base's EOS, plus the EOS the adapter's train_config.json says it was trained with
    assert meta["generation"]["stop_tokens"] == ["<|im_end|>", "<|endoftext|>"]


def run_cli(*argv, timeout=120):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def test_help_is_instant():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--resume", "--batch-size", "--static-cache", "--no-chat-template", "--max-new-tokens", "--config"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "case, expected",
    [
        ("batch0", "--batch-size must be at least 1"),
        ("missing_model", "model path ./no/such/model does not exist"),
        ("bad_adapter", "is not a LoRA adapter folder"),
        ("not_ifeval", "is not an IFEval prompt set"),
        ("template_clash", "--no-chat-template contradicts --template chat"),
        ("unknown_hub_model", "could not load"),
        ("loader_clash", "--use-hf contradicts --loader unsloth"),
        ("unknown_config_key", "unknown setting(s) batch"),
        ("dequantize_bf16", "--dequantize-once is for 4-bit weights"),
        ("layers_once_on_a_cpu", "--compile-layers-once changes the compiled step, which needs a CUDA GPU"),
        ("output_is_a_file", "is a file, not a folder"),
    ],
)
def test_one_line_errors(case, expected, shared_data, tmp_path):
    prompts = str(shared_data / "ifeval" / "input_data.jsonl")
    not_ifeval = tmp_path / "alpaca.jsonl"
    not_ifeval.write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    argv = {
        "batch0": ["--model", "x/y", "--prompts", prompts, "--batch-size", "0"],
        "missing_model": ["--model", "./no/such/model", "--prompts", prompts],
        "bad_adapter": ["--lora", str(tmp_path), "--prompts", prompts],
        "not_ifeval": ["--model", str(tmp_path), "--prompts", str(not_ifeval)],
        "template_clash": ["--model", "x/y", "--template", "chat", "--no-chat-template"],
        "unknown_hub_model": ["--model", "sfteval-test/no-such-model", "--prompts", prompts, "--limit", "1"],
        "loader_clash": ["--model", "x/y", "--use-hf", "--loader", "unsloth"],
        "unknown_config_key": ["--config", str(write_yaml(tmp_path / "run.yaml", "model: x/y\nbatch: 4\n"))],
        "dequantize_bf16": ["--model", "x/y", "--precision", "bf16", "--dequantize-once"],
        "layers_once_on_a_cpu": ["--model", "x/y", "--prompts", prompts, "--compile-layers-once"],
        "output_is_a_file": ["--model", str(tmp_path), "--prompts", prompts, "--limit", "1"],
    }[case]
    if case in ("not_ifeval", "output_is_a_file"):
        (tmp_path / "config.json").write_text("{}")  # a folder that passes the model check
    if case == "output_is_a_file":
        (tmp_path / "out").write_text("my notes\n")  # refused before the model loads, left as it was
    result = run_cli(*argv, "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last
    assert not (tmp_path / "out").is_dir() or not list((tmp_path / "out").iterdir())
    if case == "output_is_a_file":
        assert (tmp_path / "out").read_text() == "my notes\n"


def test_a_quantized_run_on_a_cpu_fails_before_the_prompts_load(tmp_path, monkeypatch):
    from sfteval.model import loading

    monkeypatch.setattr(loading, "cuda_available", lambda: False)
    config = ifeval_run.RunConfig(model="x/y", precision="8bit", prompts=str(tmp_path / "not_read.jsonl"))
    with pytest.raises(UserError, match=r"^--precision 8bit needs a CUDA GPU.*run_pipeline.py --smoke"):
        ifeval_run.run(config)


# ----------------------------------------------------------------------------- side file and batching


def test_transformers_is_not_imported_before_the_model_loads(shared_data, tmp_path):
    """unsloth patches transformers only when imported first, and the loader imports it."""
    (tmp_path / "config.json").write_text("{}")
    probe = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from sfteval.ifeval import run as ifeval_run

def load(job, log):
    print("transformers imported:", "transformers" in sys.modules)
    raise SystemExit(0)

ifeval_run.load = load
ifeval_run.run(ifeval_run.RunConfig(model={str(tmp_path)!r},
    prompts={str(shared_data / "ifeval" / "input_data.jsonl")!r}, output={str(tmp_path / "out")!r}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "transformers imported: False", result.stderr[-2000:]


def write_yaml(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_compile_mode_reaches_generate():
    from sfteval.ifeval import run as ifeval_run

    def options(compile=False, **flags):
        config = ifeval_run.RunConfig(model="m", static_cache=True, compile=compile, **flags)
        return speed_plan.speed_options(config, speed_plan.SpeedPlan(True, compile, False, ""), 100)

    assert options() == {"cache_implementation": "static", "max_cache_len": 1380, "disable_compile": True}
    assert "compile_config" not in options(compile=True)  # transformers' default, reduce-overhead
    assert options(compile=True, compile_mode="max-autotune")["compile_config"].mode == "max-autotune"


def test_speed_auto_compiles_long_gpu_runs_only():
    from sfteval.ifeval import run as ifeval_run

    def plan(loader="hf", cuda=True, n=541, batch=271, **flags):
        config = ifeval_run.RunConfig(model="m", **flags)
        return speed_plan.plan_speed(config, loader, cuda, n, batch)

    full = plan()  # 2 batches x 1280 steps
    assert (full.static_cache, full.compile, full.gqa_decode) == (True, True, True)
    assert "2560 decode steps" in full.reason and "--speed eager" in full.reason
    short = plan(n=64, batch=64, max_new_tokens=256)
    assert (short.static_cache, short.compile, short.gqa_decode) == (False, False, True)
    assert (plan(cuda=False).compile, plan(cuda=False).gqa_decode) == (False, False)
    assert plan(loader="unsloth").compile is False
    eager = plan(speed="eager", gqa_decode=True)
    assert (eager.static_cache, eager.compile, eager.gqa_decode) == (False, False, True)
    assert plan(n=64, batch=64, max_new_tokens=256, compile=True).compile is True  # a flag forces its knob
    # The compiled step reads the filled cache blocks through flex attention, unless told not to.
    assert full.flex_decode and "(flex)" in full.reason and not short.flex_decode
    assert plan(flex_decode=False).flex_decode is False
    assert plan(speed="eager", compile=True, gqa_decode=True).flex_decode is True
    skipped = plan()
    skipped.compile = False  # as load() does for 8-bit with its outlier path
    assert not skipped.flex_decode and "flex" not in speed_plan.describe_speed(skipped)
    # --compile-layers-once rides on a compiled step only, and says so in the plan.
    once = plan(compile_layers_once=True)
    assert once.compile_layers_once and "one layer compiled, reused" in once.reason
    assert not full.compile_layers_once and "reused" not in full.reason
    assert not plan(n=64, batch=64, max_new_tokens=256, compile_layers_once=True).compile_layers_once
    # cuDNN's attention stays out of a decode loop whose cache grows by a key a step (the eager path).
    grows = speed_plan.grows_cache
    assert grows(ifeval_run.RunConfig(model="m"), short) and not grows(ifeval_run.RunConfig(model="m"), full)
    assert not grows(ifeval_run.RunConfig(model="m", speed="continuous"), plan(speed="continuous"))
    static_only = plan(speed="eager", static_cache=True)
    assert (
        static_only.static_cache and not static_only.compile and not grows(ifeval_run.RunConfig(model="m"), static_only)
    )


def test_four_bit_dequantizes_once_by_default_where_memory_allows():
    from sfteval import cli
    from sfteval.ifeval import run as ifeval_run

    def config(*flags):
        return cli.parse_settings([ifeval_run.RunConfig], ["--model", "m", "--precision", "4bit", *flags], None)[0]

    assert [config(*f).dequantize_once for f in ([], ["--dequantize-once"], ["--dequantize-once", "false"])] == [
        None,
        True,
        False,
    ]
    auto = speed_plan.auto_dequantize
    assert auto(config(), "hf", True)
    assert not any(
        (auto(config("--dequantize-once", "false"), "hf", True), auto(config("--dequantize-once"), "hf", True))
    )  # a flag decides
    assert not auto(config(), "hf", False) and not auto(config(), "unsloth", True)
    assert not auto(config("--speed", "eager"), "hf", True)
    bf16 = cli.parse_settings([ifeval_run.RunConfig], ["--model", "m", "--precision", "bf16"], None)[0]
    assert not auto(bf16, "hf", True)
    # Llama-3.1-8B's NF4 layers in bf16 are about 14 GB: yes with 74 GB free (an 80 GB card), no with 18 (24 GB).
    assert speed_plan.dequantize_fits(14 * 10**9, 74 * 10**9)
    assert not speed_plan.dequantize_fits(14 * 10**9, 18 * 10**9)


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    from sfteval import cli
    from sfteval.ifeval.run import RunConfig

    path = write_yaml(tmp_path / "run.yaml", "model: a/b\nprecision: 4bit\nmax-new-tokens: 64\n")
    (config,) = cli.parse_settings([RunConfig], ["--config", str(path), "--precision", "8bit"], None)
    assert (config.model, config.precision, config.max_new_tokens) == ("a/b", "8bit", 64)


SIDE_HEADER = {"kind": side_file.PARTIAL_KIND, "settings": {"n_prompts": 3}}
SIDE_ROW = {"key": 1, "prompt": "p", "response": "r", "new_tokens": 1, "stop_reason": "eos"}


def side_lines(*objects):
    return "".join(json.dumps(obj) + "\n" for obj in objects)


def test_side_file_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "run.partial.jsonl"
    batch = {"batch": {"session": 0, "rows": 1, "seconds": 1.0}}
    text = side_lines(SIDE_HEADER, {"session": {"index": 0}}, SIDE_ROW, batch)
    path.write_text(text + '{"key": 2, "prompt": "p", "resp')
    partial = side_file.read_partial(path)
    assert partial.torn_tail and [r["key"] for r in partial.rows] == [1] and partial.good_bytes == len(text)
    side = side_file.SideFile(path, truncate_to=partial.good_bytes)
    side.append([{**SIDE_ROW, "key": 2}, batch])
    side.close()
    again = side_file.read_partial(path)
    assert not again.torn_tail and [r["key"] for r in again.rows] == [1, 2] and len(again.batches) == 2
    path.write_text(text + "not json\n")
    with pytest.raises(UserError, match="line 5 is not valid JSON"):
        side_file.read_partial(path)


def test_rows_whose_batch_record_a_kill_cut_off_are_generated_again(tmp_path):
    """A kill inside the one write of a batch can keep its first rows and lose the rest and the
    batch record: those rows belong to no session, so they are dropped like a torn line."""
    path = tmp_path / "run.partial.jsonl"
    settled = side_lines(SIDE_HEADER, {"session": {"index": 0}}, SIDE_ROW, {"batch": {"session": 0, "rows": 1}})
    path.write_text(settled + side_lines({**SIDE_ROW, "key": 2}) + '{"key": 3, "pro')
    partial = side_file.read_partial(path)
    assert [r["key"] for r in partial.rows] == [1] and partial.good_bytes == len(settled) and partial.torn_tail
    assert sum(b["rows"] for b in partial.batches) == len(partial.rows)


def test_find_partial_takes_the_newest_match_and_names_what_differs(tmp_path):
    settings = {"model": "m", "precision": "4bit", "n_prompts": 541}

    def write(name, **changes):
        header = {"kind": side_file.PARTIAL_KIND, "settings": {**settings, **changes, "template": "chat"}}
        (tmp_path / name).write_text(json.dumps(header) + "\n")
        time.sleep(0.01)

    write("a.partial.jsonl")
    write("b.partial.jsonl")
    write("c.partial.jsonl", precision="bf16")
    assert side_file.find_partial(tmp_path, settings).name == "b.partial.jsonl"
    with pytest.raises(UserError, match=r"c.partial.jsonl, differs in: precision, n_prompts"):
        side_file.find_partial(tmp_path, {**settings, "n_prompts": 10})
    assert ifeval_run.RunPaths.from_any(tmp_path / "b.partial.jsonl").output == tmp_path / "b.json"


def test_a_fresh_run_beside_an_unfinished_one_with_its_settings_points_to_resume(tmp_path):
    settings = {"model": "m", "precision": "4bit", "n_prompts": 541}
    side = tmp_path / "m_4bit_20260101_000000.partial.jsonl"
    side.write_text(json.dumps({"kind": side_file.PARTIAL_KIND, "settings": settings}) + "\n")
    config = ifeval_run.RunConfig(model="m", precision="4bit", output=str(tmp_path))
    with pytest.raises(UserError, match=f"{side.name} holds an unfinished run with these settings; pass --resume"):
        ifeval_run.choose_paths(config, settings, "m")
    paths, resuming = ifeval_run.choose_paths(config, {**settings, "precision": "bf16"}, "m")
    assert not resuming and paths.output.parent == tmp_path and not paths.output.exists()


def test_batches_are_balanced_sorted_and_shrink_after_out_of_memory():
    lengths = [5, 50, 7, 49, 8, 30, 31]
    order = ifeval_run.length_order(lengths)
    assert order == [1, 3, 6, 5, 4, 2, 0]
    batcher = ifeval_run.Batcher(order, 4)
    assert batcher.next_batch() == [1, 3, 6, 5]  # 7 at 4 -> 4 + 3
    batcher.shrink(1)
    assert [batcher.next_batch() for _ in range(3)] == [[4], [2], [0]] and not batcher
    big = ifeval_run.Batcher(range(541), 256)
    sizes = []
    while big:
        sizes.append(len(big.next_batch()))
    assert sizes == [181, 180, 180]
    assert ifeval_run.length_order(lengths, pending={0, 1}) == [1, 0]


def test_auto_batch_size_fits_the_8b_kv_cache_on_an_80gb_card():
    kv, act = 2 * 32 * 8 * 128 * 2, (2 * 14336 + 4 * 4096) * 2  # Llama-3.1-8B, bf16
    assert kv == 128 * 1024
    size = speed_plan.fit_batch_size(63 * 10**9, kv, act, 410, 1280, 541)
    assert 181 <= size <= 256  # 3 batches of 181 for the 541 prompts
    assert speed_plan.fit_batch_size(10**9, kv, act, 410, 1280, 541) == 1
    assert speed_plan.fit_batch_size(10**12, kv, act, 410, 1280, 20) == 20


def test_auto_batch_size_reads_the_model_shape(monkeypatch):
    import types

    import torch
    from transformers import LlamaConfig

    model = types.SimpleNamespace(
        config=LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=8, vocab_size=128256),
        dtype=torch.bfloat16,
    )  # fmt: skip
    assert speed_plan.auto_batch_size(model, 541, 410, 1280) == speed_plan.CPU_BATCH_SIZE
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: calls.append("mem_get_info") or (63 * 10**9, 80 * 10**9))
    assert speed_plan.auto_batch_size(model, 541, 410, 1280) == 214
    assert calls == ["empty_cache", "mem_get_info"]  # what the allocator holds unused counts as free
