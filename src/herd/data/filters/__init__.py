"""Heuristic document filters and transforms; thresholds default to the papers' values (docs/spec.md §4)."""
