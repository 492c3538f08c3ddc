"""Readers for each source's native raw format (Llama 1 §2.1, Llama 3 §3.1.1)."""
