# Triton for the native option (deploy/compose.native.yml): the official image of the release the tested server
# matches (2.51.0 = 24.10), with the native ONNX Runtime backend (ONNX Runtime 1.19) for the encoders. Its Python
# 3.10 lacks what the Python-backend `tokenizer` and `decoder` models import, so they are installed here, pinned as in
# requirements/serve.txt.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

RUN python3 -m pip install --no-cache-dir numpy==1.26.4 hmmlearn==0.3.3 tokenizers==0.22.2

# The model repository is mounted read-only at /models (see deploy/compose.native.yml).
EXPOSE 8000 8001 8002
