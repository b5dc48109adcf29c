#include "greedy.h"

#include <algorithm>
#include <limits>
#include <map>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace llamaserve {

namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

float max_value(const float * v, int32_t n, int32_t & i) {
    float best = kMinusInf;
#if defined(__SSE2__)
    // Four independent accumulators keep the loads flowing; the row is read once.
    __m128 m0 = _mm_set1_ps(kMinusInf), m1 = m0, m2 = m0, m3 = m0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm_max_ps(m0, _mm_loadu_ps(v + i));
        m1 = _mm_max_ps(m1, _mm_loadu_ps(v + i + 4));
        m2 = _mm_max_ps(m2, _mm_loadu_ps(v + i + 8));
        m3 = _mm_max_ps(m3, _mm_loadu_ps(v + i + 12));
    }
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    best = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
#endif
    for (; i < n; ++i) best = std::max(best, v[i]);
    return best;
}

}  // namespace

int32_t argmax_first(const float * values, int32_t n) {
    if (n <= 0) return -1;
    int32_t scanned = 0;
    const float best = max_value(values, n, scanned);
    for (int32_t i = 0; i < n; ++i) {
        if (values[i] == best) return i;
    }
    return 0;  // only NaNs: llama.cpp's greedy sampler also falls back to the first token
}

GreedyPicker::GreedyPicker(int32_t n_vocab, const std::vector<llama_logit_bias> & bias)
    : n_vocab_(n_vocab) {
    std::map<llama_token, float> merged;
    for (const auto & b : bias) merged[b.token] += b.bias;
    bias_.assign(merged.begin(), merged.end());
}

llama_token GreedyPicker::pick(const float * logits) {
    llama_token best = argmax_first(logits, n_vocab_);
    if (bias_.empty()) return best;

    const auto biased = [&](llama_token t) {
        return std::binary_search(bias_.begin(), bias_.end(), std::make_pair(t, kMinusInf),
                                  [](const auto & a, const auto & b) { return a.first < b.first; });
    };
    if (biased(best)) {
        // Rare: the top token is biased, so find the best of the others on a masked copy.
        scratch_.assign(logits, logits + n_vocab_);
        for (const auto & [token, value] : bias_) scratch_[token] = kMinusInf;
        best = argmax_first(scratch_.data(), n_vocab_);
    }
    float best_logit = biased(best) ? kMinusInf : logits[best];  // every token biased
    for (const auto & [token, value] : bias_) {
        const float adjusted = logits[token] + value;
        if (adjusted > best_logit || (adjusted == best_logit && token < best)) {
            best = token;
            best_logit = adjusted;
        }
    }
    return best;
}

}  // namespace llamaserve
