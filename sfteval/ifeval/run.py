"""The IFEval generation run behind eval_generate.py.

Every prompt of a prompt set goes through one model in left-padded batches of similar prompt
length (longest first, so an out-of-memory batch shows up at once). Each finished batch is
appended to a side file, so a crash loses at most the batch in flight, and `resume` completes
that file. The end result is the `ifeval_responses` document of docs/FORMATS.md, written
atomically, plus `<stem>.official.jsonl` for Google's scorer. The side file is then removed:
the final document holds everything it held.

The side file's format and reading are in sfteval.ifeval.side_file.

Shards: `shard="i/N"` generates every N-th prompt of the prompt set (after `limit`), starting
at prompt i (0-based), into `<name>.shard<i>of<N>.json`; `sfteval.ifeval.shards.merge` (merge_shards.py)
joins N such files into the one-process run's file. Under a launcher (`accelerate launch`,
`torchrun`) every process takes the shard of its rank and the main process merges them at the end.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sfteval import distributed, records
from sfteval.cli import UserError, setting, tqdm_disable
from sfteval.ifeval import prompts as ifeval_prompts
from sfteval.ifeval import side_file, speed_plan
from sfteval.model import attention, generation

KIND = "ifeval_responses"
DEFAULT_DIR = Path("eval_responses")
OFFICIAL_SUFFIX = ".official.jsonl"

# Fields of `settings` that can be known before the model is loaded; the template and the
# stop tokens need the tokenizer and are compared once it is loaded.
LATE_SETTINGS = ("template", "stop_token_ids")

PADDING_NOTE = (
    "prompts are left-padded by sfteval.model.generation.left_pad, never by the tokenizer; "
    "tokenizer.padding_side is still reset to 'left' before every batch because unsloth flips it "
    "to 'right' after generate (unsloth issue #3283)"
)


# --speed continuous writes its finished rows to the side file in groups: this many rows, or
# whatever finished in this many seconds, whichever comes first.
CONTINUOUS_GROUP_ROWS = 32
CONTINUOUS_GROUP_SECONDS = 30.0


@dataclass
class RunConfig:
    """The settings of one generation run; eval_generate.py's options are generated from these fields."""

    model: str | None = setting(
        None,
        "hub name (e.g. unsloth/Meta-Llama-3.1-8B), local folder or .gguf file; "
        "with --lora, the adapter's base by default",
    )
    adapter: str | None = setting(
        None, "LoRA adapter folder written by train.py (or any PEFT adapter)", aliases=["--lora"], metavar="DIR"
    )
    precision: Literal["bf16", "8bit", "4bit", "fp32"] = setting("bf16", "weights precision (fp32: CPU reference runs)")
    loader: Literal["auto", "hf", "unsloth"] = setting(
        "auto", "auto = transformers (with the fast decode path below it is the faster generator); unsloth on request"
    )
    use_hf: bool = setting(False, "same as --loader hf")
    template: Literal["auto", "chat", "alpaca", "none"] = setting(
        "auto", "prompt format: auto = the adapter's training template, else the tokenizer's chat template, else none"
    )
    no_chat_template: bool = setting(False, "prompt with the raw instruction (same as --template none)")
    merge_adapter: bool = setting(
        False,
        "with --lora on bf16/fp32 weights: merge the LoRA into the base before generating (fewer kernels per "
        "step; other rounding, so part of the run's settings)",
    )
    llm_int8_threshold: float = setting(
        6.0, "8bit only: activations above this magnitude run in 16-bit (LLM.int8 outliers; 0 = pure int8, faster)"
    )
    prompts: str | None = setting(
        None, "local IFEval input_data.jsonl (default: the hub's google/IFEval)", metavar="FILE"
    )
    limit: int | None = setting(None, "only the first N prompts (a quick check)", metavar="N")
    max_new_tokens: int = setting(1280, "new tokens at most per answer (lm-eval's IFEval setting)", metavar="N")
    seed: int = setting(0, "set before generating")
    batch_size: str | None = setting(
        "auto",
        "prompts per generate call; auto = as many as the free GPU memory holds at full length (8 on a CPU)",
        metavar="N|auto",
    )
    speed: Literal["auto", "eager", "continuous"] = setting(
        "auto",
        "auto = on a CUDA GPU with transformers: GQA decode always, and a compiled static-cache decode step "
        "when the run is long enough to repay the compile; eager = only the knobs given below; continuous "
        "(opt-in, transformers loader) = transformers' continuous batching: all prompts queued on a paged KV "
        "cache, a finished answer's place taken by the next prompt at once (--batch-size caps the requests "
        "per step)",
    )
    static_cache: bool = setting(False, "force a preallocated KV cache of one size for every batch")
    compile: bool = setting(False, "force torch.compile of the decode step (CUDA graphs; needs the static cache)")
    compile_mode: Literal["reduce-overhead", "max-autotune"] = setting(
        speed_plan.DEFAULT_COMPILE_MODE, "torch.compile mode; max-autotune also tries Triton matmuls (longer compile)"
    )
    compile_layers_once: bool = setting(
        False,
        "in a compiled decode step, trace and compile one decoder layer and reuse it for every layer (torch's "
        "nested compile region) instead of unrolling all layers into one graph: a shorter compile of the same "
        "operations (opt-in until its answers are compared with the default's on a GPU)",
    )
    gqa_decode: bool = setting(
        False,
        "force GQA decode: each key/value head of the cache read once per new token instead of once per "
        "query head it serves (same attention, sfteval/model/attention.py)",
    )
    flex_decode: bool = setting(
        True,
        "in a compiled GQA decode step, read only the static cache's blocks that hold tokens (torch flex "
        "attention) rather than the whole preallocated cache through SDPA",
    )
    dequantize_once: bool | None = setting(
        None,
        "4bit with transformers: NF4 weights dequantized to bf16 once at load (the 4-bit weights at bf16's "
        "speed and memory). Default: on a CUDA GPU with --speed auto, when the bf16 copies take at most half "
        "the free memory (the same weights and matmuls as the compiled step's per-step dequantization); "
        "false keeps them 4-bit",
        nargs="?",
        const=True,
        metavar="true|false",
    )
    output: str | None = setting(None, "a .json file name, or a folder (default: eval_responses/)", metavar="PATH")
    resume: str | None = setting(
        None,
        "complete an unfinished run: its .partial.jsonl (or .json), or with no PATH the newest one made with "
        "the same settings",
        nargs="?",
        const="auto",
        metavar="PATH",
    )
    progress: bool = setting(True, "progress bar")
    shard: str | None = setting(
        None,
        "i/N: generate only every N-th prompt starting at prompt i (0-based) into <name>.shard<i>of<N>.json; "
        "merge_shards.py joins the N files into the one-process run's file. Under accelerate launch or torchrun "
        "each process takes its rank's shard and the main one merges them (leave this out there)",
        metavar="i/N",
    )

    def __post_init__(self) -> None:
        if self.no_chat_template:
            if self.template not in ("auto", "none"):
                raise UserError(f"--no-chat-template contradicts --template {self.template}")
            self.template = "none"
        if self.use_hf:
            if self.loader == "unsloth":
                raise UserError("--use-hf contradicts --loader unsloth")
            self.loader = "hf"
        self.batch_size = None if self.batch_size in (None, "auto") else count(self.batch_size, "--batch-size", True)
        self.limit = count(self.limit, "--limit")
        self.max_new_tokens = count(self.max_new_tokens, "--max-new-tokens")


