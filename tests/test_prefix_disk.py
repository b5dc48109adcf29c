"""The prefix cache's disk tier (--cache-dir): a new engine on the same folder answers the next
turn of a conversation from disk; damaged, foreign and stale files are never restored; the
folder's budget lets the least recently used file go; a server killed between turns answers the
next one from disk. Real engines on the default SmolLM2 weights, a real server in a subprocess."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import llamaserve
from serverutil import wait_healthy

SYSTEM = ("You are the support assistant of a hardware shop. " +
          " ".join(f"Rule {i}: answer questions about item {i} politely and briefly." for i in range(24)))


def ask(question: str) -> str:
    return f"{SYSTEM}\nCustomer: {question}\nAssistant:"


def load(path, folder, **options) -> llamaserve.Engine:
    return llamaserve.Engine.load(path, n_ctx=1024, n_parallel=1, cache_dir=folder, **options)


def snapshot_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.kvsnap"))


def test_a_new_engine_answers_the_next_turn_from_disk(smollm2_path, tmp_path):
    first_prompt = ask("Do you sell drills?")
    with load(smollm2_path, tmp_path) as first:
        turn = first.generate(first_prompt, max_tokens=12, temperature=0)
    # Closing the engine finished its write: the file is whole on disk.
    assert len(snapshot_files(tmp_path)) == 1
    follow = first_prompt + turn.text + "\nCustomer: And saws?\nAssistant:"
    with load(smollm2_path, tmp_path) as restarted:
        assert restarted.cache_stats["disk_entries"] == 1
        again = restarted.generate(follow, max_tokens=16, temperature=0)
        # The first prompt (all but its last token) came from the file, not from a prefill.
        assert again.usage.cached_tokens == turn.usage.prompt_tokens - 1
        stats = restarted.cache_stats
        assert stats["disk_hits"] == 1 and stats["host_hits"] == 1 and stats["disk_dropped"] == 0

    # Without a disk tier, the same prefix restored from host memory: the same KV, the same reply
    # (a full recompute batches the prompt otherwise, and may round a near tie the other way).
    with llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=1) as memory_only:
        memory_only.generate(first_prompt, max_tokens=12, temperature=0)
        memory_only.generate("Something else entirely", max_tokens=2)  # takes the only slot
        plain = memory_only.generate(follow, max_tokens=16, temperature=0)
        assert plain.usage.cached_tokens == again.usage.cached_tokens
        assert memory_only.cache_stats["host_hits"] == 1
    assert again.text == plain.text


def test_a_damaged_file_is_deleted_and_the_prompt_prefilled(smollm2_path, tmp_path):
    prompt = ask("Is the drill cordless?")
    with load(smollm2_path, tmp_path) as first:
        expected = first.generate(prompt, max_tokens=8, temperature=0)
    [file] = snapshot_files(tmp_path)
    whole = file.read_bytes()

    # A flipped byte inside the KV state: the header is fine, the checksum is not.
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0xFF
    file.write_bytes(bytes(damaged))
    with load(smollm2_path, tmp_path) as second:
        assert second.cache_stats["disk_entries"] == 1  # only its header was read so far
        served = second.generate(prompt, max_tokens=8, temperature=0)
        assert served.usage.cached_tokens == 0 and served.text == expected.text
        assert second.cache_stats["disk_dropped"] == 1 and second.cache_stats["disk_hits"] == 0
    # Deleted when found damaged; the prompt's own snapshot has been written since.
    assert file not in snapshot_files(tmp_path) or file.read_bytes() != bytes(damaged)

    # Cut short (a copy that stopped half way): found out when the folder is read.
    for extra in snapshot_files(tmp_path):
        extra.unlink()
    file.write_bytes(whole[: len(whole) // 3])
    # And what a server killed while writing left: its temporary file (the writer's pid is gone).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    temp = tmp_path / f"{file.name}.tmp-{dead.pid}-0"
    temp.write_bytes(whole[:1000])
    with load(smollm2_path, tmp_path) as third:
        assert third.cache_stats["disk_entries"] == 0 and third.cache_stats["disk_dropped"] == 1
        assert not file.exists() and not temp.exists()
        assert third.generate(prompt, max_tokens=8, temperature=0).text == expected.text


def test_files_of_another_model_or_other_settings_are_never_read(smollm2_path, tmp_path):
    prompt = ask("Do you rent ladders?")
    with load(smollm2_path, tmp_path) as f16:
        f16.generate(prompt, max_tokens=4, temperature=0)
    [f16_file] = snapshot_files(tmp_path)

    # Another KV cache type: the file is not this engine's, and not deleted either (an engine
    # with the first settings may still want it).
    with load(smollm2_path, tmp_path, cache_type_k="q8_0") as q8:
        assert q8.cache_stats["disk_entries"] == 0
        assert q8.generate(prompt, max_tokens=4, temperature=0).usage.cached_tokens == 0
    assert f16_file.exists()
    [q8_file] = [f for f in snapshot_files(tmp_path) if f != f16_file]

    # The f16 file under the q8_0 engine's name: its header's fingerprint gives it away.
    q8_file.write_bytes(f16_file.read_bytes())
    with load(smollm2_path, tmp_path, cache_type_k="q8_0") as q8:
        assert q8.cache_stats["disk_entries"] == 0 and q8.cache_stats["disk_dropped"] == 1
        assert q8.generate(prompt, max_tokens=4, temperature=0).usage.cached_tokens == 0

    # The same weights in a file written later (a model replaced in place): a stale cache.
    copy = tmp_path / "model" / "smollm2.gguf"
    copy.parent.mkdir()
    shutil.copyfile(smollm2_path, copy)
    with load(copy, tmp_path) as replaced:
        assert replaced.cache_stats["disk_entries"] == 0
        assert replaced.generate(prompt, max_tokens=4, temperature=0).usage.cached_tokens == 0


def test_the_folder_budget_lets_the_least_recently_used_file_go(smollm2_path, tmp_path):
    # Prompts that share nothing but their first token, each ~180 tokens: one snapshot each.
    text = " ".join(f"Line {i} of the inventory lists a box of screws." for i in range(14))
    prompts = {name: f"{name} asked: {text}\nAnswer:" for name in ("Alice", "Bruno", "Chiara", "Dmitri", "Emma")}
    with load(smollm2_path, tmp_path) as sizing:
        sizing.generate(prompts["Alice"], max_tokens=2, temperature=0)
    [alice] = snapshot_files(tmp_path)
    # Room for four such files (a file may take at most a quarter of the budget).
    budget = int(alice.stat().st_size * 4.5)
    with load(smollm2_path, tmp_path, cache_disk=budget) as engine:
        for name in ("Bruno", "Chiara", "Dmitri"):
            engine.generate(prompts[name], max_tokens=2, temperature=0)
            time.sleep(0.05)  # file times apart, whatever the file system's resolution
        assert engine.cache_stats["disk_evictions"] == 0
        names = {f.name for f in snapshot_files(tmp_path)}
        assert len(names) == 4
        # Alice, the oldest file, is used (restored from disk): the front of the LRU order now.
        assert engine.generate(prompts["Alice"], max_tokens=2, temperature=0).usage.cached_tokens > 150
        time.sleep(0.05)
        engine.generate(prompts["Emma"], max_tokens=2, temperature=0)
        stats = engine.cache_stats
    assert stats["disk_evictions"] == 1 and stats["disk_hits"] == 1
    left = {f.name for f in snapshot_files(tmp_path)}
    assert alice.name in left and len(left) == 4
    assert sum(f.stat().st_size for f in snapshot_files(tmp_path)) <= budget
    # Bruno's, the least recently used, went.
    assert len(names - left) == 1 and (names - left) != {alice.name}


def test_cache_dir_and_cache_disk_are_checked(smollm2_path, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(llamaserve.InvalidRequest, match="cache_dir"):
        load(smollm2_path, not_a_folder)
    with pytest.raises(llamaserve.InvalidRequest, match="cache_dir"):
        load(smollm2_path, "")
    with pytest.raises(llamaserve.InvalidRequest, match="cache_disk"):
        load(smollm2_path, tmp_path, cache_disk=0)


# -- the server: `llamaserve serve --cache-dir`, killed between turns --------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(folder: Path, log: Path, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "llamaserve", "serve", "--port", str(port), "--cache-dir", str(folder),
            "--parallel", "1", "--ctx", "2048", "--log-level", "warning"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    wait_healthy(proc, f"http://127.0.0.1:{port}", log, timeout=120)
    return proc


def test_a_server_killed_between_turns_answers_the_next_from_disk(tmp_path):
    import openai

    folder, log, port = tmp_path / "snapshots", tmp_path / "serve.log", free_port()
    url = f"http://127.0.0.1:{port}"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Do you sell drills?"}]
    proc = serve(folder, log, port)
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        first = client.chat.completions.create(model="default", messages=messages, max_tokens=12, temperature=0)
        # The write is off the scheduler: wait for it, then kill the server without a goodbye.
        deadline = time.monotonic() + 60
        while httpx.get(url + "/health").json()["kv_cache"]["prefix_cache"]["disk"]["writes"] < 1:
            assert time.monotonic() < deadline, "no snapshot was written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

        proc = serve(folder, log, port)
        disk = httpx.get(url + "/health").json()["kv_cache"]["prefix_cache"]["disk"]
        assert disk["entries"] >= 1 and disk["hits"] == 0
        messages += [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "And saws?"}]
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        second = client.chat.completions.create(model="default", messages=messages, max_tokens=8, temperature=0)
        assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens - 1
        health = httpx.get(url + "/health").json()["kv_cache"]["prefix_cache"]
        assert health["disk"]["hits"] == 1
        metrics = httpx.get(url + "/metrics").text
        assert "\nllamaserve:prefix_cache_disk_hits_total{" in metrics
        assert "\nllamaserve:prefix_cache_disk_bytes{" in metrics
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # No temporary file is left behind by a finished write.
    assert not [f for f in os.listdir(folder) if ".tmp-" in f]
