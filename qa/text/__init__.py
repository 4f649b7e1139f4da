"""Text utilities: language detection, Chinese script folding, tokenisation, sentences."""