def count(value: Any, flag: str, allow_auto: bool = False) -> int | None:
    """A positive whole number (None stays None), or a one-line error naming the flag."""
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, float) and value != number:
        raise UserError(f"{flag} must be a whole number{' or auto' if allow_auto else ''}, got {value!r}")
    if number < 1:
        raise UserError(f"{flag} must be at least 1, got {number}")
    return number


@dataclass
class RunPaths:
    output: Path

    @property
    def stem(self) -> str:
        return self.output.name[: -len(".json")]

    @property
    def partial(self) -> Path:
        return self.output.with_name(self.stem + side_file.PARTIAL_SUFFIX)

    @property
    def official(self) -> Path:
        return self.output.with_name(self.stem + OFFICIAL_SUFFIX)

    @classmethod
    def from_any(cls, path: str | Path) -> RunPaths:
        """The run a path belongs to: its output .json, its .partial.jsonl or its .official.jsonl."""
        path = Path(path)
        for suffix in (side_file.PARTIAL_SUFFIX, OFFICIAL_SUFFIX):
            if path.name.endswith(suffix):
                return cls(path.with_name(path.name[: -len(suffix)] + ".json"))
        if path.suffix != ".json":
            raise UserError(f"{path}: expected a responses .json file or its {side_file.PARTIAL_SUFFIX} side file")
        return cls(path)


@dataclass
class RunResult:
    output: Path
    official: Path
    status: str  # "written" or "already complete"
    summary: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- shards

SHARD_TAG = ".shard{index}of{count}"


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    from_launcher: bool = False  # one process of `accelerate launch`/`torchrun`: merged at the end

    @property
    def tag(self) -> str:
        return SHARD_TAG.format(index=self.index, count=self.count)

    def take(self, rows: Sequence[Any]) -> list[Any]:
        return list(rows[self.index :: self.count])

    def output(self, path: Path) -> Path:
        """`x.json` -> `x.shard<i>of<N>.json`: the shards of one run side by side, never on one name."""
        return path.with_name(path.name[: -len(".json")] + self.tag + ".json")


def parse_shard(text: str | None) -> Shard | None:
    """`i/N` as given; none given under a launcher of several processes: the rank's shard."""
    launch = distributed.launch()
    if text is None:
        return Shard(launch.rank, launch.world_size, from_launcher=True) if launch.several else None
    if launch.several:
        raise UserError(
            "--shard i/N is for separate runs; under accelerate launch or torchrun leave it out "
            "(each process takes its own shard and the main one merges them)"
        )
    index_text, slash, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        index = count = -1
    if not slash or count < 1 or not 0 <= index < count:
        raise UserError(f"--shard takes i/N with 0 <= i < N (e.g. 0/2 and 1/2), got {text!r}")
    return Shard(index, count)


# ----------------------------------------------------------------------------- settings


