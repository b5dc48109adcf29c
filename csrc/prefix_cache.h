// The host-memory tier of the prefix cache: snapshots of sequences' KV (llama_state_seq_*),
// keyed by the tokens they hold, bounded in bytes, least recently used out. A prefix that
// left the slots (another request took the slot, or the KV budget wanted its cells) comes
// back from here without being prefilled again, for any slot and any client. Behind it, when
// the engine has a --cache-dir, the disk tier (prefix_disk.h): every snapshot kept here is also
// written there, and a prompt that the disk serves better than memory is restored from there.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "llama.h"
#include "snapshot_buffers.h"

namespace llamaserve {

class DiskPrefixTier;
struct DiskTierStats;

struct PrefixSnapshot {
    std::vector<llama_token> tokens;  // the sequence's tokens, positions 0..n-1
    std::vector<uint8_t> state;       // llama_state_seq_get_data of exactly those tokens
};

struct PrefixCacheStats {
    uint64_t entries = 0;
    uint64_t bytes = 0;
    uint64_t budget = 0;
    uint64_t hits = 0;       // restores into a slot (from either tier)
    uint64_t evictions = 0;  // snapshots dropped for room
    uint64_t spare_bytes = 0;  // buffers dropped snapshots left for the next ones (SnapshotBuffers)
};

// Common leading tokens of a and b, at most `limit`.
size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b,
                     size_t limit = SIZE_MAX);

// How many leading tokens of `prompt` a snapshot of `tokens` serves: it must be a whole prefix
// of the prompt (its last cells may be all that is left of a sliding window), unless `partial`
// says a shorter common prefix is usable too. Never the whole prompt: its last token is always
// decoded, for its logits.
size_t snapshot_serves(const std::vector<llama_token> & tokens, const std::vector<llama_token> & prompt,
                       bool partial);

// Whether a snapshot of `snapshot` is exactly the first `n` of `tokens`.
bool is_prefix_snapshot(const std::vector<llama_token> & snapshot, const std::vector<llama_token> & tokens, size_t n);

// The common prefix of a snapshot and a prompt, and whether the snapshot goes on with other
// tokens than the prompt does.
struct SharedPrefix {
    size_t n = 0;
    bool diverges = false;
};
SharedPrefix shared_prefix(const std::vector<llama_token> & tokens, const std::vector<llama_token> & prompt);

class PrefixCache {
public:
    explicit PrefixCache(size_t budget_bytes);
    ~PrefixCache();

    // Where new snapshots take their bytes from (and leave them when dropped).
    SnapshotBuffers & buffers() { return *buffers_; }

    // Puts a disk tier behind the host memory.
    void attach_disk(std::unique_ptr<DiskPrefixTier> disk);
    bool enabled() const { return budget_ > 0 || disk_ != nullptr; }
    // Whether a snapshot of `bytes` would be kept at all (in memory or on disk).
    bool would_keep(size_t bytes) const;

    // Whether a snapshot's KV can be cut back to a shorter prefix (no sliding window, not
    // recurrent): then a snapshot also serves prompts that share only part of it.
    void allow_partial(bool partial) { partial_ = partial; }

    // The snapshot that serves most of `prompt` (snapshot_serves), if it serves more than
    // `better_than` tokens. From the disk when it holds a longer one than memory: read then and
    // there, and kept in memory from then on.
    struct Match {
        std::shared_ptr<const PrefixSnapshot> snapshot;
        size_t reuse = 0;
        bool from_disk = false;
    };
    Match find(const std::vector<llama_token> & prompt, size_t better_than = 0);

    // The longest common prefix `prompt` has with any snapshot (whether usable or not).
    size_t longest_shared(const std::vector<llama_token> & prompt) const;
    SharedPrefix longest_shared_entry(const std::vector<llama_token> & prompt) const;
    // Whether a snapshot serves the first `n` of `tokens` whole: one of exactly those tokens, or
    // (allow_partial) a longer one that starts with them.
    bool holds(const std::vector<llama_token> & tokens, size_t n) const;

    // Keeps a snapshot in memory unless it alone is over a quarter of the budget (dropping the
    // least recently used ones until it fits), and queues it for the disk. With allow_partial
    // it replaces the snapshots of its own prefixes: it serves every prompt they serve (the
    // earlier turns of a conversation would otherwise fill the memory with copies of one KV).
    void insert(std::shared_ptr<const PrefixSnapshot> snapshot);
    // A match was restored into a slot.
    void count_hit(const Match & match);
    // Finishes the disk tier's writes (the engine is closing).
    void close();

    PrefixCacheStats stats() const;
    DiskTierStats disk_stats() const;  // all zero without a disk tier

private:
    bool in_memory(size_t bytes) const { return bytes > 0 && bytes <= budget_ / 4; }
    void keep_in_memory(std::shared_ptr<const PrefixSnapshot> snapshot);

    // The scheduler alone changes it; the lock is for stats() from other threads.
    mutable std::mutex mu_;
    size_t budget_;
    bool partial_ = false;
    size_t bytes_ = 0;
    uint64_t hits_ = 0;
    uint64_t evictions_ = 0;
    std::list<std::shared_ptr<const PrefixSnapshot>> entries_;  // most recently used first
    std::unique_ptr<DiskPrefixTier> disk_;
    std::shared_ptr<SnapshotBuffers> buffers_;  // shared with the snapshots, which may outlive it
};

}  // namespace llamaserve
