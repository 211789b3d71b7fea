"""LoRA / QLoRA training: alpaca data, recipes, the trainer for both backends, memory estimates."""