def model_identity(name: str) -> str:
    """A local model as its absolute path (so ./m and m match), a hub name as it is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def early_settings(
    config: RunConfig,
    model_name: str,
    loader: str,
    prompt_info: dict[str, Any],
    n_prompts: int,
    shard: Shard | None = None,
) -> dict[str, Any]:
    settings = generation.GenerationSettings(max_new_tokens=config.max_new_tokens, seed=config.seed).to_dict()
    return {
        "model": model_identity(model_name),
        "adapter": str(Path(config.adapter).expanduser().resolve()) if config.adapter else None,
        "precision": config.precision,
        "loader": loader,
        "llm_int8_threshold": config.llm_int8_threshold if config.precision == "8bit" else None,
        "merge_adapter": config.merge_adapter,
        "generation": settings,
        "prompt_set_sha256": prompt_info["sha256"],
        "n_prompts": n_prompts,
        "shard": [shard.index, shard.count] if shard else None,
    }


# ----------------------------------------------------------------------------- batching


class Batcher:
    """Hands out batches from prompts sorted by length, longest first. Batches are balanced:
    541 prompts at batch size 256 become 181 + 180 + 180 rather than 256 + 256 + 29. After an
    out-of-memory split the batch size drops to the size that worked, for the rest of the run."""

    def __init__(self, order: Sequence[int], batch_size: int):
        self.pending = deque(order)
        self.batch_size = batch_size
        self.oom_splits = 0

    def __bool__(self) -> bool:
        return bool(self.pending)

    def next_batch(self) -> list[int]:
        n = len(self.pending)
        size = math.ceil(n / math.ceil(n / self.batch_size))
        return [self.pending.popleft() for _ in range(size)]

    def shrink(self, size: int) -> None:
        self.oom_splits += 1
        self.batch_size = max(1, min(self.batch_size, size))


def length_order(lengths: Sequence[int], pending: set[int] | None = None) -> list[int]:
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [i for i in order if pending is None or i in pending]


def generate_split(
    model: Any,
    tokenizer: Any,
    encoded: Sequence[Sequence[int]],
    indices: list[int],
    settings: generation.GenerationSettings,
    stop_ids: Sequence[int],
    options: dict[str, Any],
    on_split: Callable[[int], None],
) -> Iterator[list[tuple[int, generation.Completion]]]:
    """Generate for `indices`, yielding each finished (sub-)batch; a batch that runs out of GPU
    memory is halved and each half retried, so finished halves are kept."""
    import torch

    failed = False
    try:
        completions = generation.generate_batch(
            model, tokenizer, [encoded[i] for i in indices], settings, stop_ids, **options
        )
    except (RuntimeError, torch.OutOfMemoryError) as err:
        if not generation.is_oom(err):
            raise
        failed = True
    if not failed:
        yield list(zip(indices, completions))
        return
    # Outside the except block, so the failed call's tensors can be freed before the retry.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if len(indices) == 1:
        raise UserError("out of GPU memory on a single prompt; lower --max-new-tokens or use --precision 4bit")
    half = len(indices) // 2
    on_split(half)
    for part in (indices[:half], indices[half:]):
        yield from generate_split(model, tokenizer, encoded, part, settings, stop_ids, options, on_split)


def ensure_left_padding(tokenizer: Any) -> bool:
    """Re-assert left padding; True when the tokenizer had been flipped (unsloth issue #3283)."""
    if getattr(tokenizer, "padding_side", "left") != "left":
        tokenizer.padding_side = "left"
        return True
    return False


# ----------------------------------------------------------------------------- the run


def check_config(config: RunConfig) -> None:
    if config.dequantize_once and config.precision != "4bit":
        raise UserError(f"--dequantize-once is for 4-bit weights; add --precision 4bit (got {config.precision})")
    if config.merge_adapter:
        if not config.adapter:
            raise UserError("--merge-adapter needs --lora")
        if config.precision not in ("bf16", "fp32"):
            raise UserError("--merge-adapter works on bf16 or fp32 weights; a quantized base cannot take the merge")


def check_continuous(config: RunConfig, loader: str) -> None:
    """--speed continuous runs transformers' own continuous batching, with its own paged cache and attention."""
    if loader != "hf":
        raise UserError(
            "--speed continuous is transformers' continuous batching; the unsloth loader has none (add --use-hf)"
        )
    knobs = [
        flag
        for flag, on in (
            ("--static-cache", config.static_cache),
            ("--compile", config.compile),
            ("--gqa-decode", config.gqa_decode),
        )
        if on
    ]
    if knobs:
        raise UserError(f"--speed continuous runs its own paged KV cache and attention; leave out {', '.join(knobs)}")


def default_output(folder: Path, model_name: str, adapter: str | None, precision: str) -> Path:
    name = records.slug(model_name) + (f"_{records.slug(adapter)}" if adapter else "")
    base = folder / f"{name}_{precision}_{records.timestamp()}.json"
    for n in range(10_000):
        candidate = RunPaths(base if n == 0 else base.with_name(f"{base.stem}_{n}.json"))
        if not any(p.exists() for p in (candidate.output, candidate.partial, candidate.official)):
            return candidate.output
    raise UserError(f"could not find a free output name in {folder}")


def output_is_file(config: RunConfig) -> bool:
    """--output names a file when it ends in .json; anything else is a folder."""
    return config.output is not None and config.output.endswith(".json") and not Path(config.output).is_dir()


def output_folder(config: RunConfig) -> Path:
    if config.output is None:
        return DEFAULT_DIR
    return Path(config.output).parent if output_is_file(config) else Path(config.output)


def choose_paths(
    config: RunConfig, settings: dict[str, Any], model_name: str, shard: Shard | None = None
) -> tuple[RunPaths, bool]:
    """(paths, resuming). A fresh run refuses any existing file of its name. A shard's file is
    the run's name with its shard tag, so the processes of one command never share a name."""
    explicit_file = output_is_file(config)
    named = RunPaths.from_any(config.output).output if explicit_file else None
    if named is not None and shard:
        named = shard.output(named)
    if config.resume:
        if config.resume != "auto":
            paths = RunPaths.from_any(config.resume)
            if named is not None and named != paths.output:
                raise UserError("--output and --resume name different runs; give only --resume PATH")
        elif named is not None:
            paths = RunPaths(named)
        else:
            paths = RunPaths.from_any(side_file.find_partial(output_folder(config), settings))
        return paths, True
    if named is None:
        folder = output_folder(config)
        unfinished = next((path for path, diff in side_file.side_files(folder, settings) if not diff), None)
        if unfinished is not None:
            raise UserError(
                f"{unfinished} holds an unfinished run with these settings; pass --resume to complete it, "
                "or delete that file to start over"
            )
        named = default_output(folder, model_name, config.adapter, config.precision)
        named = shard.output(named) if shard else named
    paths = RunPaths(named)
    if paths.output.exists() or paths.official.exists():
        raise UserError(f"{paths.output} already exists; nothing is overwritten (choose another --output)")
    if paths.partial.exists():
        raise UserError(f"{paths.partial} holds an unfinished run; pass --resume {paths.partial} to complete it")
    return paths, False


@dataclass
class Job:
    """A run worked out before any model is loaded: what to generate, where, and what is done."""

    config: RunConfig
    model_name: str
    train_config: dict[str, Any] | None
    prompt_info: dict[str, Any]
    selected: list[dict[str, Any]]
    loader: str
    has_cuda: bool
    settings: dict[str, Any]
    paths: RunPaths
    partial: side_file.Partial | None  # the side file being resumed
    shard: Shard | None = None
    n_prompts_all_shards: int = 0


@dataclass
class Ready:
    """The loaded model and what loading it decided."""

    loaded: Any  # loading.LoadedModel
    model: Any
    template: str
    stop_ids: list[int]
    encoded: list[list[int]]
    batch_size: int | None  # None only with --speed continuous and no --batch-size
    # HF 4-bit: "bitsandbytes" (its kernel), "torch" (sfteval.model.nf4, compiled) or "once" (bf16 weights)
    nf4_dequantize: str | None
    speed: speed_plan.SpeedPlan
    cudnn_attention: bool | None  # whether SDPA may pick cuDNN's kernel; None without CUDA


def plan(config: RunConfig) -> Job:
    """Every check that needs no model: flags, this machine, adapter, model path, prompts, output
    names, and for --resume the side file and its settings. Errors here cost seconds, not a model load."""
    from sfteval.model import loading

    check_config(config)
    loader, has_cuda = loading.check_machine(config.precision, use_hf=config.loader != "unsloth")
    shard = parse_shard(config.shard)
    model_name, train_config = loading.resolve_base_model(config.model, config.adapter)
    loading.check_model_source(model_name)
    rows, prompt_info = ifeval_prompts.load_prompt_set(config.prompts)
    selected = rows[: config.limit] if config.limit else rows
    n_all = len(selected)
    if shard:
        selected = shard.take(selected)
        if not selected:
            raise UserError(f"shard {shard.index}/{shard.count} holds no prompt: only {n_all} prompts to share")
    if config.compile and not has_cuda:
        raise UserError("--compile needs a CUDA GPU; on a CPU leave it out")
    if config.compile_layers_once and not has_cuda:
        raise UserError(
            "--compile-layers-once changes the compiled step, which needs a CUDA GPU; on a CPU leave it out"
        )
    if config.compile_layers_once and (loader != "hf" or config.speed == "continuous"):
        raise UserError(
            "--compile-layers-once changes transformers' compiled step; add --use-hf and leave out --speed continuous"
        )
    if config.speed == "continuous":
        check_continuous(config, loader)
    if shard and shard.from_launcher and loader != "hf":
        raise UserError(
            "under a launcher each process loads its model onto its own GPU with transformers; add --use-hf "
            "(or run one --shard i/N per GPU with CUDA_VISIBLE_DEVICES=i and merge_shards.py)"
        )
    if config.merge_adapter and loader != "hf":
        raise UserError("--merge-adapter needs the transformers loader; add --use-hf")
    if config.dequantize_once and loader != "hf":
        raise UserError("--dequantize-once changes transformers' 4-bit layers; add --use-hf")
    if config.gqa_decode and loader != "hf":
        raise UserError("--gqa-decode changes transformers' attention; add --use-hf")
    if config.compile and loader == "hf" and not config.gqa_decode and config.speed == "eager":
        # 8B shape (bench/README.md): compiled without it was slower than eager; with it, 3.6x faster.
        print(
            "note: a static cache always carries a mask, so without --gqa-decode every compiled step copies "
            "the KV cache per query head; add --gqa-decode for the fast path",
            file=sys.stderr,
        )
    settings = early_settings(config, model_name, loader, prompt_info, len(selected), shard)
    paths, resuming = choose_paths(config, settings, model_name, shard)
    records.check_writable_folder(paths.output.parent, "the output folder")
    partial = None
    if resuming and not paths.output.exists():
        partial = side_file.read_partial(paths.partial)
        diff = side_file.differing(settings, partial.header.get("settings", {}), list(settings))
        if diff:
            raise UserError(f"--resume: {paths.partial.name} was made with other settings ({', '.join(diff)} differ)")
    return Job(
        config,
        model_name,
        train_config,
        prompt_info,
        selected,
        loader,
        has_cuda,
        settings,
        paths,
        partial,
        shard,
        n_all,
    )


def load(job: Job, log: Callable[[str], None]) -> Ready:
    from sfteval import prompts
    from sfteval.model import loading

    config = job.config
    loaded = loading.load_model(
        loading.ModelSpec(
            model=job.model_name,
            precision=config.precision,
            use_hf=job.loader == "hf",
            lora=config.adapter,
            llm_int8_threshold=config.llm_int8_threshold,
        )
    )
    if loaded.info["loader"] != job.loader:
        raise AssertionError(f"loader {loaded.info['loader']} differs from the predicted {job.loader}")
    model, tokenizer = loaded.model, loaded.tokenizer
    if config.merge_adapter:
        model = model.merge_and_unload()
    adapter_template = (job.train_config or {}).get("template")
    template = prompts.resolve_template(config.template, tokenizer, adapter_template)
    encoded = [prompts.encode(tokenizer, prompts.render(template, tokenizer, r["prompt"])) for r in job.selected]
    longest = max(len(ids) for ids in encoded)
    nf4_dequantize = "bitsandbytes" if loaded.info["loader"] == "hf" and config.precision == "4bit" else None
    once = bool(config.dequantize_once)
    if nf4_dequantize:
        from sfteval.model import nf4
    if speed_plan.auto_dequantize(config, job.loader, job.has_cuda):
        import torch

        needed, free = nf4.dequantized_bytes(model), torch.cuda.mem_get_info()[0]
        once = speed_plan.dequantize_fits(needed, free)
        sizes = f"{needed / 1e9:.1f} GB of the {free / 1e9:.1f} GB free"
        log(
            f"4-bit: auto: NF4 weights dequantized to bf16 once ({sizes}): the compiled step's weights and "
            "matmuls at bf16's speed; --dequantize-once false keeps them 4-bit"
            if once
            else f"4-bit: auto: NF4 weights stay 4-bit (bf16 copies would take {sizes}, over half)"
        )
    if once:  # before the batch is sized: the bf16 weights take their memory first
        log(f"note: {nf4.dequantize_once(model)} NF4 layers dequantized to bf16 once (bf16's memory and speed)")
        nf4_dequantize = "once"
    if config.speed == "continuous":  # the requests per step; None: transformers sizes them
        batch_size = config.batch_size
    else:
        # Sized for the longest cache any path allocates (FLEX_DECODE's, whole blocks).
        cache_prompt = attention.static_cache_length(longest, config.max_new_tokens, True) - config.max_new_tokens
        batch_size = config.batch_size or speed_plan.auto_batch_size(
            model, len(encoded), cache_prompt, config.max_new_tokens
        )
    speed = speed_plan.plan_speed(config, job.loader, job.has_cuda, len(encoded), batch_size)
    log(f"decode path: {speed.reason}")
    if speed.compile and loaded.info["loader"] == "hf" and config.precision in ("8bit", "4bit"):
        if config.precision == "8bit" and config.llm_int8_threshold > 0:
            # 8B shape, H100 (bench/README.md): the outlier path's graph breaks hit torch's recompile
            # limit and the run did not finish its warm-up; at threshold 0 compiling made it 3.9x faster.
            log("note: --compile is skipped for 8-bit with its outlier path; add --llm-int8-threshold 0 to compile")
            speed.compile = False
        elif not loading.allow_bitsandbytes_compile(model):
            log("warning: transformers will not compile this bitsandbytes model (bitsandbytes >= 0.46 is needed)")
        elif config.precision == "4bit" and nf4_dequantize != "once":
            # 8B shape, H100 (bench/README.md): a compiled 4-bit step took 2.7x bf16's time with
            # bitsandbytes' dequantization kernel, 1.7x with this one.
            log(f"note: {nf4.use_compiled_nf4(model)} NF4 layers dequantize in compiled torch code")
            nf4_dequantize = "torch"
    if speed.compile_layers_once:
        log(f"note: one {generation.compile_layers_once(model)} is compiled and reused for every layer")
    elif config.compile_layers_once:
        log("note: --compile-layers-once has no effect: this run's decode step is not compiled")
    cudnn_attention = None
    if job.has_cuda:
        cudnn_attention = not speed_plan.grows_cache(config, speed)
        if not cudnn_attention:
            attention.skip_cudnn_attention()
            log(
                "note: SDPA without cuDNN's kernel, which plans anew for each key length: every step of a growing cache"
            )
    # After the compile decisions above: a step that is not compiled reads the cache through SDPA.
    if speed.gqa_decode:
        attention.use_gqa_decode(model, flex=speed.flex_decode)
    if adapter_template and template != adapter_template:
        log(f"warning: the adapter was trained with the {adapter_template} template; generating with {template}")
    stop_ids = generation.stop_token_ids(tokenizer, model, template)
    stop_ids += [i for i in adapter_stop_ids(tokenizer, job.train_config) if i not in stop_ids]
    job.settings.update(template=template, stop_token_ids=stop_ids)
    if job.partial is not None:
        diff = side_file.differing(job.settings, job.partial.header.get("settings", {}), LATE_SETTINGS)
        if diff:
            raise UserError(
                f"--resume: {job.partial.path.name} was made with other settings ({', '.join(diff)} differ)"
            )
    return Ready(loaded, model, template, stop_ids, encoded, batch_size, nf4_dequantize, speed, cudnn_attention)


def open_side_file(job: Job, session: dict[str, Any], log: Callable[[str], None]) -> side_file.SideFile:
    paths = job.paths
    if job.partial is None:
        paths.output.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "kind": side_file.PARTIAL_KIND,
            "schema_version": records.SCHEMA_VERSION,
            "output": paths.output.name,
            "created_at": records.now_iso(),
            "settings": job.settings,
        }
        with open(paths.partial, "x", encoding="utf-8", newline="\n") as handle:  # "x": never overwrite
            handle.write(json.dumps(header, ensure_ascii=False) + "\n")
        side = side_file.SideFile(paths.partial)
    else:
        if job.partial.torn_tail:
            log(f"dropping what the crash cut short at the end of {paths.partial.name} (it is generated again)")
        side = side_file.SideFile(paths.partial, truncate_to=job.partial.good_bytes)
    side.append([{"session": session}])
    return side


