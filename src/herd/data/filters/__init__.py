"""Heuristic document filters and transforms; thresholds default to the papers' values (SPEC §4)."""
