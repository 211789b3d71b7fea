"""Do two loaders (or precisions) produce the same greedy text? And does batching change it?

Each (loader, precision) runs in its own process (`run_worker`), because importing unsloth
patches transformers' model classes for the whole process: an "HF" run after it would not
be plain transformers any more. `compare` then reads the workers' files.
"""

from __future__ import annotations

import statistics
from typing import Any

from sfteval import prompts
from sfteval.model import generation, loading


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token, None when the two sequences are identical."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def completion_logprob(model: Any, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """Sum of log-probs the model gives `completion_ids` after `prompt_ids` (teacher forcing)."""
    import torch

    if not completion_ids:
        return 0.0
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + completion_ids], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(completion_ids, device=device)
    return float(logprobs.gather(1, target[:, None]).sum())


def run_worker(
    model_name: str,
    loader: str,
    precision: str,
    rows: list[dict[str, Any]],
    max_new_tokens: int,
    batch_size: int,
    reference: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Greedy outputs for `rows` batched and one by one, plus log-probs of the reference's outputs."""
    import time

    loaded = loading.load_model(loading.ModelSpec(model=model_name, precision=precision, use_hf=loader == "hf"))
    model, tokenizer = loaded.model, loaded.tokenizer
    template = prompts.resolve_template("auto", tokenizer)
    encoded = [prompts.encode(tokenizer, prompts.render(template, tokenizer, r["prompt"])) for r in rows]
    stop_ids = generation.stop_token_ids(tokenizer, model, template)
    settings = generation.GenerationSettings(max_new_tokens=max_new_tokens)

    started = time.perf_counter()
    batched: dict[int, generation.Completion] = {}
    for batch in generation.length_sorted_batches([len(x) for x in encoded], batch_size):
        batched.update(generation.generate_indexed(model, tokenizer, encoded, batch, settings, stop_ids))
    batched_seconds = time.perf_counter() - started
    single = [generation.generate_batch(model, tokenizer, [ids], settings, stop_ids)[0] for ids in encoded]

    items = []
    for index, row in enumerate(rows):
        item = {
            "key": row["key"],
            "batched_ids": batched[index].token_ids,
            "single_ids": single[index].token_ids,
            "batched_text": batched[index].text,
        }
        own = batched[index].token_ids
        item["own_logprob"] = completion_logprob(model, encoded[index], own)
        if reference is not None:
            ref_ids = reference["items"][index]["batched_ids"]
            item["reference_logprob"] = completion_logprob(model, encoded[index], ref_ids)
        items.append(item)
    tokens = sum(c.new_tokens for c in batched.values())
    return {
        "loader": loaded.info["loader"],
        "precision": precision,
        "template": template,
        "load_seconds": loaded.info["load_seconds"],
        "batched_tokens_per_second": round(tokens / batched_seconds, 1) if batched_seconds else None,
        "items": items,
    }


def summarize(run: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any]:
    """Self-consistency (batched vs one by one) and agreement with the reference run."""
    items = run["items"]
    self_div = [first_divergence(i["batched_ids"], i["single_ids"]) for i in items]
    summary: dict[str, Any] = {
        "loader": run["loader"],
        "precision": run["precision"],
        "n": len(items),
        "batched_equals_single": sum(d is None for d in self_div) / len(items),
        "batch_invariant": all(d is None for d in self_div),
        "load_seconds": run["load_seconds"],
        "batched_tokens_per_second": run["batched_tokens_per_second"],
    }
    if reference is not None:
        ref_items = reference["items"]
        divs = [first_divergence(i["batched_ids"], r["batched_ids"]) for i, r in zip(items, ref_items)]
        diverged = [d for d in divs if d is not None]
        per_token = [
            abs(i["reference_logprob"] - r["own_logprob"]) / max(1, len(r["batched_ids"]))
            for i, r in zip(items, ref_items)
        ]
        summary.update(
            identical_to_reference=sum(d is None for d in divs) / len(items),
            median_first_divergence=statistics.median(diverged) if diverged else None,
            mean_abs_logprob_diff_per_token=statistics.fmean(per_token),
        )
    return summary


def divergence_margin(
    model: Any, prompt_ids: list[int], ids_a: list[int], ids_b: list[int], stop_ids: list[int]
) -> dict[str, Any] | None:
    """Where two greedy answers to one prompt part, how close `model` finds the two choices there:
    the gap between the two tokens' logits (a gap within bf16's rounding means a near-tie that any
    kernel change may flip) and each token's rank. None when the answers are identical. An answer
    that stopped where the other goes on chose a stop token: the stop id the model ranks highest."""
    import torch

    position = first_divergence(ids_a, ids_b)
    if position is None:
        return None
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + ids_a[:position]], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1].float()
    best_stop = max(stop_ids, key=lambda t: float(logits[t]))
    token_a = ids_a[position] if position < len(ids_a) else best_stop
    token_b = ids_b[position] if position < len(ids_b) else best_stop
    return {
        "position": position,
        "logit_gap": round(abs(float(logits[token_a] - logits[token_b])), 4),
        "rank_a": int((logits > logits[token_a]).sum()),
        "rank_b": int((logits > logits[token_b]).sum()),
    }


def margin_summary(margins: list[dict[str, Any] | None], gaps: tuple[float, ...] = (0.125, 0.5, 1.0)) -> dict:
    """Counts over divergence_margin results: identical answers, and how close the diverging ones were."""
    parted = [m for m in margins if m is not None]
    summary: dict[str, Any] = {
        "n": len(margins),
        "identical": len(margins) - len(parted),
        "median_first_divergence": statistics.median(m["position"] for m in parted) if parted else None,
        "median_logit_gap": statistics.median(m["logit_gap"] for m in parted) if parted else None,
        "both_in_top2": sum(max(m["rank_a"], m["rank_b"]) <= 1 for m in parted),
    }
    for gap in gaps:
        summary[f"gap_at_most_{gap}"] = sum(m["logit_gap"] <= gap for m in parted)
    return summary
