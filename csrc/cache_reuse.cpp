#include "cache_reuse.h"

#include <algorithm>
#include <unordered_map>

namespace llamaserve {

namespace {

uint64_t anchor_hash(const llama_token * tokens) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the token ids
    for (size_t i = 0; i < kReuseAnchor; ++i) {
        h ^= static_cast<uint32_t>(tokens[i]);
        h *= 1099511628211ull;
    }
    return h;
}

// Candidate chunk starts checked per prompt position: repeated boilerplate (the same tool
// schema many times) must not make planning quadratic.
constexpr size_t kMaxCandidates = 16;

}  // namespace

size_t ReusePlan::reused() const {
    size_t n = 0;
    for (const auto & c : chunks) n += c.n;
    return n;
}

ReusePlan plan_reuse(const std::vector<llama_token> & cache, const std::vector<llama_token> & prompt,
                     size_t prefix, size_t min_chunk, bool gaps) {
    ReusePlan plan;
    plan.prefix = prefix;
    min_chunk = std::max(min_chunk, kReuseAnchor);
    const size_t limit = prompt.empty() ? 0 : prompt.size() - 1;  // the last prompt token is decoded
    if (prefix >= cache.size() || prefix + min_chunk > limit || cache.size() - prefix < min_chunk) return plan;

    // Where each anchor (kReuseAnchor tokens) starts in the cache after the prefix.
    std::unordered_map<uint64_t, std::vector<uint32_t>> starts;
    starts.reserve(cache.size() - prefix);
    for (size_t c = prefix; c + kReuseAnchor <= cache.size(); ++c) {
        auto & at = starts[anchor_hash(&cache[c])];
        if (at.size() < kMaxCandidates) at.push_back(static_cast<uint32_t>(c));
    }
    std::vector<char> used(cache.size(), 0);
    size_t p = prefix;
    while (p + min_chunk <= limit) {
        size_t best_n = 0, best_c = 0;
        const auto found = starts.find(anchor_hash(&prompt[p]));
        if (found != starts.end()) {
            for (uint32_t c : found->second) {
                size_t n = 0;
                while (p + n < limit && c + n < cache.size() && !used[c + n] && cache[c + n] == prompt[p + n]) ++n;
                if (n > best_n) {
                    best_n = n;
                    best_c = c;
                }
            }
        }
        if (best_n >= min_chunk) {
            plan.chunks.push_back({best_c, p, best_n});
            std::fill(used.begin() + best_c, used.begin() + best_c + best_n, 1);
            p += best_n;
        } else if (gaps) {
            ++p;  // a new token: prefilled before the next chunk
        } else {
            break;
        }
    }
    return plan;
}

}  // namespace llamaserve
