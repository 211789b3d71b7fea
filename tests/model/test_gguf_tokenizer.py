"""The SentencePiece rebuild used for GGUF files whose converted tokenizer is broken (Gemma 3):
a fast tokenizer built from a SentencePiece BPE proto must encode exactly like SentencePiece."""

import json

import pytest

from sfteval.model import gguf_tokenizer


@pytest.fixture(scope="module")
def alpaca_texts(shared_data):
    records = json.loads((shared_data / "alpaca_cleaned" / "alpaca_data_cleaned_first5000.json").read_text())
    return [r["output"] for r in records[:400]]


@pytest.mark.parametrize("dummy_prefix", [False, True])
def test_rebuilt_tokenizer_encodes_like_sentencepiece(tmp_path, alpaca_texts, dummy_prefix):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as spm_pb

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(alpaca_texts))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "m"),
        model_type="bpe",
        vocab_size=800,
        byte_fallback=True,
        user_defined_symbols=["  ", "<tag>"],
        add_dummy_prefix=dummy_prefix,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        minloglevel=2,
    )
    proto = spm_pb.ModelProto()
    proto.ParseFromString((tmp_path / "m.model").read_bytes())
    reference = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    fast = gguf_tokenizer.fast_tokenizer_from_spm(proto)

    texts = alpaca_texts + ["Two  spaces,  a <tag> and unseen bytes: Ünïcödé 😀 ∑"]
    for text in texts:
        assert fast(text, add_special_tokens=False)["input_ids"] == reference.encode(text), text[:60]
    ids = fast("Hello world")["input_ids"]
    assert ids[0] == 2 and fast.eos_token_id == 3 and fast.pad_token_id == 0
    assert fast.decode(fast(texts[-1], add_special_tokens=False)["input_ids"]) == texts[-1]
