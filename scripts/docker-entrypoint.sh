#!/bin/sh
# Container start: bring the index up to date, then serve the chat UI and the /v1 API.
# With arguments, run those instead (e.g. `docker compose run --rm app python -m ingest --status`).
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# INGEST_ON_START=0 skips the ingest, e.g. on extra replicas that only serve.
if [ "${INGEST_ON_START:-1}" = "1" ]; then
    # An ingest that fails leaves the previous index answering (the manifest is the commit point),
    # so the UI still starts and reports the problem rather than the container restarting in a loop.
    # Replicas started together do not race: the ingest lock on the shared /data lets one ingest and
    # makes the others fail fast; they then serve whatever generation the first one commits.
    if ! python -m ingest; then
        echo "docker-entrypoint: ingest failed (see above); starting the UI on the existing index" >&2
    fi
fi

# Non-loopback bind: the chat module refuses to start without a UI login (KBQA_UI_USERNAME/KBQA_UI_PASSWORD)
# and API keys (KBQA_API_KEYS).
exec python -m chat --host 0.0.0.0
