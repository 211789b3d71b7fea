"""LoRA / QLoRA supervised finetuning on alpaca data: settings, trainer setup for both
backends, callbacks, resume, and the adapter folder with its train_config.json.

Backends:
- CUDA GPU: TRL's `SFTTrainer` (unsloth's patched one with the default loader, plain TRL with
  --use-hf). It gets the pre-tokenized `input_ids`/`labels` from `sfteval.train.data` and builds its own
  collator, so padding-free batching stays available (unsloth turns it off for custom collators).
- CPU: transformers' `Trainer` with `sfteval.train.data`'s collators. TRL 1.15's `SFTTrainer` always
  patches in a Triton LM head and cannot train on a CPU; the 8-bit optimizer needs CUDA, so
  torch AdamW stands in and the fallback is recorded.

Folders: the finished adapter goes to `--output-dir` (default `lora_model_<precision>`), which
must not exist. While training, everything lives in `<output-dir>.partial/` (checkpoints, the
settings of the run, the W&B run id); at the end the adapter, the tokenizer and
train_config.json are written to a temporary folder there and renamed into place, so a crash
never leaves a half-written adapter folder. `--resume` continues from the last checkpoint in
`.partial/` with the same settings (optimizer, scheduler, RNG and data order restored).

Several processes (`accelerate launch --multi_gpu --num_processes N train.py --use-hf ...` or
`torchrun`): DDP through the Trainer with the transformers loader, each process on its own GPU
(gloo on a CPU). Every process trains and evaluates; only the main one writes the folders, the
settings and the adapter, and logs to W&B. The effective batch is batch size x grad accum x N,
and a --resume needs the same N.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from sfteval import cli, distributed, prompts, records
from sfteval.cli import UserError, setting
from sfteval.model import attention, loading
from sfteval.train import data as data_mod

TRAIN_CONFIG_KIND = "train_config"
TEMPLATE = "alpaca"
PARTIAL_SUFFIX = ".partial"
RUN_SETTINGS_FILE = "run_settings.json"
WANDB_ID_FILE = "wandb_run_id"
CHECKPOINT_PREFIX = "checkpoint-"  # transformers' checkpoint folder names
TRAINER_STATE_FILE = "trainer_state.json"
EIGHT_BIT_OPTIMIZERS = ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit")
OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "adamw_torch", "adamw_torch_fused")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
REPORT_TO = ("auto", "wandb", "none")
ATTENTIONS = ("sdpa", "varlen")
# Settings that may change between an interrupted run and its --resume.
RESUME_FREE = {
    "resume",
    "report_to",
    "wandb_project",
    "run_name",
    "keep_checkpoints",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "eval_on_start",
    "output_dir",
    "token_budget",
    "compile",
    "attention",
    "peft_input_cast",
}


@dataclass
class TrainSettings:
    """Every knob of a run; train.py's options are generated from these fields. The defaults are
    Unsloth's Llama-3.1-8B Alpaca notebook (recipes/seed.yaml), one epoch instead of its 60-step demo;
    train.py's automatic recipe choice and --recipe/--config change them before the flags do."""

    model: str = setting("unsloth/Meta-Llama-3.1-8B", "base model: hub name, local folder or .gguf")
    dataset: str = setting("yahma/alpaca-cleaned", "hub name or local alpaca .json/.jsonl")
    dataset_split: str = setting("train", "hub split")
    dataset_revision: str | None = setting(None, "hub revision (commit, tag or branch) to pin")
    limit: int | None = setting(None, "use only the first N records", metavar="N")
    val_size: float = setting(0.0, "held-out examples: a fraction < 1 or a count (0 = none)")
    max_length: int = setting(2048, "tokens per example at most")
    overlong: Literal["drop", "truncate"] = setting(
        "drop", "examples over --max-length: drop them, or keep their first tokens (no EOS); counted either way"
    )
    precision: Literal["bf16", "8bit", "4bit", "fp32"] = setting(
        "4bit", "base weights: 4bit = QLoRA, bf16/8bit = LoRA, fp32 = CPU reference"
    )
    use_hf: bool = setting(False, "transformers + peft + TRL + bitsandbytes instead of unsloth (always on a CPU)")
    lora_r: int = setting(16, "LoRA rank", aliases=["--rank"])
    lora_alpha: int = setting(16, "LoRA alpha (the update is scaled by alpha / rank)")
    lora_dropout: float = setting(0.0, "dropout on the LoRA input, in [0, 1)")
    target_modules: list[str] = dataclasses.field(
        default_factory=lambda: list(loading.DEFAULT_LORA_TARGETS),
        metadata={"help": "modules that get a LoRA, space- or comma-separated (default: all 7 projections)"},
    )
    learning_rate: float = setting(2e-4, "peak learning rate", aliases=["--lr"])
    optim: Literal["adamw_8bit", "paged_adamw_8bit", "adamw_torch", "adamw_torch_fused"] = setting(
        "adamw_8bit", "optimizer (torch AdamW stands in on a CPU)"
    )
    batch_size: int = setting(2, "examples per micro-batch")
    grad_accum: int = setting(4, "micro-batches per optimizer step")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = setting(
        "linear", "learning-rate schedule after the warm-up"
    )
    warmup_steps: int = setting(5, "optimizer steps of linear warm-up")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    max_grad_norm: float = setting(1.0, "gradient-norm clip (0 = off)")
    seed: int = setting(3407, "seed of the LoRA init, the data order and dropout")
    epochs: float = setting(1.0, "passes over the data")
    max_steps: int | None = setting(None, "stop after this many optimizer steps (overrides --epochs)", metavar="N")
    packing: bool | None = setting(
        None,
        "padding-free batches: a micro-batch's examples in one row, attention kept within each example "
        "(default: unsloth decides, usually on; transformers pads)",
        nargs="?",
        const=True,
        metavar="true|false",
    )
    gradient_checkpointing: bool = setting(
        True, "recompute activations in the backward pass (unsloth: offloaded to CPU RAM)"
    )
    group_by_length: bool = setting(
        False,
        "fill each effective batch with examples of similar length (little padding, order still seeded; "
        "the longest batch comes first, so a batch size that does not fit fails at step 1)",
    )
    compile: bool = setting(
        False,
        "transformers loader: torch.compile each decoder layer with dynamic shapes (the first steps pay the compile)",
    )
    attention: Literal["sdpa", "varlen"] = setting(
        "sdpa",
        "transformers loader: varlen = flash attention's variable-length kernel for --packing rows (each "
        "example attends only to itself; CUDA); sdpa = transformers' SDPA",
    )
    peft_input_cast: bool = setting(
        False,
        "transformers loader on a GPU: keep peft's fp32 copy of every LoRA input (under bf16 autocast it is "
        "cast back before the matmul, so leaving it out changes no number)",
    )
    token_budget: int | None = setting(
        None,
        "unsloth: run a micro-batch holding more real tokens than this as several passes over whole "
        "examples (same loss and gradients)",
        metavar="N",
    )
    logging_steps: int = setting(1, "log every N optimizer steps")
    save_steps: int = setting(200, "checkpoint every N optimizer steps")
    save_total_limit: int = setting(2, "checkpoints kept")
    eval_steps: int | None = setting(None, "validation loss every N steps (default: only at the end)", metavar="N")
    eval_on_start: bool = setting(False, "also measure the validation loss before training")
    output_dir: str | None = setting(None, "adapter folder, must not exist (default: ./lora_model_<precision>)")
    report_to: Literal["auto", "wandb", "none"] = setting("auto", "auto = W&B when installed")
    wandb_project: str = setting("sfteval", "W&B project")
    run_name: str | None = setting(None, "W&B run name (default: the output folder's name)")
    resume: bool = setting(False, "continue the unfinished run of --output-dir from its last checkpoint")
    keep_checkpoints: bool = setting(False, "keep <output-dir>.partial/ after success")

    def __post_init__(self) -> None:
        modules = [name.strip() for item in self.target_modules for name in str(item).split(",")]
        self.target_modules = tuple(name for name in modules if name)
        for name in ("limit", "max_length", "lora_r", "lora_alpha", "batch_size", "grad_accum", "logging_steps",
                     "save_steps", "save_total_limit", "eval_steps"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum

    def lora(self) -> loading.LoraSettings:
        return loading.LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            target_modules=tuple(self.target_modules),
            gradient_checkpointing=self.gradient_checkpointing,
            seed=self.seed,
        )

    def validate(self) -> None:
        checks = [
            (self.precision in ("bf16", "8bit", "4bit", "fp32"), f"unknown --precision {self.precision}"),
            (self.optim in OPTIMIZERS, f"unknown --optim {self.optim}; choose one of {', '.join(OPTIMIZERS)}"),
            (self.lr_scheduler in SCHEDULERS, f"unknown --lr-scheduler {self.lr_scheduler}"),
            (self.report_to in REPORT_TO, f"unknown --report-to {self.report_to}"),
            (
                self.report_to != "wandb" or importlib.util.find_spec("wandb") is not None,
                "--report-to wandb needs the wandb package: pip install wandb (or pass --report-to none)",
            ),
            (self.overlong in data_mod.OVERLONG_POLICIES, f"unknown --overlong {self.overlong}"),
            (self.learning_rate > 0, "--lr must be positive"),
            (self.epochs > 0, "--epochs must be positive"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (0 <= self.lora_dropout < 1, "--lora-dropout must be in [0, 1)"),
            (self.val_size >= 0, "--val-size must be >= 0"),
            (self.warmup_steps >= 0, "--warmup-steps must be >= 0"),
            (bool(self.target_modules), "--target-modules is empty"),
            (self.token_budget is None or self.token_budget >= 1, "--token-budget must be at least 1"),
            (
                self.attention in ATTENTIONS,
                f"unknown --attention {self.attention}; choose one of {', '.join(ATTENTIONS)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


def default_output_dir(precision: str) -> str:
    return f"lora_model_{precision}"


def partial_dir(output_dir: Path) -> Path:
    return output_dir.with_name(output_dir.name + PARTIAL_SUFFIX)


# ---------------------------------------------------------------- folders and resume


@dataclass
class RunPaths:
    output: Path
    work: Path

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"


def plan_paths(settings: TrainSettings) -> RunPaths:
    """Refuse to overwrite a finished adapter; find or refuse an unfinished run."""
    output = Path(settings.output_dir or default_output_dir(settings.precision)).expanduser()
    paths = RunPaths(output=output, work=partial_dir(output))
    records.check_writable_folder(output.parent, "the folder of --output-dir")
    if output.exists():
        raise UserError(
            f"{output} already exists and nothing is overwritten; pass another --output-dir"
            + (" (that run already finished)" if settings.resume else "")
        )
    if paths.work.exists() and not settings.resume:
        raise UserError(
            f"an unfinished run is in {paths.work}; pass --resume to continue it, or delete that folder to start over"
        )
    if settings.resume and not paths.work.exists():
        raise UserError(f"--resume: there is no unfinished run in {paths.work}")
    return paths


def check_resume_settings(settings: TrainSettings, saved: dict[str, Any], world_size: int) -> None:
    # Runs from before multi-process training recorded no world size: they had one process.
    saved = {"world_size": 1, **saved}
    current = {**settings.to_dict(), "world_size": world_size}
    differing = [
        f"{key} ({saved.get(key)!r} before, {current[key]!r} now)"
        for key in current
        if key not in RESUME_FREE and saved.get(key) != current[key]
    ]
    if differing:
        raise UserError("--resume needs the interrupted run's settings; these differ: " + "; ".join(differing))


def checkpoint_is_complete(folder: Path) -> bool:
    """The Trainer writes trainer_state.json last: a folder without a readable one for its own step
    was cut short by a kill while saving (on an 8B model that takes a while)."""
    try:
        state = json.loads((folder / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and str(state.get("global_step")) == folder.name.removeprefix(CHECKPOINT_PREFIX)


def last_checkpoint(paths: RunPaths) -> str | None:
    """The newest complete checkpoint; incomplete newer ones are removed (with a notice), so that
    neither this resume nor the Trainer's own checkpoint rotation takes them for real ones."""
    if not paths.checkpoints.is_dir():
        return None
    steps = {
        int(folder.name.removeprefix(CHECKPOINT_PREFIX)): folder
        for folder in paths.checkpoints.iterdir()
        if folder.is_dir() and re.fullmatch(CHECKPOINT_PREFIX + r"\d+", folder.name)
    }
    for step in sorted(steps, reverse=True):
        if checkpoint_is_complete(steps[step]):
            return str(steps[step])
        notice(f"--resume: {steps[step]} is incomplete (the run was stopped while saving it); removing it")
        shutil.rmtree(steps[step])
    return None


# ---------------------------------------------------------------- W&B


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def setup_wandb(settings: TrainSettings, paths: RunPaths, config: dict[str, Any]) -> Any:
    """Start (or continue, on --resume) the W&B run; None when not reporting. Without a
    login the run goes offline (`wandb sync` uploads it later) and training goes on."""
    if settings.report_to == "none":
        return None
    disabled = os.environ.get("WANDB_MODE", "").lower() == "disabled" or os.environ.get(
        "WANDB_DISABLED", ""
    ).lower() in ("1", "true", "yes")
    if disabled:
        notice("W&B is disabled by WANDB_MODE/WANDB_DISABLED; not logging to W&B")
        return None
    try:
        import wandb
    except ImportError:
        if settings.report_to == "wandb":
            raise UserError("--report-to wandb needs the wandb package: pip install wandb") from None
        notice("wandb is not installed, so this run is not logged to W&B (pass --report-to none to silence this)")
        return None
    if os.environ.get("WANDB_MODE", "").lower() not in ("offline", "dryrun") and not has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
        notice("no W&B login found (WANDB_API_KEY or ~/.netrc): logging offline; upload later with `wandb sync`")
    id_file = paths.work / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    try:
        run = wandb.init(
            project=settings.wandb_project,
            name=settings.run_name or paths.output.name,
            config=config,
            id=run_id,
            resume="allow",
        )
    except Exception as err:  # network, auth: say so in one line
        raise UserError(f"could not start W&B ({loading.first_line(err)}); pass --report-to none") from None
    id_file.write_text(run.id)
    os.environ.setdefault("WANDB_PROJECT", settings.wandb_project)
    return wandb


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


# ---------------------------------------------------------------- callbacks


def make_throughput_callback(sync_cuda: bool = False) -> Any:
    """The throughput callback. Imports transformers, so call after the model loads."""
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        """Real (non-pad) tokens per second, GPU memory, per-step times; adds them to every
        training log entry, so W&B and the console show them next to loss, lr and grad norm."""

        def __init__(self) -> None:
            self.sync = sync_cuda
            self.step_marks: list[tuple[int, float, int]] = []  # (global step, time, tokens seen)
            self.train_started = self.train_ended = None
            self.tokens_at_start = self.steps_at_start = 0
            self._window = (0.0, 0)

        def _now(self) -> float:
            if self.sync:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.train_started = self._now()
            self.tokens_at_start = state.num_input_tokens_seen
            self.steps_at_start = state.global_step  # after a resume: the checkpoint's step
            self._window = (self.train_started, state.num_input_tokens_seen)

        def on_step_end(self, args, state, control, **kwargs):
            self.step_marks.append((state.global_step, self._now(), state.num_input_tokens_seen))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs:
                return
            now, tokens = time.perf_counter(), state.num_input_tokens_seen
            started, tokens_before = self._window
            if now > started:
                logs["tokens_per_second"] = round((tokens - tokens_before) / (now - started), 1)
            logs["tokens_seen"] = tokens
            self._window = (now, tokens)
            memory = gpu_memory()
            if memory:
                logs["gpu_memory_gb"] = memory["allocated_gb"]
                logs["gpu_peak_memory_gb"] = memory["peak_allocated_gb"]

        def on_train_end(self, args, state, control, **kwargs):
            self.train_ended = self._now()

        def session_tokens(self, state) -> int:
            return state.num_input_tokens_seen - self.tokens_at_start

        def session_mean_loss(self, state, training_loss: float | None) -> float | None:
            """The mean loss of this session's steps. The Trainer divides this session's summed loss by
            all steps since step 0, which after a resume makes its `training_loss` too small."""
            session_steps = state.global_step - self.steps_at_start
            if training_loss is None or session_steps <= 0:
                return None
            return training_loss * state.global_step / session_steps

        def window(self, first_step: int, last_step: int | None = None) -> dict[str, float] | None:
            """Tokens/s over the steps from `first_step` to `last_step` (the bench skips warm-up steps)."""
            marks = [m for m in self.step_marks if m[0] >= first_step and (last_step is None or m[0] <= last_step)]
            if len(marks) < 2:
                return None
            (s0, t0, k0), (s1, t1, k1) = marks[0], marks[-1]
            return {"steps": s1 - s0, "seconds": t1 - t0, "tokens": k1 - k0, "tokens_per_second": (k1 - k0) / (t1 - t0)}

    return Throughput()


def gpu_memory() -> dict[str, float] | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return {
        "allocated_gb": round(torch.cuda.memory_allocated() / 1e9, 3),
        "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3),
        "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 3),
    }


# ---------------------------------------------------------------- trainer


def resolve_optimizer(optim: str, has_cuda: bool) -> tuple[str, str | None]:
    """The optimizer to use and, if it differs from the requested one, why."""
    if optim in EIGHT_BIT_OPTIMIZERS:
        if not has_cuda:
            return "adamw_torch", f"{optim} needs CUDA (bitsandbytes); using torch AdamW on this CPU"
        if importlib.util.find_spec("bitsandbytes") is None:
            return "adamw_torch", f"{optim} needs bitsandbytes, which is not installed; using torch AdamW"
    if optim == "adamw_torch_fused" and not has_cuda:
        return "adamw_torch", "adamw_torch_fused needs CUDA; using torch AdamW on this CPU"
    return optim, None


@dataclass
class BuiltTrainer:
    trainer: Any
    throughput: Any
    backend: str  # "trl" or "transformers"
    optimizer: str
    optimizer_note: str | None
    packing_requested: bool | None
    notes: list[str] = field(default_factory=list)

    @property
    def packing_used(self) -> bool:
        args = self.trainer.args
        if self.backend == "trl":
            return bool(getattr(args, "padding_free", False))
        return isinstance(self.trainer.data_collator, data_mod.PaddingFreeCollator)


def build_trainer(
    settings: TrainSettings,
    loaded: loading.LoadedModel,
    tokenized: data_mod.TokenizedData,
    checkpoint_dir: str,
    report_to: str = "none",
    save: bool = True,
    sync_cuda: bool = False,
    use_trl: bool | None = None,
) -> BuiltTrainer:
    """TRL's SFTTrainer on a CUDA GPU, transformers' Trainer on a CPU (`use_trl` overrides, for tests)."""
    has_cuda = loaded.info["device"] == "cuda"
    use_trl = has_cuda if use_trl is None else use_trl
    optim, optim_note = resolve_optimizer(settings.optim, has_cuda)
    train_ds = data_mod.to_dataset(tokenized.train)
    val_ds = data_mod.to_dataset(tokenized.val) if tokenized.val else None
    evaluating = val_ds is not None
    common: dict[str, Any] = {
        "output_dir": checkpoint_dir,
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": settings.warmup_steps,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps or -1,
        "optim": optim,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_steps": settings.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps" if save else "no",
        "save_steps": settings.save_steps,
        "save_total_limit": settings.save_total_limit,
        "eval_strategy": "steps" if evaluating and settings.eval_steps else "no",
        "eval_steps": settings.eval_steps,
        "eval_on_start": bool(evaluating and settings.eval_on_start),
        "report_to": report_to,
        "run_name": settings.run_name,
        "bf16": has_cuda and settings.precision != "fp32",
        "fp16": False,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "train_sampling_strategy": "group_by_length" if settings.group_by_length else "random",
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": has_cuda,
        "save_only_model": False,
        "disable_tqdm": not cli.terminal(),  # off a terminal the loss lines are printed without a bar
        # Without it the Trainer ignores a launcher's processes on a CPU; on one process it changes nothing.
        "use_cpu": not has_cuda,
        # Several processes: every LoRA weight takes part in each forward pass, so DDP need not look for unused ones.
        "ddp_find_unused_parameters": False,
    }
    throughput = make_throughput_callback(sync_cuda)
    notes: list[str] = []
    if settings.token_budget:
        if loaded.info["loader"] == "unsloth":
            # Read by unsloth when the SFTTrainer is built: a micro-batch holding more real tokens
            # runs as several forward/backward passes over whole examples, each divided by the same
            # token count, so the gradient is the unsplit one and long batches cannot run out of memory.
            os.environ["UNSLOTH_TOKEN_BUDGET"] = str(settings.token_budget)
        else:
            notes.append("--token-budget needs the unsloth loader; ignored")
    notes.extend(speed_up_hf_model(settings, loaded, autocast=common["bf16"]))
    if use_trl:
        # After `import unsloth` (loading.pick_loader) these are unsloth's patched classes.
        from trl import SFTConfig, SFTTrainer

        extra: dict[str, Any] = {"max_length": None, "packing": False, "dataset_num_proc": None}
        if settings.packing is not None:
            extra["padding_free"] = settings.packing
        args = SFTConfig(**common, **extra)
        trainer = SFTTrainer(
            model=loaded.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            processing_class=loaded.tokenizer,
        )
        backend = "trl"
    else:
        from transformers import Trainer, TrainingArguments

        if settings.packing:
            collator: Any = data_mod.PaddingFreeCollator()
        else:
            collator = data_mod.PaddedCollator(loaded.tokenizer.pad_token_id)
        args = TrainingArguments(**common)
        trainer = Trainer(
            model=loaded.model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=collator,
            processing_class=loaded.tokenizer,
        )
        backend = "transformers"
    # First, so the numbers it adds to each log entry reach W&B and the console.
    trainer.callback_handler.callbacks.insert(0, throughput)
    return BuiltTrainer(trainer, throughput, backend, optim, optim_note, settings.packing, notes)


def speed_up_hf_model(settings: TrainSettings, loaded: loading.LoadedModel, autocast: bool) -> list[str]:
    """--attention varlen, --compile and dropping peft's input casts on the transformers loader;
    returns notes on what was ignored."""
    if loaded.info["loader"] != "hf":
        flags = (("--compile", settings.compile), ("--attention varlen", settings.attention == "varlen"))
        asked = [flag for flag, on in flags if on]
        if not asked:
            return []
        return [f"{' and '.join(asked)}: for the transformers loader (--use-hf); unsloth has its own kernels; ignored"]
    from peft.tuners.tuners_utils import BaseTunerLayer

    if autocast and not settings.peft_input_cast:
        # peft copies each LoRA input to the adapter's fp32 and autocast copies it back to bf16
        # for the matmul: the same values, two activation-sized copies per LoRA layer and pass.
        for module in loaded.model.modules():
            if isinstance(module, BaseTunerLayer):
                module.cast_input_dtype_enabled = False
    if settings.attention == "varlen":
        attention.use_varlen(loaded.model)
    if settings.compile:
        # Layer by layer: the 32 identical decoder layers compile once, and dynamic shapes keep
        # padding-free rows of a new length from recompiling every step.
        for layer in loading.unwrap_peft(loaded.model).get_decoder().layers:
            layer.compile(dynamic=True)
    return []


# ---------------------------------------------------------------- the run


def load_model(settings: TrainSettings) -> loading.LoadedModel:
    spec = loading.ModelSpec(
        model=settings.model,
        precision=settings.precision,
        use_hf=settings.use_hf,
        max_seq_length=settings.max_length,
    )
    return loading.load_for_training(spec, settings.lora())


def describe_data(stats: dict[str, Any]) -> str:
    lengths = stats["train_lengths"]
    return (
        f"data: {stats['n_train']} train / {stats['n_val']} validation examples, "
        f"{lengths['total']:,} train tokens (mean {lengths['mean']:.0f}, median {lengths['median']:.0f}, "
        f"p95 {lengths['p95']:.0f}, max {lengths['max']}), {stats['train_label_tokens']:,} of them trained on; "
        f"{stats['n_dropped_overlong']} dropped and {stats['n_truncated']} cut for --max-length {stats['max_length']}"
    )


def planned_steps(settings: TrainSettings, n_train: int, world_size: int = 1) -> int:
    if settings.max_steps:
        return settings.max_steps
    per_epoch = math.ceil(math.ceil(n_train / (settings.batch_size * world_size)) / settings.grad_accum)
    return math.ceil(per_epoch * settings.epochs)


def run(settings: TrainSettings, recipe: dict[str, str] | None = None) -> Path:
    """Train and write the adapter folder; returns its path. `recipe` (name, why, line) is how
    train.py chose the settings: printed once the inputs are checked, kept in train_config.json."""
    started = time.perf_counter()
    settings.validate()
    # This machine first: a GPU-only recipe on a CPU fails before the hub dataset is fetched.
    loading.check_machine(settings.precision, settings.use_hf)
    launch = distributed.launch()
    if launch.several and not settings.use_hf and loading.cuda_available():
        raise UserError("several processes train through transformers' Trainer (DDP); add --use-hf")
    paths = plan_paths(settings)
    resume_from = None
    if settings.resume:
        saved_file = paths.work / RUN_SETTINGS_FILE
        if saved_file.is_file():
            check_resume_settings(settings, json.loads(saved_file.read_text(encoding="utf-8")), launch.world_size)
    # Every process has checked the folders before the main one creates any.
    distributed.init_process_group()
    distributed.barrier()
    if launch.several and not loading.cuda_available():
        distributed.load_onto_indexed_cpu()
    # The data first: a bad dataset fails in a second, before a model is loaded.
    rows, dataset_info = data_mod.load_records(
        settings.dataset, settings.dataset_split, settings.dataset_revision, settings.limit
    )
    loaded = load_model(settings)
    if recipe:
        print(recipe["line"], file=sys.stderr)
    print(f"tokenizing {len(rows):,} records with the alpaca template ...", file=sys.stderr, flush=True)
    tokenized = data_mod.prepare(
        loaded.tokenizer, rows, settings.max_length, settings.overlong, settings.val_size, settings.seed
    )
    stats = tokenized.stats
    message = data_mod.overlong_message(stats)
    if message:
        notice(message)
    info = loaded.info
    print(
        f"model: {info['model']} ({info['loader']}, {info['precision']}, {info['device']}); "
        f"LoRA r={settings.lora_r} alpha={settings.lora_alpha}: {info['trainable_parameters']:,} trainable of "
        f"{info['total_parameters']:,} parameters; pad {info['pad_token']!r} != eos {info['eos_token']!r}",
        file=sys.stderr,
    )
    print(describe_data(stats), file=sys.stderr)

    if launch.is_main:
        paths.work.mkdir(parents=True, exist_ok=True)
        settings_file = paths.work / RUN_SETTINGS_FILE
        if not settings_file.is_file():
            records.write_json_atomic(settings_file, {**settings.to_dict(), "world_size": launch.world_size})
    if settings.resume:
        resume_from = last_checkpoint(paths)
        if resume_from is None:
            notice(f"--resume: no checkpoint in {paths.checkpoints} yet, so training starts from step 0")

    run_config = {
        "settings": settings.to_dict(),
        "world_size": launch.world_size,
        "effective_batch": settings.effective_batch * launch.world_size,
        "dataset": data_mod.info_dict(dataset_info),
        "data": stats,
        "model": info,
    }
    wandb = setup_wandb(settings, paths, run_config) if launch.is_main else None
    built = build_trainer(settings, loaded, tokenized, str(paths.checkpoints), "wandb" if wandb else "none")
    for note in ([built.optimizer_note] if built.optimizer_note else []) + built.notes:
        notice(note)
    trainer = built.trainer
    print(
        f"training: {planned_steps(settings, stats['n_train'], launch.world_size)} steps of {settings.batch_size} x "
        f"{settings.grad_accum}"
        + (f" x {launch.world_size} processes" if launch.several else "")
        + f" = {settings.effective_batch * launch.world_size} examples, lr {settings.learning_rate:g}, "
        f"{built.optimizer}, {type(trainer).__name__}, padding-free {built.packing_used}, "
        f"gradient checkpointing {settings.gradient_checkpointing}"
        + (f"; resuming from {resume_from}" if resume_from else ""),
        file=sys.stderr,
    )
    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        notice(f"interrupted; continue later with the same flags plus --resume (checkpoints in {paths.checkpoints})")
        raise
    except RuntimeError as err:
        if "out of memory" in str(err).lower():
            raise UserError(
                "out of GPU memory; lower --batch-size (raise --grad-accum to keep the effective batch), "
                "keep gradient checkpointing on, or use --precision 4bit"
            ) from None
        raise
    eval_final = None
    if tokenized.val:
        eval_final = trainer.evaluate().get("eval_loss")
    if not launch.is_main:
        return paths.output
    train_config = make_train_config(
        settings,
        paths,
        built,
        loaded,
        dataset_info,
        stats,
        output,
        eval_final,
        started,
        recipe=recipe,
        world_size=launch.world_size,
    )
    train_config["results"]["resumed_from"] = resume_from
    save_adapter(loaded, paths, train_config)
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update({f"final/{k}": v for k, v in train_config["results"].items() if is_scalar(v)})
        wandb.finish()
    if not settings.keep_checkpoints:
        shutil.rmtree(paths.work, ignore_errors=True)
    results = train_config["results"]
    print(
        f"saved {paths.output}: step {results['global_step']}, train loss {fmt(results['train_loss_first'])} -> "
        f"{fmt(results['train_loss_final'])}"
        + (
            f", validation loss {fmt(results['eval_loss_initial'])} -> {fmt(results['eval_loss_final'])}"
            if tokenized.val
            else ""
        )
        + f", {results['tokens_seen']:,} tokens at {results['tokens_per_second']:,.0f} tokens/s"
        + (
            f" ({results['steady_tokens_per_second']:,.0f} tokens/s from step {results['steady_from_step']} on)"
            if results.get("steady_tokens_per_second")
            else ""
        ),
        file=sys.stderr,
    )
    return paths.output


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def make_train_config(
    settings: TrainSettings,
    paths: RunPaths,
    built: BuiltTrainer,
    loaded: loading.LoadedModel,
    dataset_info: data_mod.DatasetInfo,
    stats: dict[str, Any],
    output: Any,
    eval_final: float | None,
    started: float,
    recipe: dict[str, str] | None = None,
    world_size: int = 1,
) -> dict[str, Any]:
    trainer, throughput = built.trainer, built.throughput
    state = trainer.state
    train_logs = [entry for entry in state.log_history if "loss" in entry]
    eval_logs = [entry for entry in state.log_history if "eval_loss" in entry]
    train_seconds = (throughput.train_ended or time.perf_counter()) - (throughput.train_started or started)
    session_tokens = throughput.session_tokens(state)
    memory = gpu_memory()
    hyper = settings.to_dict()
    for key in ("output_dir", "resume", "report_to", "wandb_project", "run_name", "keep_checkpoints"):
        hyper.pop(key)
    hyper.update(
        world_size=world_size,
        effective_batch=settings.effective_batch * world_size,
        optim_used=built.optimizer,
        optim_fallback=built.optimizer_note,
        packing_used=built.packing_used,
        bf16_autocast=bool(getattr(trainer.args, "bf16", False)),
    )
    metadata = records.run_metadata(
        settings=settings.to_dict(),
        recipe={k: v for k, v in (recipe or {}).items() if k != "line"} or None,
        trainer=type(trainer).__name__,
        backend=built.backend,
    )
    return records.envelope(
        TRAIN_CONFIG_KIND,
        metadata,
        base_model=settings.model,
        template=TEMPLATE,
        loader=loaded.info["loader"],
        precision=settings.precision,
        dataset=data_mod.info_dict(dataset_info),
        hyperparameters=hyper,
        data=stats,
        model={
            key: loaded.info[key]
            for key in (
                "model_source",
                "trainable_parameters",
                "total_parameters",
                "pad_token",
                "pad_token_id",
                "eos_token",
                "eos_token_id",
                "device",
            )
        },
        results={
            "global_step": state.global_step,
            "max_steps": state.max_steps,
            "epochs": round(state.epoch or 0.0, 4),
            "tokens_seen": state.num_input_tokens_seen,
            "train_loss_first": train_logs[0]["loss"] if train_logs else None,
            "train_loss_final": train_logs[-1]["loss"] if train_logs else None,
            "train_loss_mean_this_session": throughput.session_mean_loss(state, getattr(output, "training_loss", None)),
            "steps_this_session": state.global_step - throughput.steps_at_start,
            "eval_loss_initial": eval_logs[0]["eval_loss"] if eval_logs and settings.eval_on_start else None,
            "eval_loss_final": eval_final,
            "tokens_per_second": round(session_tokens / train_seconds, 1) if train_seconds > 0 else None,
            **steady_throughput(throughput),
            "train_seconds": round(train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - started, 2),
            "peak_gpu_memory_gb": memory["peak_allocated_gb"] if memory else None,
            "peak_gpu_reserved_gb": memory["peak_reserved_gb"] if memory else None,
            "trainer": type(trainer).__name__,
        },
        log_history=state.log_history,
    )


# The first steps of a run compile (the fast recipes compile each decoder layer, and a new packed
# length can recompile) and warm the allocator; the rate after them is what a long run gets.
STEADY_FROM_STEP = 5


def steady_throughput(throughput: Any) -> dict[str, Any]:
    """Tokens/s over this session's steps from STEADY_FROM_STEP on; empty when it had too few."""
    window = throughput.window(first_step=throughput.steps_at_start + STEADY_FROM_STEP)
    if not window or window["steps"] < 2 or window["seconds"] <= 0:
        return {}
    return {
        "steady_tokens_per_second": round(window["tokens_per_second"], 1),
        "steady_steps": window["steps"],
        "steady_from_step": throughput.steps_at_start + STEADY_FROM_STEP,
    }


def save_adapter(loaded: loading.LoadedModel, paths: RunPaths, train_config: dict[str, Any]) -> None:
    """Adapter + tokenizer + train_config.json into a temporary folder, then one rename."""
    staging = paths.work / "adapter.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    loaded.model.save_pretrained(str(staging))
    # The prompt format the adapter learned, not the base model's chat template.
    loaded.tokenizer.chat_template = prompts.alpaca_chat_template(loaded.tokenizer)
    loaded.tokenizer.save_pretrained(str(staging))
    records.write_json_atomic(staging / loading.TRAIN_CONFIG, train_config)
    if paths.output.exists():
        raise UserError(f"{paths.output} appeared while training; the adapter is left in {staging}")
    paths.output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, paths.output)


def settings_fields() -> list[str]:
    return [f.name for f in fields(TrainSettings)]
