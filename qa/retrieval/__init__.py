"""Retrieval: dense and lexical legs, fusion, confidence and evidence."""
