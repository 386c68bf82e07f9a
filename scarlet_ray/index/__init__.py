"""Index folders: passage store, fp16 embedding shards, FAISS index; built once, shared."""
