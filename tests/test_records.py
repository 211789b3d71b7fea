import json
import subprocess

import pytest

from sfteval import records
from sfteval.cli import UserError
from tests.conftest import ROOT


def test_slug_keeps_the_last_path_part():
    assert records.slug("unsloth/Meta-Llama-3.1-8B") == "Meta-Llama-3.1-8B"
    assert records.slug("C:\\models\\my model.gguf") == "my-model"
    assert records.slug("./lora_model_4bit/") == "lora_model_4bit"


def test_atomic_write_never_overwrites(tmp_path):
    target = tmp_path / "out.json"
    records.write_json_atomic(target, {"a": 1})
    with pytest.raises(UserError, match="already exists"):
        records.write_json_atomic(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_unique_path_adds_a_counter(tmp_path):
    first = tmp_path / "run.scores.json"
    first.write_text("{}")
    assert records.unique_path(first).name == "run_1.scores.json"
    dotted = tmp_path / "Meta-Llama-3.1-8B_bf16_20261127_101010.json"
    dotted.write_text("{}")
    assert records.unique_path(dotted).name == "Meta-Llama-3.1-8B_bf16_20261127_101010_1.json"


@pytest.mark.parametrize("content,message", [("", "is empty"), ("{nope", "not valid JSON")])
def test_read_json_errors_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        records.read_json(path)
    assert "\n" not in str(info.value)


def test_metadata_names_versions_and_commit():
    meta = records.run_metadata(model="m")
    assert meta["model"] == "m"
    assert meta["library_versions"]["transformers"]
    assert "git_commit" in meta and "created_at" in meta


def test_git_commit_names_this_checkout_unless_told(monkeypatch):
    monkeypatch.delenv("SFTEVAL_GIT_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert records.git_commit().removesuffix("-dirty") == head
    monkeypatch.setenv("SFTEVAL_GIT_COMMIT", "abc123")
    assert records.git_commit() == "abc123"


def test_read_json_reads_gzipped_files_and_names_a_truncated_one(tmp_path):
    import gzip

    doc = {"kind": "ifeval_scores", "text": "é" * 100}
    packed = tmp_path / "run.scores.json.gz"
    packed.write_bytes(gzip.compress(json.dumps(doc).encode("utf-8")))
    assert records.read_json(packed) == doc
    cut = tmp_path / "cut.scores.json.gz"
    cut.write_bytes(packed.read_bytes()[:20])
    with pytest.raises(UserError, match="not a complete gzip file"):
        records.read_json(cut)
