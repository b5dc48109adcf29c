#include "prefix_cache.h"

#include <algorithm>

namespace llamaserve {

size_t common_prefix(const std::vector<llama_token> & a, const std::vector<llama_token> & b,
                     size_t limit) {
    const size_t n = std::min({a.size(), b.size(), limit});
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

PrefixCache::Match PrefixCache::find(const std::vector<llama_token> & prompt, bool partial) {
    std::lock_guard<std::mutex> lock(mu_);
    if (prompt.size() < 2) return {};
    const size_t limit = prompt.size() - 1;
    auto best = entries_.end();
    size_t best_reuse = 0;
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        size_t reuse = common_prefix(it->tokens, prompt, limit);
        if (reuse < it->tokens.size() && !partial) reuse = 0;
        if (reuse > best_reuse) {
            best = it;
            best_reuse = reuse;
        }
    }
    if (best == entries_.end()) return {};
    entries_.splice(entries_.begin(), entries_, best);  // used: most recent now
    return {&entries_.front(), best_reuse};
}

size_t PrefixCache::longest_shared(const std::vector<llama_token> & prompt) const {
    return longest_shared_entry(prompt).n;
}

PrefixCache::Shared PrefixCache::longest_shared_entry(const std::vector<llama_token> & prompt) const {
    std::lock_guard<std::mutex> lock(mu_);
    Shared best;
    for (const auto & entry : entries_) {
        const size_t n = common_prefix(entry.tokens, prompt);
        if (n > best.n) best = {n, n < entry.tokens.size() && n < prompt.size()};
    }
    return best;
}

bool PrefixCache::holds(const std::vector<llama_token> & tokens, size_t n) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::any_of(entries_.begin(), entries_.end(), [&](const PrefixSnapshot & e) {
        return e.tokens.size() == n && common_prefix(e.tokens, tokens, n) == n;
    });
}

void PrefixCache::insert(PrefixSnapshot snapshot) {
    const size_t size = snapshot.state.size() + snapshot.tokens.size() * sizeof(llama_token);
    if (!would_keep(size)) return;
    std::lock_guard<std::mutex> lock(mu_);
    while (!entries_.empty() && bytes_ + size > budget_) {
        const auto & last = entries_.back();
        bytes_ -= last.state.size() + last.tokens.size() * sizeof(llama_token);
        entries_.pop_back();
        ++evictions_;
    }
    bytes_ += size;
    entries_.push_front(std::move(snapshot));
}

void PrefixCache::count_hit() {
    std::lock_guard<std::mutex> lock(mu_);
    ++hits_;
}

PrefixCacheStats PrefixCache::stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    PrefixCacheStats s;
    s.entries = entries_.size();
    s.bytes = bytes_;
    s.budget = budget_;
    s.hits = hits_;
    s.evictions = evictions_;
    return s;
}

}  // namespace llamaserve
