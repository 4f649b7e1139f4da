"""Peer applications that ``qa bench --peers`` starts next to qa (run with their own interpreters)."""
