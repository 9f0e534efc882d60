# The kbqa app: ingest on start, then the Gradio chat UI on port 7860.
# Runs offline: the embedding model is baked in at build time; Chroma and Ollama are other services
# (see docker-compose.yml).
FROM python:3.11-slim

ARG EMBED_MODEL=intfloat/multilingual-e5-small

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/opt/hf \
    GRADIO_ANALYTICS_ENABLED=False \
    ANONYMIZED_TELEMETRY=False

# CJK font so Chinese renders in the UI and in the eval report's plots.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fonts-wqy-microhei fontconfig \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin app \
    && mkdir -p /app /data /opt/hf \
    && chown app:app /data /opt/hf

# torch first and pinned to the CPU build; unpinned, pip pulls a multi-GB CUDA build for
# sentence-transformers. The constraint keeps every later install from replacing it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && echo "torch==2.13.0" > /etc/pip-constraints.txt
ENV PIP_CONSTRAINT=/etc/pip-constraints.txt

WORKDIR /app

# Dependencies before the code, so a code change does not re-download them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The embedding model, downloaded once here so the container never needs the network.
USER app
RUN python -c "import sys; from sentence_transformers import SentenceTransformer as S; S(sys.argv[1], device='cpu')" \
        "$EMBED_MODEL"
USER root

COPY README.md ./
COPY kb ./kb
COPY ingest ./ingest
COPY chat ./chat
COPY eval ./eval
RUN pip install .
COPY --chmod=755 scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    KBQA_EMBED_RUNTIME=sentence-transformers \
    KBQA_EMBED_MODEL=${EMBED_MODEL} \
    KBQA_DATA_DIR=/data \
    KBQA_DOCS_DIR=/app/kb/docs

USER app
# Fail the build, not the first start, if the model does not load offline through the app's own code.
RUN python -c "from kb.embeddings import load_embedding; from kb.settings import Settings; print(load_embedding(Settings())[1])"

EXPOSE 7860
ENTRYPOINT ["docker-entrypoint.sh"]
