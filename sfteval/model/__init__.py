"""Model loading and precision (transformers / unsloth, bitsandbytes, GGUF), decoding helpers and the speed pieces used at load or decode time."""
