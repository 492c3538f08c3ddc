"""Readers and writers for document files (JSONL, Parquet); their compression is :mod:`herd.io.compression`."""
