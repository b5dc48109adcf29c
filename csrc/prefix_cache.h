// The host-memory tier of the prefix cache: snapshots of sequences' KV (llama_state_seq_*),
// keyed by the tokens they hold, bounded in bytes, least recently used out. A prefix that
// left the slots (another request took the slot, or the KV budget wanted its cells) comes
// back from here without being prefilled again, for any slot and any client.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <vector>

#include "llama.h"

namespace llamaserve {

struct PrefixSnapshot {
    std::vector<llama_token> tokens;  // the sequence's tokens, positions 0..n-1
    std::vector<uint8_t> state;       // llama_state_seq_get_data of exactly those tokens
};

struct PrefixCacheStats {
    uint64_t entries = 0;
    uint64_t bytes = 0;
    uint64_t budget = 0;
    uint64_t hits = 0;       // restores into a slot
    uint64_t evictions = 0;  // snapshots dropped for room
};

class PrefixCache {
public:
    explicit PrefixCache(size_t budget_bytes) : budget_(budget_bytes) {}

    bool enabled() const { return budget_ > 0; }
    // Whether a snapshot of `bytes` would be kept at all.
    bool would_keep(size_t bytes) const { return bytes > 0 && bytes <= budget_ / 4; }

    // The snapshot that serves most of `prompt`, and how many of its tokens: a snapshot
    // must be a whole prefix of the prompt (its last cells may be all that is left of a
    // sliding window), unless `partial` says a shorter common prefix is usable too.
    // Never the whole prompt: its last token is always decoded, for its logits.
    struct Match {
        const PrefixSnapshot * snapshot = nullptr;
        size_t reuse = 0;
    };
    Match find(const std::vector<llama_token> & prompt, bool partial);

    // The longest common prefix `prompt` has with any snapshot (whether usable or not).
    size_t longest_shared(const std::vector<llama_token> & prompt) const;
    // The same, and whether that snapshot goes on with other tokens than the prompt does.
    struct Shared {
        size_t n = 0;
        bool diverges = false;
    };
    Shared longest_shared_entry(const std::vector<llama_token> & prompt) const;
    bool holds(const std::vector<llama_token> & tokens, size_t n) const;

    // Keeps a snapshot unless it alone is over a quarter of the budget; drops the least
    // recently used ones until it fits.
    void insert(PrefixSnapshot snapshot);
    void count_hit();

    PrefixCacheStats stats() const;

private:
    // The scheduler alone changes it; the lock is for stats() from other threads.
    mutable std::mutex mu_;
    size_t budget_;
    size_t bytes_ = 0;
    uint64_t hits_ = 0;
    uint64_t evictions_ = 0;
    std::list<PrefixSnapshot> entries_;  // most recently used first
};

// Common leading tokens of a and b, at most `limit`.
size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b,
                     size_t limit = SIZE_MAX);

}  // namespace llamaserve
