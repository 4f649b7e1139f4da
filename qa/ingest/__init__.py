"""Ingestion: parse files into documents, split them into passages, store and index them."""
