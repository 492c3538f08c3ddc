"""Evaluation: the Llama papers' benchmarks scored as lm-evaluation-harness scores them, on herd's engine."""
