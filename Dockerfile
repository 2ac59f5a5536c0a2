# The image for both the scheduler and the task pods it creates.
#
# Build it from your DAG project, with this repository's source next to it:
#   docker build -t registry.example.com/my-project:1.0.0 \
#     --build-arg PROJECT=examples .
# PROJECT is the folder holding your config.py and DAG folders; it is copied to
# /app, so the config is /app/config.py (as in k8s/deployment.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

# A fixed numeric non-root user: pods set runAsNonRoot, which needs a numeric UID.
RUN groupadd --system --gid 10001 workflows \
 && useradd --system --uid 10001 --gid workflows --no-create-home --home-dir /tmp workflows

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY workflows_tick ./workflows_tick
COPY migrations ./migrations
RUN pip install . && rm -rf /src

ARG PROJECT=examples
COPY --chown=root:root ${PROJECT} /app
WORKDIR /app

# The root filesystem is read-only in the pods; /tmp is an emptyDir.
USER 10001:10001
# No ENTRYPOINT: task pods pass the whole command line as args
# (["workflows", "/app/config.py", "run", DAG, "-o", TASK]), and kube_command,
# when set, becomes the command that wraps them.
CMD ["workflows", "--help"]
