# syntax=docker/dockerfile:1
# One image for every Guardian process: `serve` (the default), `socket`, `worker` and `db upgrade`.
#
#   docker build -t migration-guardian .
#   docker run --rm migration-guardian --version
#   docker run --rm -v "$PWD:/repo" -w /repo migration-guardian lint prisma/migrations
#
# pg_dump/pg_restore come from PostgreSQL's own apt repository at PG_CLIENT_MAJOR, which must be at least the
# newest PostgreSQL Guardian supports (the grammar of its parser, pglast): a backup needs a pg_dump whose major
# version is >= the server's (DESIGN §5). tests/test_container.py checks this rule and the commands below.
ARG PYTHON_VERSION=3.12
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- build: the wheel and its dependencies
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE CHANGELOG.md guardian.example.toml ./
COPY migrations ./migrations
COPY bot ./bot
COPY workers ./workers
RUN python -m pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
ARG DEBIAN_RELEASE
ARG PG_CLIENT_MAJOR=18
LABEL org.opencontainers.image.title="Migration Guardian" \
      org.opencontainers.image.description="Slack ChatOps bot that reviews, approves and safely runs PostgreSQL migrations" \
      org.opencontainers.image.licenses="Apache-2.0"

# git: requests read migrations from the application's repository at a pinned commit
# postgresql-client-N: pg_dump / pg_restore for backups, from apt.postgresql.org (Debian's own stops at 15)
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl git; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${PG_CLIENT_MAJOR}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version | grep -q " ${PG_CLIENT_MAJOR}\."

COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-index --find-links /wheels migration-guardian \
    && rm -rf /wheels \
    && guardian --version

# non-root; backups live in a volume it owns ([backup] dir), the config is mounted at /etc/guardian
RUN groupadd --system --gid 10001 guardian \
    && useradd --system --uid 10001 --gid guardian --home-dir /var/lib/guardian --create-home guardian \
    && install -d -o guardian -g guardian -m 0700 /var/lib/guardian/backups \
    && install -d -m 0755 /etc/guardian
USER 10001:10001
WORKDIR /var/lib/guardian
# the application's checkout is mounted (read-only, owned by someone else): let git read it
ENV PYTHONUNBUFFERED=1 \
    GUARDIAN_CONFIG=/etc/guardian/guardian.toml \
    PORT=3000 \
    GIT_CONFIG_COUNT=1 \
    GIT_CONFIG_KEY_0=safe.directory \
    GIT_CONFIG_VALUE_0=*
VOLUME ["/var/lib/guardian/backups"]
EXPOSE 3000
# no HEALTHCHECK here: the same image runs workers, which serve no HTTP; compose.yaml checks the bot's /healthz
ENTRYPOINT ["guardian"]
CMD ["serve", "--host", "0.0.0.0"]
