"""Readers and writers for document files (JSONL, Parquet) and transparent (de)compression."""
