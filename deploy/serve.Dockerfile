# The server the test suite runs, as one image: tritonserver 2.51.0 from the nvidia-pytriton wheel with its Python
# backend, the encoders on the onnxruntime pip package inside Python-backend models, and the web gateway, installed
# by scripts/setup.sh from the same requirements/*.txt pins and laid out under .triton/ as on a test machine.
# At start it exports the default model (models/default) and runs `python -m serving up` (deploy/serve.sh).
FROM python:3.11-slim-bookworm

# torch's CPU build of the pinned version, as on the test machines (2.13.0+cpu): PyPI's Linux wheel would bring CUDA's
# libraries, unused here.
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /app
# The image's Python has its shared libpython (/usr/local/lib), which the Python-backend stub links, and venv
# support, so setup.sh installs no Debian package here.
COPY . .
RUN bash scripts/setup.sh serve && rm -rf /root/.cache

# The corpus is not part of the image: the export reads it from NER_DATA_DIR, mounted read-only (docker-compose.yml).
RUN useradd --create-home --shell /usr/sbin/nologin ner && mkdir -p build .run && chown ner:ner build .run
USER ner
ENV NER_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["bash", "deploy/serve.sh"]
