// Picking from a row of logits with additive per-token biases, without the sampler
// chain's full-vocabulary candidate copy (3 MB a token for a 262k vocabulary): the
// greedy token, or the top k candidates for the rest of a sampling chain.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "llama.h"

namespace llamaserve {

// Index of the largest value; the first one on ties (as llama.cpp's greedy sampler).
int32_t argmax_first(const float * values, int32_t n);

class LogitSelector {
public:
    // The largest k top_k() serves; llama.cpp sorts larger k another way.
    static constexpr int32_t kMaxTopK = 128;

    // `bias` may name a token more than once: its biases add up (-inf bans it).
    LogitSelector(int32_t n_vocab, const std::vector<llama_logit_bias> & bias);

    // The token with the largest biased logit.
    llama_token argmax(const float * logits);

    // The k tokens with the largest biased logits, largest first, as llama.cpp's top-k
    // sampler leaves them (p = 0); k in [1, kMaxTopK].
    void top_k(const float * logits, int32_t k, std::vector<llama_token_data> & out);

    // Every token with its biased logit, in token order (for a grammar to filter).
    llama_token_data_array all(const float * logits, std::vector<llama_token_data> & out) const;

private:
    bool biased(llama_token token) const;

    int32_t n_vocab_;
    std::vector<std::pair<llama_token, float>> bias_;  // one entry per token, sorted by token
    std::vector<float> scratch_;  // the logits with biased tokens masked, on the rare rescan
};

}  // namespace llamaserve
