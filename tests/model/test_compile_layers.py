"""--compile-layers-once: the compiled decode step holds one decoder layer, called for every layer."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sfteval.cli import UserError  # noqa: E402
from sfteval.model import attention, generation, loading  # noqa: E402


@pytest.mark.parametrize("flex", [False, True])
def test_one_compiled_layer_serves_every_layer_and_generates_like_eager(tiny_llama_dir, monkeypatch, flex):
    """Through transformers' own compiled decode step over a static cache (fp32 on a CPU, left
    padding, the project's GQA decode attention): the traced step calls one subgraph once per
    decoder layer, and the greedy tokens equal the eager step's."""
    from torch._dynamo.backends.registry import lookup_backend
    from transformers import AutoModelForCausalLM, AutoTokenizer, CompileConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    loading.ensure_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    layer_class = type(model.model.layers[0])
    monkeypatch.setattr(layer_class, "forward", layer_class.forward)  # the mark is process-wide
    attention.register()
    attention.use_gqa_decode(model, flex=flex)
    batch = [tokenizer.encode("a much longer prompt than the other one"), tokenizer.encode("short")]
    settings = generation.GenerationSettings(max_new_tokens=10)
    cache = attention.static_cache_length(max(map(len, batch)), settings.max_new_tokens, flex)
    static = {"cache_implementation": "static", "max_cache_len": cache}
    reference = generation.generate_batch(model, tokenizer, batch, settings, [], disable_compile=True, **static)

    graphs = []

    def keep_graph(graph_module, example_inputs):
        graphs.append(graph_module)
        return lookup_backend("aot_eager")(graph_module, example_inputs)

    # transformers compiles the decode step on accelerators only unless this private switch is set
    compile_config = CompileConfig(fullgraph=True, mode=None, backend=keep_graph)
    compile_config._compile_all_devices = True
    torch._dynamo.reset()
    assert generation.compile_layers_once(model) == layer_class.__name__
    assert generation.compile_layers_once(model) == layer_class.__name__  # marked once, not wrapped twice
    got = generation.generate_batch(model, tokenizer, batch, settings, [], compile_config=compile_config, **static)
    torch._dynamo.reset()

    assert len(graphs) == 1
    calls = [n for n in graphs[0].graph.nodes if n.target is torch.ops.higher_order.invoke_subgraph]
    assert len(calls) == model.config.num_hidden_layers
    assert len({call.args[0].target for call in calls}) == 1
    assert [c.token_ids for c in got] == [c.token_ids for c in reference]
    assert all(len(c.token_ids) == settings.max_new_tokens for c in got)  # no stop token: every step ran


def test_a_model_without_decoder_layers_is_refused():
    class Decoder(torch.nn.Module):
        pass

    class Model(torch.nn.Module):
        def get_decoder(self):
            return Decoder()

    with pytest.raises(UserError, match="no list of decoder layers"):
        generation.compile_layers_once(Model())
