"""The one chat pipeline every API family goes through: plan (template, tools, grammar; the
model leased once), run (an engine stream per choice), the streaming output parser (text,
reasoning and tool calls, per model family), and the neutral events families format."""
