"""The formats that cross a stage: compression, atomic writes, typed fields, GGUF, token shards."""
