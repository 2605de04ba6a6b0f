# The dexwatch application image (`app` in Artifact Registry). By default the prediction
# server, as a Vertex AI custom container; Cloud Run runs the publishers (`dexwatch publish
# chain|subgraph`) and the Slack consumer (`dexwatch slack serve --push`) from it with other
# arguments (infra/terraform/run.tf). As the prediction server (runs anywhere with Docker):
#   docker build -t REGION-docker.pkg.dev/PROJECT/dexwatch/serve:TAG .
#   docker run -p 8080:8080 -e AIP_STORAGE_URI=/models/pool-hour \
#     -v $PWD/.dexwatch/models/pool-hour/versions/VERSION:/models/pool-hour:ro IMAGE
# Vertex AI sets AIP_HTTP_PORT, AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE and AIP_STORAGE_URI (the
# registered version's artifact directory, copied from its artifact_uri); the server reads
# them. Its settings come from DEXWATCH_* variables like every dexwatch command's.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEXWATCH_LOGGING__FORMAT=json

WORKDIR /app
# The package with its serving extra, at the versions of requirements.lock (what the tests
# ran); the lock's dev tools (pytest, ruff) are not installed.
COPY requirements.lock pyproject.toml setup.py README.md ./
COPY dexwatch ./dexwatch
COPY model ./model
COPY publishers ./publishers
COPY beam_pipelines ./beam_pipelines
COPY infra ./infra
RUN pip install --constraint requirements.lock ".[serving]" \
    && useradd --create-home --uid 10001 dexwatch
USER 10001
WORKDIR /home/dexwatch

EXPOSE 8080
CMD ["dexwatch", "serve", "--host", "0.0.0.0"]
