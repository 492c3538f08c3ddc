"""Executors run a :class:`~herd.data.pipeline.Pipeline` over shards: locally or on Ray."""