def run(config: RunConfig, log: Callable[[str], None] | None = None) -> RunResult:
    """Generate (or complete) the responses file described by `config`."""
    log = log or (lambda text: print(text, file=sys.stderr))
    job = plan(config)
    if job.shard and job.shard.from_launcher:
        distributed.init_process_group()
        result = run_planned(job, log)
        return merge_launched_shards(job, result)
    return run_planned(job, log)


def merge_launched_shards(job: Job, result: RunResult) -> RunResult:
    """Under a launcher: wait for every process's shard; the main process joins them into one file."""
    from sfteval.ifeval import shards

    outputs = [Path(path) for path in distributed.gather(str(result.output))]
    if not distributed.launch().is_main:
        return result
    target = shards.merged_path(outputs[0])
    if target.exists() and result.status == "already complete":
        return RunResult(target, RunPaths(target).official, "already complete")
    merged = shards.merge(outputs)
    return RunResult(
        merged, RunPaths(merged).official, "written", summary_of(records.read_json(merged, "responses file"))
    )


def run_planned(job: Job, log: Callable[[str], None]) -> RunResult:
    config, paths = job.config, job.paths
    if paths.output.exists():  # --resume of a finished run; a crash may have come before its last steps
        if not paths.official.exists():
            write_official(paths.official, records.read_json(paths.output, "responses file")["responses"])
        paths.partial.unlink(missing_ok=True)
        return RunResult(paths.output, paths.official, "already complete")

    import torch

    if job.has_cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    ready = load(job, log)  # first: unsloth must be imported before transformers
    from transformers import set_seed

    set_seed(config.seed)
    done = done_rows(job.partial, job.selected) if job.partial else {}
    session = {
        "index": len(job.partial.sessions) if job.partial else 0,
        "started_at": records.now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": platform.node(),
        "gpu": torch.cuda.get_device_name() if job.has_cuda else None,
        "batch_size": ready.batch_size,
        "batch_size_requested": config.batch_size or "auto",
        "speed": config.speed,
        "static_cache": ready.speed.static_cache,
        "compile": ready.speed.compile,
        "compile_mode": config.compile_mode if ready.speed.compile else None,
        "gqa_decode": ready.speed.gqa_decode,
        "flex_decode": ready.speed.flex_decode,
        "compile_layers_once": ready.speed.compile_layers_once,
        "cudnn_attention": ready.cudnn_attention,
        "speed_reason": ready.speed.reason,
        "nf4_dequantize": ready.nf4_dequantize,
        "load_seconds": round(time.perf_counter() - started, 2),
        "cuda_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "rows_before": len(done),
    }
    side = open_side_file(job, session, log)
    knobs = " | static cache" + (" + compile" if ready.speed.compile else "") if ready.speed.static_cache else ""
    knobs += (" | GQA decode" + (" (flex)" if ready.speed.flex_decode else "")) if ready.speed.gqa_decode else ""
    knobs += " | continuous batching" if config.speed == "continuous" else ""
    log(
        f"[{job.model_name} | adapter {config.adapter} | {config.precision} | {job.loader} | template "
        f"{ready.template} | {len(job.selected)} prompts, {len(done)} done | batch size {ready.batch_size or 'auto'}"
        f"{knobs}] -> {paths.output}"
    )
    generate = generate_continuous if config.speed == "continuous" else generate_pending
    try:
        resets = generate(job, ready, done, session, side)
    finally:
        side.close()
    document = build_document(job, ready, side_file.read_partial(paths.partial), resets)
    records.write_json_atomic(paths.output, document)
    write_official(paths.official, document["responses"])
    paths.partial.unlink()
    return RunResult(paths.output, paths.official, "written", summary_of(document))


