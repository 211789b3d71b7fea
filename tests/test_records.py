import json
import os
import subprocess
import time

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


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("notes\n")
    with pytest.raises(UserError, match="is a file, not a folder"):
        records.check_new_file(blocker / "deeper" / "out.json")
    with pytest.raises(UserError, match="already exists"):
        records.check_new_file(blocker)
    assert records.check_new_file(tmp_path / "new" / "out.json") == tmp_path / "new" / "out.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_a_read_only_folder_is_one_line_when_checked_and_when_written(tmp_path, monkeypatch):
    # As root, chmod does not stop a write; a refused temporary file is what a read-only folder gives.
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(records.tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr(records.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"cannot be written \(Permission denied\)"):
        records.check_writable_folder(tmp_path)
    with pytest.raises(UserError, match=r"cannot write .*out.json \(Permission denied\)"):
        records.write_json_atomic(tmp_path / "out.json", {})


def test_unreadable_and_non_utf8_files_are_one_line(tmp_path, monkeypatch):
    latin = tmp_path / "prompts.jsonl"
    latin.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        records.read_jsonl(latin, "prompt set")
    good = tmp_path / "good.json"
    good.write_text("{}")

    def unreadable(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(good), "read_bytes", unreadable)
    with pytest.raises(UserError, match=r"cannot be read \(Permission denied\)"):
        records.read_json(good)


def test_jsonl_lines_end_at_newlines_only(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a\u2028b"}\n\n{"text": "c"}\n', encoding="utf-8")
    assert records.read_jsonl(path) == [{"text": "a\u2028b"}, {"text": "c"}]


def test_a_later_write_removes_old_leftovers_of_killed_writes(tmp_path):
    old_leftover = tmp_path / f".a.json{records.TMP_MARK}x1.tmp"
    fresh_leftover = tmp_path / f".b.json{records.TMP_MARK}x2.tmp"  # may be a write still running
    mine = tmp_path / ".notes.tmp"  # not ours
    for path in (old_leftover, fresh_leftover, mine):
        path.write_text("{")
    hours_ago = time.time() - 2 * records.STALE_TMP_SECONDS
    for path in (old_leftover, mine):
        os.utime(path, (hours_ago, hours_ago))
    records.write_json_atomic(tmp_path / "c.json", {"c": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh_leftover.name, mine.name, "c.json"])
