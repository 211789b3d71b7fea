"""IFEval: the prompt set, the generation run, scoring with lm-eval's checkers, paired comparison."""
