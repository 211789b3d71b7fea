"""Rebuild a SentencePiece tokenizer from a GGUF file's own vocabulary, scores and token types.

transformers 5.17 converts Gemma 3's GGUF tokenizer into one that does not tokenize like the
original (and, once saved and reloaded, splits text into single characters). The GGUF still holds
everything SentencePiece needs: we write it back into a SentencePiece model and turn that into a
fast BPE tokenizer whose output equals SentencePiece's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPM_MODEL_NAMES = ("llama",)  # GGUF's name for a SentencePiece tokenizer
NORMAL = 1
USER_DEFINED = 4
CONTROL = 3
BYTE = 6


def gguf_field(reader: Any, name: str, default: Any = None) -> Any:
    field = reader.fields.get(name)
    if field is None:
        return default
    values = [field.parts[i] for i in field.data]
    if field.types and field.types[0].name == "ARRAY":
        if field.types[-1].name == "STRING":
            return [bytes(v).decode("utf-8") for v in values]
        return [v[0].item() for v in values]
    value = values[0]
    return bytes(value).decode("utf-8") if field.types[0].name == "STRING" else value[0].item()


def spm_proto_from_gguf(gguf_path: str | Path) -> Any | None:
    """A SentencePiece ModelProto from the GGUF's tokenizer fields; None for non-SentencePiece GGUFs."""
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as spm_pb

    reader = GGUFReader(str(gguf_path))
    if gguf_field(reader, "tokenizer.ggml.model") not in SPM_MODEL_NAMES:
        return None
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    scores = gguf_field(reader, "tokenizer.ggml.scores")
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    proto = spm_pb.ModelProto()
    proto.trainer_spec.model_type = spm_pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = BYTE in types
    for spec_name, gguf_name in (("unk_id", "unknown"), ("bos_id", "bos"), ("eos_id", "eos"), ("pad_id", "padding")):
        setattr(proto.trainer_spec, spec_name, gguf_field(reader, f"tokenizer.ggml.{gguf_name}_token_id", -1))
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(gguf_field(reader, "tokenizer.ggml.add_space_prefix", True))
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for token, score, kind in zip(tokens, scores, types):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = token, score, kind
    return proto


def fast_tokenizer_from_spm(proto: Any) -> Any:
    """A PreTrainedTokenizerFast that encodes exactly like SentencePiece BPE with this proto."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.tokenization_utils_base import generate_merges

    vocab = {piece.piece: index for index, piece in enumerate(proto.pieces)}
    # SentencePiece BPE merges the pair whose result scores highest; only normal pieces merge.
    scores = {piece.piece: piece.score for piece in proto.pieces if piece.type == NORMAL}
    spec = proto.trainer_spec
    unk = proto.pieces[spec.unk_id].piece if spec.unk_id >= 0 else None
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=generate_merges(vocab, scores),
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=spec.byte_fallback,
        )
    )
    if proto.normalizer_spec.add_dummy_prefix:
        # "first": only the start of the text gets the "▁", not every piece after a special token.
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
    else:
        tokenizer.normalizer = normalizers.Replace(" ", "▁")
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    # SentencePiece escapes whitespace before it looks for user-defined pieces, so a user-defined
    # piece holding a space can never match; adding it would split "  " differently.
    tokenizer.add_tokens(
        [
            AddedToken(p.piece, special=p.type == CONTROL, normalized=False)
            for p in proto.pieces
            if p.type == CONTROL or (p.type == USER_DEFINED and " " not in p.piece)
        ]
    )

    def piece(index: int) -> str | None:
        return proto.pieces[index].piece if index >= 0 else None

    bos = piece(spec.bos_id)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, spec.bos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=piece(spec.eos_id),
        unk_token=unk,
        pad_token=piece(spec.pad_id),
    )
