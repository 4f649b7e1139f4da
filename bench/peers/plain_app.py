"""The peer as most people write it: the hand-written search app (``search_app.py``) with EmbeddingGemma
in fp32 torch through sentence-transformers.

Run: ``PLAIN_MODEL_PATH=<sentence-transformers folder> uvicorn plain_app:app --app-dir bench/peers``
"""

import os

from sentence_transformers import SentenceTransformer

from search_app import search_app

model = SentenceTransformer(os.environ["PLAIN_MODEL_PATH"], device="cpu", local_files_only=True)
app = search_app(lambda texts, prompt_name: model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True),
                 model.get_sentence_embedding_dimension())
