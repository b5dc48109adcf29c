"""llama-server's /tools: its built-in tools (file access and a shell, off unless --tools names
them) and the tools of MCP servers (--mcp-servers-json / --mcp-servers-config), spawned as
stdio children. The routes are the llamacpp family's (server/llamacpp/tools_router.py)."""
