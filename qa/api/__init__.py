"""HTTP API (FastAPI): thin routers over the services built in qa.wiring."""
