"""``python -m chat``: serve the API and the UI on one host and port, refusing unsafe exposure.

The rule is the UI's, extended to the API: on a non-loopback address the UI needs a login
(``KBQA_UI_USERNAME``/``KBQA_UI_PASSWORD``) and the API needs keys (``KBQA_API_KEYS``), unless
``--allow-unauthenticated`` says the network is trusted.
"""

from __future__ import annotations

import logging

import uvicorn

from chat.assistant import Assistant
from chat.http.app import create_app
from chat.http.auth import api_keys, credentials, is_loopback
from kb.settings import Settings, get_settings

log = logging.getLogger(__name__)


def exposure_problem(host: str, settings: Settings, allow_unauthenticated: bool) -> str | None:
    """Why serving on ``host`` with these settings is refused, or None when it may start."""
    password = settings.ui_password.get_secret_value() if settings.ui_password else ""
    if bool(settings.ui_username) != bool(password):
        return "Set both KBQA_UI_USERNAME and KBQA_UI_PASSWORD, or neither."
    if is_loopback(host) or allow_unauthenticated or settings.ui_allow_unauthenticated:
        return None
    missing = []
    if credentials(settings) is None:
        missing.append("a UI login (KBQA_UI_USERNAME and KBQA_UI_PASSWORD)")
    if not api_keys(settings):
        missing.append("API keys (KBQA_API_KEYS, comma-separated; clients send 'Authorization: Bearer <key>')")
    if not missing:
        return None
    return (f"Refusing to serve on {host} without {' and '.join(missing)}: anyone on the network could use it. "
            "Set them, or pass --allow-unauthenticated (KBQA_UI_ALLOW_UNAUTHENTICATED=true) if the network is "
            "trusted. The default, 127.0.0.1, is reachable from this machine only.")


def serve(host: str | None = None, port: int | None = None, allow_unauthenticated: bool = False, *,
          settings: Settings | None = None) -> int:
    """Serve until interrupted; returns the process exit code (2: refused or could not start)."""
    settings = settings or get_settings()
    host = host or settings.ui_host
    port = port or settings.ui_port
    problem = exposure_problem(host, settings, allow_unauthenticated)
    if problem:
        log.error("%s", problem)
        return 2
    if not is_loopback(host) and (credentials(settings) is None or not api_keys(settings)):
        log.warning("Serving on %s WITHOUT %s (--allow-unauthenticated).", host,
                    "a login" if credentials(settings) is None else "API keys")

    assistant = Assistant(settings)
    try:  # also loads the embedding model now rather than on the first question
        st = assistant.status()
        log.info("Mode: %s (%s)", st.mode, st.mode_detail)
        log.info("Index: %s", f"{st.documents} documents, {st.chunks} chunks, {st.embedding}" if st.index_ok
                 else st.index_detail)
    except Exception as exc:
        log.warning("Status check failed: %s", exc)
    app = create_app(settings, assistant, host=host, port=port)
    shown = host if ":" not in host else f"[{host}]"
    log.info("Starting the chat UI on http://%s:%d/%s and the OpenAI-compatible API on http://%s:%d/v1 (docs: /docs)%s", shown, port,
             " (login required)" if credentials(settings) else "", shown, port,
             " (API key required)" if api_keys(settings) else "")
    # uvicorn handles SIGINT/SIGTERM itself (a graceful stop, as `docker stop` expects).
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=10))
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind; it has logged why
        log.error("Could not start the server on %s:%d (exit %s).", host, port, exc.code)
        return 2
    except OSError as exc:
        log.error("Could not start the server on %s:%d: %s", host, port, exc)
        return 2
    finally:
        blocks = getattr(app.state, "blocks", None)
        if blocks is not None:
            blocks.close()
    return 0 if server.started else 2
