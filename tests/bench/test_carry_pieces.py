"""Moving a large file as pieces: the sizes asked for, and a join that checks the checksum."""

import os

import pytest

from sfteval.cli import UserError
from tests.conftest import ROOT, load_script

carry_pieces = load_script(ROOT / "tools" / "carry_pieces.py", "carry_pieces")

MIB = 1024 * 1024


@pytest.mark.parametrize("sizes, expected", [([1], [1, 1, 0.5]), ([2, 1], [2, 0.5]), ([3], [2.5])])
def test_split_takes_the_sizes_in_order_and_join_restores_the_file(tmp_path, sizes, expected):
    source = tmp_path / "model.gguf"
    data = os.urandom(int(2.5 * MIB))
    source.write_bytes(data)
    folders = carry_pieces.split(source, tmp_path / "pieces", sizes)
    pieces = [next(f.glob("model.gguf.*")) for f in folders]
    assert [p.stat().st_size / MIB for p in pieces] == expected
    joined = carry_pieces.join(tmp_path / "pieces", tmp_path / "joined.gguf")
    assert joined.read_bytes() == data


def test_join_refuses_a_changed_piece(tmp_path):
    source = tmp_path / "model.gguf"
    source.write_bytes(os.urandom(MIB + 10))
    folders = carry_pieces.split(source, tmp_path / "pieces", [1])
    (folders[1] / "model.gguf.001").write_bytes(b"x" * 10)
    with pytest.raises(UserError, match="sha256"):
        carry_pieces.join(tmp_path / "pieces", tmp_path / "joined.gguf")
    assert not (tmp_path / "joined.gguf").exists()
