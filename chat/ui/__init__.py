"""The web UI (Gradio): chat, conversations, documents.

``build_app(assistant, settings)`` makes the ``gr.Blocks`` app; ``python -m chat`` serves it with the
HTTP API on one port (``chat.http.server.serve``, which also owns the rule for non-loopback binds).
"""

from chat.ui.app import AssistantPool, ChatApp, ChatController, ChatSession, build_app

__all__ = ["AssistantPool", "ChatApp", "ChatController", "ChatSession", "build_app"]
