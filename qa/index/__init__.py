"""Search indexes over the passage store: dense vectors (FAISS) and lexical (BM25)."""
