#include "prefix_cache.h"

#include <algorithm>

#include "prefix_disk.h"

namespace llamaserve {

namespace {

size_t size_of(const PrefixSnapshot & snapshot) {
    return snapshot.state.size() + snapshot.tokens.size() * sizeof(llama_token);
}

}  // namespace

size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b,
                     size_t limit) {
    const size_t n = std::min({a.size(), b.size(), limit});
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

size_t snapshot_serves(const std::vector<llama_token> & tokens, const std::vector<llama_token> & prompt,
                       bool partial) {
    if (prompt.size() < 2) return 0;
    const size_t reuse = common_prefix(tokens, prompt, prompt.size() - 1);
    return reuse < tokens.size() && !partial ? 0 : reuse;
}

bool is_prefix_snapshot(const std::vector<llama_token> & snapshot, const std::vector<llama_token> & tokens, size_t n) {
    return snapshot.size() == n && common_prefix(snapshot, tokens, n) == n;
}

SharedPrefix shared_prefix(const std::vector<llama_token> & tokens, const std::vector<llama_token> & prompt) {
    const size_t n = common_prefix(tokens, prompt);
    return {n, n < tokens.size() && n < prompt.size()};
}

// Spare buffers of at most the largest snapshot kept in memory (a quarter of the budget).
PrefixCache::PrefixCache(size_t budget_bytes)
    : budget_(budget_bytes), buffers_(std::make_shared<SnapshotBuffers>(budget_bytes / 4)) {}

PrefixCache::~PrefixCache() = default;

void PrefixCache::attach_disk(std::unique_ptr<DiskPrefixTier> disk) { disk_ = std::move(disk); }

bool PrefixCache::would_keep(size_t bytes) const {
    return in_memory(bytes) || (disk_ && disk_->would_keep(bytes));
}

PrefixCache::Match PrefixCache::find(const std::vector<llama_token> & prompt, size_t better_than) {
    Match best;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto found = entries_.end();
        best.reuse = better_than;
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            const size_t reuse = snapshot_serves((*it)->tokens, prompt, partial_);
            if (reuse > best.reuse) {
                found = it;
                best.reuse = reuse;
            }
        }
        if (found != entries_.end()) {
            entries_.splice(entries_.begin(), entries_, found);  // used: most recent now
            best.snapshot = entries_.front();
        }
    }
    if (!disk_) return best.snapshot ? best : Match{};
    const auto candidate = disk_->find(prompt, partial_, best.reuse);
    if (candidate.name.empty()) {
        if (best.snapshot) disk_->touch(best.snapshot->tokens);  // its file, if any, was used too
        return best.snapshot ? best : Match{};
    }
    auto loaded = disk_->load(candidate);
    // Matched again on the tokens read: they, not the index's, are what the state holds.
    const size_t reuse = loaded ? snapshot_serves(loaded->tokens, prompt, partial_) : 0;
    if (reuse <= best.reuse) return best.snapshot ? best : Match{};
    if (in_memory(size_of(*loaded))) keep_in_memory(loaded);
    return {std::move(loaded), reuse, true};
}

size_t PrefixCache::longest_shared(const std::vector<llama_token> & prompt) const {
    return longest_shared_entry(prompt).n;
}

SharedPrefix PrefixCache::longest_shared_entry(const std::vector<llama_token> & prompt) const {
    SharedPrefix best = disk_ ? disk_->longest_shared(prompt) : SharedPrefix{};
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto & entry : entries_) {
        const SharedPrefix shared = shared_prefix(entry->tokens, prompt);
        if (shared.n > best.n) best = shared;
    }
    return best;
}

bool PrefixCache::holds(const std::vector<llama_token> & tokens, size_t n) const {
    if (disk_ && disk_->holds(tokens, n)) return true;
    std::lock_guard<std::mutex> lock(mu_);
    return std::any_of(entries_.begin(), entries_.end(), [&](const auto & e) {
        return partial_ ? common_prefix(e->tokens, tokens, n) == n : is_prefix_snapshot(e->tokens, tokens, n);
    });
}

void PrefixCache::insert(std::shared_ptr<const PrefixSnapshot> snapshot) {
    const size_t size = size_of(*snapshot);
    if (disk_ && disk_->would_keep(size)) disk_->save(snapshot);
    if (in_memory(size)) keep_in_memory(std::move(snapshot));
}

void PrefixCache::keep_in_memory(std::shared_ptr<const PrefixSnapshot> snapshot) {
    const size_t size = size_of(*snapshot);
    std::lock_guard<std::mutex> lock(mu_);
    if (partial_) {
        const auto & tokens = snapshot->tokens;
        entries_.remove_if([&](const auto & e) {
            const bool prefix = is_prefix_snapshot(e->tokens, tokens, e->tokens.size());
            if (prefix) bytes_ -= size_of(*e);
            return prefix;
        });
    }
    while (!entries_.empty() && bytes_ + size > budget_) {
        bytes_ -= size_of(*entries_.back());
        entries_.pop_back();
        ++evictions_;
    }
    bytes_ += size;
    entries_.push_front(std::move(snapshot));
}

void PrefixCache::count_hit(const Match & match) {
    if (match.from_disk) disk_->count_hit();
    std::lock_guard<std::mutex> lock(mu_);
    ++hits_;
}

void PrefixCache::close() {
    if (disk_) disk_->close();
}

PrefixCacheStats PrefixCache::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    PrefixCacheStats s;
    s.entries = entries_.size();
    s.bytes = bytes_;
    s.budget = budget_;
    s.hits = hits_;
    s.evictions = evictions_;
    s.spare_bytes = buffers_->kept_bytes();
    return s;
}

DiskTierStats PrefixCache::disk_stats() const { return disk_ ? disk_->stats() : DiskTierStats{}; }

}  // namespace llamaserve
