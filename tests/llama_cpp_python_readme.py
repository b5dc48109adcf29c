"""The examples of llama-cpp-python's README as one script written for llama-cpp-python:
test_compat_llama.py runs it with its first import line changed to llamaserve's, and nothing
else. It prints one JSON line per example for the test to check. argv[1]: the model file."""
from llama_cpp import Llama  # noqa: the one line the test changes
import json
import sys

model_path = sys.argv[1]
llm = Llama(model_path=model_path, seed=1337, n_ctx=2048, verbose=False)

# Text completion
output = llm(
    "Q: Name the planets in the solar system? A: ",  # Prompt
    max_tokens=32,  # Generate up to 32 tokens
    stop=["Q:", "\n"],  # Stop generating just before the model would generate a new question
    echo=True,  # Echo the prompt back in the output
)
print(json.dumps({"example": "completion", "output": output}))

# Chat completion
chat = llm.create_chat_completion(
    messages=[
        {"role": "system", "content": "You are an assistant who perfectly describes images."},
        {"role": "user", "content": "Describe this image in detail please."},
    ],
    max_tokens=48,
)
print(json.dumps({"example": "chat", "output": chat}))

# JSON mode
llm = Llama(model_path=model_path, chat_format="chatml", seed=1337, verbose=False)
json_mode = llm.create_chat_completion(
    messages=[
        {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
        {"role": "user", "content": "Who won the world series in 2020"},
    ],
    response_format={"type": "json_object"},
    temperature=0.7,
)
print(json.dumps({"example": "json_mode", "output": json_mode}))

# JSON Schema mode
schema_mode = llm.create_chat_completion(
    messages=[
        {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
        {"role": "user", "content": "Who won the world series in 2020"},
    ],
    response_format={
        "type": "json_object",
        "schema": {"type": "object", "properties": {"team_name": {"type": "string"}}, "required": ["team_name"]},
    },
    temperature=0.7,
)
print(json.dumps({"example": "json_schema_mode", "output": schema_mode}))

# Function calling
llm = Llama(model_path=model_path, chat_format="chatml-function-calling", seed=1337, verbose=False)
calling = llm.create_chat_completion(
    messages=[
        {"role": "system", "content": "A chat between a curious user and an artificial intelligence assistant. "
                                      "The assistant gives helpful, detailed, and polite answers to the user's "
                                      "questions. The assistant calls functions with appropriate input when necessary"},
        {"role": "user", "content": "Extract Jason is 25 years old"},
    ],
    tools=[{
        "type": "function",
        "function": {
            "name": "UserDetail",
            "parameters": {
                "type": "object",
                "title": "UserDetail",
                "properties": {"name": {"title": "Name", "type": "string"}, "age": {"title": "Age", "type": "integer"}},
                "required": ["name", "age"],
            },
        },
    }],
    tool_choice={"type": "function", "function": {"name": "UserDetail"}},
)
print(json.dumps({"example": "function_calling", "output": calling}))

# Streaming (llama-cpp-python's chunks, as OpenAI's)
pieces = [chunk["choices"][0]["delta"].get("content", "") for chunk in
          llm.create_chat_completion(messages=[{"role": "user", "content": "Say hello."}], stream=True, max_tokens=16)
          if chunk["choices"]]
print(json.dumps({"example": "stream", "output": pieces}))

# Embeddings
llm = Llama(model_path=model_path, embedding=True, verbose=False)
one = llm.create_embedding("Hello, world!")
several = llm.create_embedding(["Hello, world!", "Goodbye, world!"])
print(json.dumps({"example": "embeddings", "output": {"one": one, "several": several}}))
