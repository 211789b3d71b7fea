"""Batched generation done right: manual left padding, per-sequence stop tokens, greedy by
default, length-sorted batches and out-of-memory batches split instead of lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sfteval.cli import UserError
from sfteval.model import attention, loading

# Chat templates end an assistant turn with these; each is a stop token where the vocabulary has it.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")
# Set on the decoder layer forward that compile_layers_once has wrapped.
LAYER_REGION_MARK = "_sfteval_compiled_once"


@dataclass
class GenerationSettings:
    max_new_tokens: int = 1280
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 <= self.temperature < float("inf"):  # also refuses nan
            raise UserError(f"--temperature must be 0 (greedy) or above, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p is a probability mass: above 0 and at most 1, got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "do_sample": not self.greedy}


@dataclass
class Completion:
    text: str
    new_tokens: int
    stop_reason: str  # "eos" or "length"
    token_ids: list[int] = field(default_factory=list, repr=False)  # generated ids, stop token included


def stop_token_ids(tokenizer: Any, model: Any, template: str) -> list[int]:
    """EOS ids from the generation config and tokenizer, plus end-of-turn tokens for chat."""
    ids: list[int] = []
    gen_config = getattr(model, "generation_config", None)
    configured = getattr(gen_config, "eos_token_id", None)
    for value in (configured if isinstance(configured, list) else [configured]) + [tokenizer.eos_token_id]:
        if value is not None and value not in ids:
            ids.append(int(value))
    if template == "chat":
        vocab = tokenizer.get_vocab()
        for token in END_OF_TURN_TOKENS:
            if token in vocab and vocab[token] not in ids:
                ids.append(vocab[token])
    if not ids:
        raise UserError("the tokenizer defines no EOS token; generation would never stop")
    return ids


def generate_kwargs(settings: GenerationSettings, tokenizer: Any, stop_ids: Sequence[int]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "eos_token_id": list(stop_ids),
        "pad_token_id": tokenizer.pad_token_id,
        "do_sample": not settings.greedy,
    }
    if settings.greedy:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    return kwargs


def left_pad(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[row, width - len(ids) :] = 1
    return input_ids, attention


def split_completion(tokenizer: Any, new_ids: Sequence[int], stop_ids: Sequence[int]) -> Completion:
    stops = set(stop_ids)
    for position, token in enumerate(new_ids):
        if token in stops:
            text = tokenizer.decode(new_ids[:position], skip_special_tokens=True)
            return Completion(text, position + 1, "eos", list(new_ids[: position + 1]))
    return Completion(tokenizer.decode(new_ids, skip_special_tokens=True), len(new_ids), "length", list(new_ids))


def generate_batch(
    model: Any,
    tokenizer: Any,
    batch: Sequence[Sequence[int]],
    settings: GenerationSettings,
    stop_ids: Sequence[int],
    **options: Any,
) -> list[Completion]:
    """One left-padded `generate` call; the padding is built here, never left to the tokenizer,
    so a loader that flips `padding_side` cannot turn it into right padding. `options` go to
    `generate` as they are (speed knobs such as `cache_implementation`, or `min_new_tokens`)."""
    import torch

    input_ids, attention = left_pad(batch, tokenizer.pad_token_id)
    if not bool(attention[:, -1].all()):
        raise AssertionError("batch is not left-padded: a row ends in padding")
    device = next(model.parameters()).device
    kwargs = {**generate_kwargs(settings, tokenizer, stop_ids), **options}
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
    new = output[:, input_ids.shape[1] :].tolist()
    return [split_completion(tokenizer, ids, stop_ids) for ids in new]


def compile_layers_once(model: Any) -> str:
    """Mark the model's decoder layer as a nested compile region: torch.compile then traces and
    compiles one layer and reuses that code for every layer with the same inputs' shapes, where it
    would otherwise unroll all of them into one graph (a shorter compile of the same operations;
    kernels no longer fuse across a layer's boundary).
    The mark is on the layer class, for the whole process; outside torch.compile it does nothing.
    Returns the class's name."""
    import torch

    decoder = loading.unwrap_peft(model).get_decoder()
    layers = getattr(decoder, "layers", None)
    if not layers:
        raise UserError(f"--compile-layers-once: {type(decoder).__name__} has no list of decoder layers")
    layer_class = type(layers[0])
    if not getattr(layer_class.forward, LAYER_REGION_MARK, False):
        region = torch.compiler.nested_compile_region(layer_class.forward)
        setattr(region, LAYER_REGION_MARK, True)
        layer_class.forward = region
    return layer_class.__name__


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length, longest first so an
    out-of-memory batch shows up at the start rather than after an hour."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def generate_indexed(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    indices: list[int],
    settings: GenerationSettings,
    stop_ids: Sequence[int],
    on_split: Callable[[int], None] | None = None,
    **options: Any,
) -> Iterator[tuple[int, Completion]]:
    """Generate for `indices`; a batch that runs out of GPU memory is halved and retried."""
    import torch

    try:
        completions = generate_batch(model, tokenizer, [prompts[i] for i in indices], settings, stop_ids, **options)
    except (RuntimeError, torch.OutOfMemoryError) as err:
        if not is_oom(err):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(indices) == 1:
            raise UserError(
                "out of GPU memory on a single prompt; lower --max-new-tokens or use --precision 4bit"
            ) from None
        if on_split:
            on_split(len(indices))
        half = len(indices) // 2
        yield from generate_indexed(model, tokenizer, prompts, indices[:half], settings, stop_ids, on_split, **options)
        yield from generate_indexed(model, tokenizer, prompts, indices[half:], settings, stop_ids, on_split, **options)
        return
    yield from zip(indices, completions)


def stream_one(
    model: Any, tokenizer: Any, prompt_ids: Sequence[int], settings: GenerationSettings, stop_ids: Sequence[int]
) -> Completion:
    """Generate for one prompt, printing tokens as they come (over a growing cache: no cuDNN attention)."""
    import torch
    from transformers import TextStreamer

    attention.skip_cudnn_attention()

    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    device = next(model.parameters()).device
    input_ids = torch.tensor([list(prompt_ids)], device=device)
    kwargs = generate_kwargs(settings, tokenizer, stop_ids)
    with torch.inference_mode():
        output = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer, **kwargs
        )
    return split_completion(tokenizer, output[0, input_ids.shape[1] :].tolist(), stop_ids)