def summary_of(document: dict[str, Any]) -> dict[str, Any]:
    meta = document["metadata"]
    keys = ("n_prompts", "tokens_generated", "tokens_per_second", "wall_seconds", "stop_reasons", "peak_gpu_memory_gb")
    return {k: meta[k] for k in keys}


def adapter_stop_ids(tokenizer: Any, train_config: dict[str, Any] | None) -> list[int]:
    """The EOS the adapter was trained to end its answers with, as train.py records it
    (`model.eos_token_id` / `model.eos_token` in train_config.json; top-level keys also read)."""
    ids: list[int] = []
    for place in (train_config or {}, (train_config or {}).get("model") or {}):
        if isinstance(place.get("eos_token_id"), int):
            ids.append(place["eos_token_id"])
        token = place.get("eos_token")
        vocab = tokenizer.get_vocab()
        if isinstance(token, str) and token in vocab:
            ids.append(vocab[token])
    return ids


def done_rows(partial: side_file.Partial, selected: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    wanted = {r["key"]: r for r in selected}
    done: dict[int, dict[str, Any]] = {}
    for row in partial.rows:
        key = row.get("key")
        if key not in wanted or row.get("prompt") != wanted[key]["prompt"]:
            raise UserError(f"{partial.path} holds a response to a prompt (key {key}) that is not in this prompt set")
        if key in done:
            raise UserError(f"{partial.path} holds key {key} twice; the side file is damaged")
        done[key] = row
    return done


def generate_pending(
    job: Job, ready: Ready, done: dict[int, dict[str, Any]], session: dict[str, Any], side: side_file.SideFile
) -> int:
    """The batch loop over the prompts not yet in `done`; each finished (sub-)batch goes to the
    side file at once. Returns how often the tokenizer's padding side had to be reset."""
    from tqdm import tqdm

    config, selected, encoded = job.config, job.selected, ready.encoded
    tokenizer = ready.loaded.tokenizer
    lengths = [len(ids) for ids in encoded]
    pending = {i for i, row in enumerate(selected) if row["key"] not in done}
    batcher = Batcher(length_order(lengths, pending), ready.batch_size)
    settings = generation.GenerationSettings(max_new_tokens=config.max_new_tokens, seed=config.seed)
    options = speed_plan.speed_options(config, ready.speed, max(lengths))
    resets = 0
    shape: tuple[int, int] | None = None  # (batch size setting, rows of its first batch)
    bar = tqdm(
        total=len(selected),
        initial=len(done),
        unit="prompt",
        desc="generating",
        disable=tqdm_disable(config.progress),
    )
    try:
        while batcher:
            batch = batcher.next_batch()
            if shape is None or shape[0] != batcher.batch_size:
                shape = (batcher.batch_size, len(batch))
            # With a compiled static cache every batch keeps the first one's shape (extra rows
            # repeat the last prompt and are dropped), so the decode step is compiled once.
            padded = batch + [batch[-1]] * (shape[1] - len(batch)) if ready.speed.compile else batch
            reset = ensure_left_padding(tokenizer)
            resets += reset
            started = time.perf_counter()
            parts = generate_split(
                ready.model, tokenizer, encoded, padded, settings, ready.stop_ids, options, batcher.shrink
            )
            for part in parts:
                kept = []
                for index, completion in part:
                    key = selected[index]["key"]
                    if key not in done:  # repeats added for the static shape are dropped
                        done[key] = response_row(selected[index], completion)
                        kept.append(done[key])
                seconds = time.perf_counter() - started
                tokens = sum(r["new_tokens"] for r in kept)
                batch_record = {
                    "session": session["index"],
                    "rows": len(kept),
                    "generated_rows": len(part),
                    "from_split": len(part) < len(padded),
                    "prompt_width": max(lengths[i] for i, _ in part),
                    "seconds": round(seconds, 3),
                    "new_tokens": tokens,
                    "padding_side_reset": bool(reset),
                    "compiled": speed_plan.was_compiled(ready.model) if ready.speed.compile else False,
                    "peak_gpu_memory_gb": records.peak_gpu_memory_gb(),
                }
                side.append([*kept, {"batch": batch_record}])
                bar.update(len(kept))
                bar.set_postfix(tok_s=f"{tokens / max(seconds, 1e-9):.0f}", batch=batcher.batch_size)
                started = time.perf_counter()
                reset = False
    finally:
        bar.close()
    return resets


def generate_continuous(
    job: Job, ready: Ready, done: dict[int, dict[str, Any]], session: dict[str, Any], side: side_file.SideFile
) -> int:
    """--speed continuous: every prompt not yet in `done` goes to transformers' continuous
    batching at once (longest first); finished rows reach the side file in groups of
    CONTINUOUS_GROUP_ROWS, or every CONTINUOUS_GROUP_SECONDS, each group with its `batch` record,
    so a crash loses at most one group. No padding side is involved: returns 0 resets."""
    from tqdm import tqdm

    from sfteval.model import continuous

    config, selected, encoded = job.config, job.selected, ready.encoded
    lengths = [len(ids) for ids in encoded]
    order = length_order(lengths, {i for i, row in enumerate(selected) if row["key"] not in done})
    if not order:
        return 0
    settings = generation.GenerationSettings(max_new_tokens=config.max_new_tokens, seed=config.seed)
    bar = tqdm(
        total=len(selected), initial=len(done), unit="prompt", desc="generating", disable=tqdm_disable(config.progress)
    )
    group: list[tuple[int, dict[str, Any]]] = []
    knobs: dict[str, Any] = {}
    started = time.perf_counter()

    def write_group() -> None:
        nonlocal started
        if not group:
            return
        seconds = time.perf_counter() - started
        tokens = sum(row["new_tokens"] for _, row in group)
        batch_record = {
            "session": session["index"],
            "rows": len(group),
            "generated_rows": len(group),
            "from_split": False,
            "prompt_width": max(lengths[i] for i, _ in group),
            "seconds": round(seconds, 3),
            "new_tokens": tokens,
            "padding_side_reset": False,
            "compiled": False,
            "peak_gpu_memory_gb": records.peak_gpu_memory_gb(),
            "continuous": knobs,
        }
        side.append([*(row for _, row in group), {"batch": batch_record}])
        bar.update(len(group))
        bar.set_postfix(tok_s=f"{tokens / max(seconds, 1e-9):.0f}")
        group.clear()
        started = time.perf_counter()

    try:
        with continuous.start(
            ready.model,
            ready.loaded.tokenizer,
            [(i, encoded[i]) for i in order],
            settings,
            ready.stop_ids,
            ready.batch_size,
            job.has_cuda,
        ) as stream:
            knobs.update(stream.knobs)
            started = time.perf_counter()  # the cache is built; generation time starts here
            results = stream.results(poll_seconds=1.0)
            while True:
                try:
                    item = next(results, False)
                except RuntimeError:  # transformers failed the run (e.g. out of memory): keep what finished
                    write_group()
                    raise
                if item is False:
                    break
                if item is not None:
                    index, completion = item
                    done[selected[index]["key"]] = row = response_row(selected[index], completion)
                    group.append((index, row))
                if len(group) >= CONTINUOUS_GROUP_ROWS or (
                    group and time.perf_counter() - started >= CONTINUOUS_GROUP_SECONDS
                ):
                    write_group()
            write_group()
    finally:
        bar.close()
    return 0


def response_row(prompt_row: dict[str, Any], completion: generation.Completion) -> dict[str, Any]:
    return {
        "key": prompt_row["key"],
        "prompt": prompt_row["prompt"],
        "instruction_id_list": prompt_row["instruction_id_list"],
        "kwargs": prompt_row["kwargs"],
        "response": completion.text,
        "new_tokens": completion.new_tokens,
        "stop_reason": completion.stop_reason,
    }


def build_document(job: Job, ready: Ready, partial: side_file.Partial, padding_resets: int) -> dict[str, Any]:
    """The `ifeval_responses` document from everything the side file holds, all sessions."""
    config, selected = job.config, job.selected
    by_key = {row["key"]: row for row in partial.rows}
    missing = [r["key"] for r in selected if r["key"] not in by_key]
    if missing or len(by_key) != len(partial.rows):
        raise AssertionError(f"responses missing or repeated in {partial.path}: missing {missing[:5]}")
    responses = [by_key[r["key"]] for r in selected]
    wall = sum(b["seconds"] for b in partial.batches)
    tokens = sum(r["new_tokens"] for r in responses)
    peaks = [b["peak_gpu_memory_gb"] for b in partial.batches if b.get("peak_gpu_memory_gb") is not None]
    sessions = []
    for session in partial.sessions:
        own = [b for b in partial.batches if b["session"] == session["index"]]
        sessions.append(
            {
                **session,
                "rows": sum(b["rows"] for b in own),
                "generation_seconds": round(sum(b["seconds"] for b in own), 3),
                "oom_split_parts": sum(1 for b in own if b.get("from_split")),
            }
        )
    model, tokenizer = ready.model, ready.loaded.tokenizer
    continuous_knobs = next((b["continuous"] for b in reversed(partial.batches) if b.get("continuous")), None)
    attn_implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if config.speed == "continuous" and continuous_knobs:
        attn_implementation = continuous_knobs["attn_implementation"]
    metadata = records.run_metadata(
        model=job.model_name,
        model_source=ready.loaded.info.get("model_source"),
        adapter=config.adapter,
        adapter_train_config=job.train_config,
        precision=config.precision,
        weights_dtype=ready.loaded.info.get("weights_dtype"),
        loader=job.loader,
        template=ready.template,
        llm_int8_threshold=config.llm_int8_threshold if config.precision == "8bit" else None,
        merge_adapter=config.merge_adapter,
        attn_implementation=attn_implementation,
        generation={
            **job.settings["generation"],
            "batch_size": ready.batch_size,
            "batch_size_requested": config.batch_size or "auto",
            "stop_token_ids": ready.stop_ids,
            "stop_tokens": tokenizer.convert_ids_to_tokens(ready.stop_ids),
            "speed": config.speed,
            "static_cache": ready.speed.static_cache,
            "compile": ready.speed.compile,
            "gqa_decode": ready.speed.gqa_decode,
            "flex_decode": ready.speed.flex_decode,
            "compile_layers_once": ready.speed.compile_layers_once,
            "cudnn_attention": ready.cudnn_attention,
            "compiled": any(b.get("compiled") for b in partial.batches),
            # transformers' continuous batching as the last --speed continuous session sized it
            "continuous": continuous_knobs,
        },
        prompt_set=job.prompt_info,
        n_prompts=len(selected),
        limit=config.limit,
        shard=(
            {"index": job.shard.index, "count": job.shard.count, "n_prompts_all_shards": job.n_prompts_all_shards}
            if job.shard
            else None
        ),
        wall_seconds=round(wall, 3),
        tokens_generated=tokens,
        tokens_per_second=round(tokens / wall, 2) if wall > 0 else None,
        peak_gpu_memory_gb=max(peaks) if peaks else None,
        load_seconds=ready.loaded.info.get("load_seconds"),
        stop_reasons={reason: sum(r["stop_reason"] == reason for r in responses) for reason in ("eos", "length")},
        batching={
            "order": (
                "prompt length, longest first, all queued at once to transformers' continuous batching; "
                "a batch is a group of finished rows"
                if config.speed == "continuous"
                else "prompt length, longest first; balanced batch sizes"
            ),
            "batches": len(partial.batches),
            "oom_split_parts": sum(1 for b in partial.batches if b.get("from_split")),
            # the first batch of a compiled run also holds the compile
            "batch_seconds": [b["seconds"] for b in partial.batches],
        },
        padding={"side": "left", "padding_side_resets": padding_resets, "note": PADDING_NOTE},
        resumed=len(sessions) > 1,
        sessions=sessions,
        official_jsonl=job.paths.official.name,
    )
    return records.envelope(KIND, metadata, responses=responses)


def write_official(path: Path, responses: list[dict[str, Any]]) -> Path:
    """Google's scorer input: one {"prompt", "response"} object per line, prompt-set order."""
    lines = [json.dumps({"prompt": r["prompt"], "response": r["response"]}, ensure_ascii=False) for r in responses]
    return records.write_text_atomic(path, "\n".join(lines) + "\n")
