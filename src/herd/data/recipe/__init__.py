"""Recipes: a TOML file naming each source, its reader, steps, weight and epochs (Llama 1 §2.1)."""
