"""0-shot tinyMMLU: the log-prob run and the paired comparison."""
