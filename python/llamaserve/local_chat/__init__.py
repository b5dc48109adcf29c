"""Chat in Python, on the server's own chat pipeline (server/chat/): `Engine.chat` and
`Engine.achat` take OpenAI-style messages, tools, tool_choice and response_format and return
the parsed reply (content, reasoning, tool calls) without an HTTP server."""
from llamaserve.local_chat.results import ChatChunk, ChatReply, ToolCallDelta

__all__ = ["ChatChunk", "ChatReply", "ToolCallDelta"]
