"""The HTTP server: an OpenAI-compatible API (``/v1``) with the Gradio UI mounted, on one port.

``create_app(settings, assistant)`` makes the FastAPI app; ``serve(host, port, allow_unauthenticated)``
runs it (``python -m chat``).
"""

from chat.http.app import create_app
from chat.http.server import serve

__all__ = ["create_app", "serve"]
