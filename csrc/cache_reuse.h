// Reuse past a divergence: when a prompt leaves a sequence's cached tokens (a changed header
// line, an edited or moved message) and later goes on with text the cache holds, the cached
// chunks that reappear are kept and moved to their new positions (a RoPE shift of their K,
// llama_memory_seq_add) instead of being prefilled again.
//
// It is an approximation: a reused chunk's KV was computed against the old text before it.
// benchmarks/cache_reuse_drift.py measures what that changes (README, "Reuse past a divergence").
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"

namespace llamaserve {

// The shortest run of tokens worth hashing to find a chunk (a chunk is never shorter).
constexpr size_t kReuseAnchor = 8;
// The smallest minimum chunk a server may set (--cache-reuse): shorter chunks drift more for
// little prefill saved.
constexpr int32_t kMinReuseChunk = 16;

// One reused chunk: n cached tokens from cache position `cache_at` serve the prompt's tokens
// from `prompt_at`.
struct ReuseChunk {
    size_t cache_at = 0;
    size_t prompt_at = 0;
    size_t n = 0;
};

struct ReusePlan {
    size_t prefix = 0;               // leading tokens the cache serves as they are
    std::vector<ReuseChunk> chunks;  // after it, in prompt order, none overlapping in the cache
    size_t reused() const;           // tokens of all chunks
};

// Chunks of at least `min_chunk` tokens of `cache` (after `prefix`) that reappear in `prompt`
// (after `prefix`, before its last token, which is always decoded for its logits). With `gaps`
// the prompt may have new tokens before a chunk (they are prefilled in between); without, the
// chunks must follow the prefix and each other directly (the cache may skip tokens: a deleted
// span), as llama-server's --cache-reuse does.
ReusePlan plan_reuse(const std::vector<llama_token> & cache, const std::vector<llama_token> & prompt,
                     size_t prefix, size_t min_chunk, bool gaps);

// Where a prompt left the cached sequence it shares most with, for the client (usage) and
// metrics: the first prompt token that the cache held otherwise.
struct CacheDeparture {
    int32_t at = -1;   // -1: the prompt never left a cached sequence (it extends one, or none was cached)
    std::string text;  // a short excerpt of the prompt from just before that token
};

}  // namespace llamaserve
