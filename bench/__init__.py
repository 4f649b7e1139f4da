"""Development tooling beside the service: `qa eval`, `qa bench`, the peers they compare qa with, and
the measurement commands `python -m bench.quantize` and `python -m bench.batching`. Not shipped in the image."""
