"""The web UI (Gradio): chat, conversations, documents.

``build_app(assistant, settings)`` makes the ``gr.Blocks`` app (the HTTP server mounts it with
``gr.mount_gradio_app``); ``launch(host, port, allow_unauthenticated)`` serves it on its own.
"""

from chat.ui.app import (
    AssistantPool,
    ChatApp,
    ChatController,
    ChatSession,
    build_app,
    credentials,
    is_loopback,
    launch,
)

__all__ = [
    "AssistantPool", "ChatApp", "ChatController", "ChatSession", "build_app", "credentials", "is_loopback", "launch",
]
