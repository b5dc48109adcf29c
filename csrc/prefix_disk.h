// The disk tier of the prefix cache (--cache-dir): snapshots as files in one folder, so that a
// restarted server, or one whose host tier let a conversation go, serves the next turn of a long
// conversation from disk instead of prefilling it again (a ~4,000-token prefix is seconds of
// prefill on a CPU, and a few hundred milliseconds of reading).
//
// - One file per snapshot (snapshot_file.h), named by the fingerprint of the model and KV
//   settings and a hash of its tokens: an engine reads only its own files, and the same prefix
//   saved twice is one file.
// - At start only the headers and tokens are read (a few KB a file) into an index; a state is read
//   when a prompt wants it, on the scheduler thread: a page-cache read and its checksum take
//   milliseconds against the seconds of prefill it saves, and the request it serves waits for it
//   either way. Its checksum is checked; a damaged file is deleted and the prompt prefilled.
// - Writes go to a writer thread of its own (a fsync can take long): the scheduler only queues a
//   shared pointer to the snapshot the host tier also holds. The queue is bounded: when the disk
//   cannot keep up, snapshots are skipped, never piled up in memory.
// - The budget bounds the whole folder, least recently used file out (file times: a write or a
//   use sets them, so the order outlives a restart). Files of other models or settings count and
//   age out too: a replaced model's snapshots do not hold the disk forever. A file another engine
//   deletes under us is simply a miss.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "prefix_cache.h"

namespace llamaserve {

struct DiskTierStats {
    uint64_t entries = 0;    // this engine's snapshot files
    uint64_t bytes = 0;      // their size
    uint64_t budget = 0;     // bytes the folder may hold
    uint64_t hits = 0;       // restores from a file
    uint64_t writes = 0;     // files written
    uint64_t evictions = 0;  // files deleted for room (any engine's)
    uint64_t dropped = 0;    // damaged files deleted (a bad checksum, a torn write)
    uint64_t skipped = 0;    // snapshots not written: the writer was behind, or the write failed
};

class DiskPrefixTier {
public:
    // Indexes the snapshots of `fingerprint` in `dir` (made if missing; InvalidRequest if it
    // cannot be) and starts the writer thread.
    DiskPrefixTier(std::string dir, uint64_t budget, uint64_t fingerprint);
    ~DiskPrefixTier();
    DiskPrefixTier(const DiskPrefixTier &) = delete;
    DiskPrefixTier & operator=(const DiskPrefixTier &) = delete;

    // As the host tier: no one snapshot may take more than a quarter of the budget.
    bool would_keep(size_t bytes) const { return bytes > 0 && bytes <= budget_ / 4; }

    // The file that serves most of `prompt`, more than `better_than` tokens of it (see
    // PrefixCache::find); its name is empty when none does.
    struct Candidate {
        std::string name;
        size_t reuse = 0;
    };
    Candidate find(const std::vector<llama_token> & prompt, bool partial, size_t better_than) const;
    SharedPrefix longest_shared(const std::vector<llama_token> & prompt) const;
    bool holds(const std::vector<llama_token> & tokens, size_t n) const;

    // Reads a candidate's snapshot: nullptr when its file is gone, or damaged (then deleted).
    std::shared_ptr<const PrefixSnapshot> load(const Candidate & candidate);
    void count_hit();

    // Queues a snapshot for the writer (nothing if the folder has it already).
    void save(std::shared_ptr<const PrefixSnapshot> snapshot);
    // The file of `tokens`, if any, was just used (a host-tier hit): it moves to the LRU front.
    void touch(const std::vector<llama_token> & tokens);
    // Writes what is queued, then stops the writer. Idempotent.
    void close();

    DiskTierStats stats() const;

private:
    struct Entry {
        std::string name;
        std::vector<llama_token> tokens;
        uint64_t bytes = 0;
    };
    struct Job {
        std::string name;
        std::shared_ptr<const PrefixSnapshot> snapshot;  // none: only touch the file
    };

    void scan();
    void run();
    void write(const Job & job);
    // Deletes the least recently used snapshot files of the folder until it fits the budget.
    void evict();
    std::string name_of(const std::vector<llama_token> & tokens) const;
    std::string path_of(const std::string & name) const { return dir_ + "/" + name; }
    bool indexed_locked(const std::string & name) const;
    void forget_locked(const std::string & name);
    void touch_locked(const std::string & name);

    const std::string dir_;
    const uint64_t budget_;
    const uint64_t fingerprint_;
    const std::string prefix_;  // of this engine's file names: the fingerprint

    mutable std::mutex mu_;  // the index, the queue and the counters
    std::condition_variable wake_;
    std::vector<Entry> index_;
    std::deque<Job> queue_;
    bool closing_ = false;
    DiskTierStats counts_;
    std::thread writer_;
};

}  // namespace llamaserve
