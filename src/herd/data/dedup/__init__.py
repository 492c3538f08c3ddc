"""Deduplication: exact (files, URLs, lines) and near-duplicate (MinHash, semantic).

A dedup step removes duplicates within the stream of documents one task sees;
run it in a stage with one task (or one task per group of shards, CCNet's
"group") to deduplicate across everything that task reads. The exception is
``minhash_dedup`` in a recipe source with several tasks: it runs as the global
stages of :mod:`herd.data.dedup.global_minhash`, across all of them.
"""
