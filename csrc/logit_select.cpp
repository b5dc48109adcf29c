#include "logit_select.h"

#include <algorithm>
#include <limits>
#include <map>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace llamaserve {

namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
constexpr int32_t kBlock = 16;

float max_value(const float * v, int32_t n) {
    float best = kMinusInf;
    int32_t i = 0;
#if defined(__SSE2__)
    // Four independent accumulators keep the loads flowing; the row is read once.
    __m128 m0 = _mm_set1_ps(kMinusInf), m1 = m0, m2 = m0, m3 = m0;
    for (; i + kBlock <= n; i += kBlock) {
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

// Whether any of the kBlock values from v exceeds threshold.
inline bool block_exceeds(const float * v, float threshold) {
#if defined(__SSE2__)
    const __m128 t = _mm_set1_ps(threshold);
    const __m128 a = _mm_cmpgt_ps(_mm_loadu_ps(v), t);
    const __m128 b = _mm_cmpgt_ps(_mm_loadu_ps(v + 4), t);
    const __m128 c = _mm_cmpgt_ps(_mm_loadu_ps(v + 8), t);
    const __m128 d = _mm_cmpgt_ps(_mm_loadu_ps(v + 12), t);
    return _mm_movemask_ps(_mm_or_ps(_mm_or_ps(a, b), _mm_or_ps(c, d))) != 0;
#else
    for (int32_t j = 0; j < kBlock; ++j) {
        if (v[j] > threshold) return true;
    }
    return false;
#endif
}

// A min-heap of the k largest (logit, token) pairs seen so far.
class TopK {
public:
    TopK(int32_t k, std::vector<llama_token_data> & heap) : k_(k), heap_(heap) {
        heap_.clear();
        heap_.reserve(k);
    }

    float threshold() const { return full() ? heap_.front().logit : kMinusInf; }

    void offer(llama_token token, float logit) {
        if (!full()) {
            heap_.push_back({token, logit, 0.0f});
            std::push_heap(heap_.begin(), heap_.end(), smaller_first);
        } else if (logit > heap_.front().logit) {
            std::pop_heap(heap_.begin(), heap_.end(), smaller_first);
            heap_.back() = {token, logit, 0.0f};
            std::push_heap(heap_.begin(), heap_.end(), smaller_first);
        }
    }

    void sort_descending() {
        std::sort(heap_.begin(), heap_.end(), [](const auto & a, const auto & b) {
            return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
        });
    }

private:
    static bool smaller_first(const llama_token_data & a, const llama_token_data & b) {
        return a.logit > b.logit;
    }
    bool full() const { return static_cast<int32_t>(heap_.size()) == k_; }

    int32_t k_;
    std::vector<llama_token_data> & heap_;
};

}  // namespace

int32_t argmax_first(const float * values, int32_t n) {
    if (n <= 0) return -1;
    const float best = max_value(values, n);
    for (int32_t i = 0; i < n; ++i) {
        if (values[i] == best) return i;
    }
    return 0;  // only NaNs: llama.cpp's greedy sampler also falls back to the first token
}

LogitSelector::LogitSelector(int32_t n_vocab, const std::vector<llama_logit_bias> & bias)
    : n_vocab_(n_vocab) {
    std::map<llama_token, float> merged;
    for (const auto & b : bias) merged[b.token] += b.bias;
    bias_.assign(merged.begin(), merged.end());
}

bool LogitSelector::biased(llama_token token) const {
    return std::binary_search(bias_.begin(), bias_.end(), std::make_pair(token, kMinusInf),
                              [](const auto & a, const auto & b) { return a.first < b.first; });
}

llama_token LogitSelector::argmax(const float * logits) {
    llama_token best = argmax_first(logits, n_vocab_);
    if (bias_.empty()) return best;
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

void LogitSelector::top_k(const float * logits, int32_t k, std::vector<llama_token_data> & out) {
    TopK heap(std::clamp(k, 1, std::min(kMaxTopK, n_vocab_)), out);
    const auto offer = [&](llama_token t) {
        if (logits[t] > heap.threshold() && !biased(t)) heap.offer(t, logits[t]);
    };
    // Once the heap is full, most blocks hold nothing above its smallest entry: one
    // vector compare skips them.
    llama_token t = 0;
    for (; t + kBlock <= n_vocab_; t += kBlock) {
        if (!block_exceeds(logits + t, heap.threshold())) continue;
        for (int32_t j = 0; j < kBlock; ++j) offer(t + j);
    }
    for (; t < n_vocab_; ++t) offer(t);
    for (const auto & [token, value] : bias_) heap.offer(token, logits[token] + value);
    heap.sort_descending();
}

llama_token_data_array LogitSelector::all(const float * logits, std::vector<llama_token_data> & out) const {
    out.resize(n_vocab_);
    for (llama_token t = 0; t < n_vocab_; ++t) out[t] = {t, logits[t], 0.0f};
    for (const auto & [token, value] : bias_) out[token].logit += value;
    return {out.data(), out.size(), -1, false};
}

}  // namespace llamaserve
