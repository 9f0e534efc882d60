"""Who may call the API and read its docs.

- ``/v1/*``: with ``KBQA_API_KEYS`` set, ``Authorization: Bearer <key>``; with a UI login set, a
  logged-in browser session also counts. With neither, the API is open: the server only starts so
  on a loopback address (or with --allow-unauthenticated), see ``chat.http.server``.
- ``/docs``, ``/openapi.json``: open without a UI login; with one, only for a logged-in session or a
  valid key, so that with a login only the login page and static assets answer strangers.

Gradio keeps its sessions in its mounted app (``tokens``, keyed by the ``access-token-<cookie_id>``
cookie its login sets); ``gradio_user`` reads them there so one login covers the UI and the API.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import Request

from chat.http.errors import ApiError
from kb.settings import Settings


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (the one case that needs no login)."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(settings: Settings) -> tuple[str, str] | None:
    """The UI login (username, password), or None when none is configured; it also admits a browser to the API."""
    password = settings.ui_password.get_secret_value() if settings.ui_password else ""
    if settings.ui_username and password:
        return settings.ui_username, password
    return None


def api_keys(settings: Settings) -> list[str]:
    raw = settings.api_keys.get_secret_value() if settings.api_keys else ""
    return [key.strip() for key in raw.split(",") if key.strip()]


class Guard:
    def __init__(self, keys: list[str], login: bool) -> None:
        self.keys = [k.encode("utf-8") for k in keys]
        self.login = login
        self.gradio_app: Any = None  # set once Gradio is mounted

    @property
    def open(self) -> bool:
        return not self.keys and not self.login

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode("utf-8")
        # compare_digest against every key, so timing tells nothing about which one nearly matched
        return any([hmac.compare_digest(given, key) for key in self.keys])

    def gradio_user(self, request: Request) -> str | None:
        app = self.gradio_app
        if app is None or not self.login:
            return None
        cookie_id = getattr(app, "cookie_id", None)
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}")
        return app.tokens.get(token) if token else None

    def _refuse(self, request: Request) -> ApiError:
        has_header = bool(request.headers.get("authorization"))
        if self.keys:
            message = ("Invalid API key." if has_header else
                       "This API needs a key: send the header 'Authorization: Bearer <key>' (keys: KBQA_API_KEYS).")
        else:
            message = ("Log in to the UI first, or set KBQA_API_KEYS on the server and send "
                       "'Authorization: Bearer <key>'.")
        return ApiError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    async def api(self, request: Request) -> None:
        """Dependency of every /v1 route."""
        if self.open or self.bearer_ok(request) or self.gradio_user(request):
            return
        raise self._refuse(request)

    async def docs(self, request: Request) -> None:
        """Dependency of /docs and /openapi.json."""
        if not self.login or self.bearer_ok(request) or self.gradio_user(request):
            return
        raise self._refuse(request)


# What a stranger may load when a login is configured: the login page and what it is drawn with.
PUBLIC_PATHS = frozenset({"/", "/login", "/login/", "/logout", "/favicon.ico", "/theme.css", "/robots.txt",
                          "/manifest.json", "/gradio_api/theme.css", "/pwa_icon"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon/")


class LoginWall:
    """With a UI login configured, every other path needs the login (or an API key) before it runs.

    Gradio checks the login on most of its routes but not all (``/gradio_api/startup-events``,
    ``/gradio_api/runs``, ``/gradio_api/app_id``, ``/gradio_api/heartbeat/...`` answer anyone), so the
    wall stands in front of the whole app rather than relying on each route.
    """

    def __init__(self, app: Any, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.guard.login or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.guard.bearer_ok(request) or self.guard.gradio_user(request):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = self.guard._refuse(request).response()
        await response(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
