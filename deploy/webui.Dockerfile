# The web UI's WebSocket gateway for the native option (deploy/compose.native.yml): the static page, /ws and /healthz.
# It holds no model; it calls Triton.
FROM python:3.11-slim-bookworm

WORKDIR /app
COPY requirements/webui.txt requirements/webui.txt
RUN pip install --no-cache-dir -r requirements/webui.txt
COPY client client
RUN pip install --no-cache-dir ./client
COPY webui webui

RUN useradd --system --no-create-home gateway
USER gateway
EXPOSE 8080
ENTRYPOINT ["python", "-m", "webui"]
