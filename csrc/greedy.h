// Greedy choice over a row of logits, with additive per-token biases, without the
// sampler chain's full-vocabulary candidate copy (3 MB a token for a 262k vocabulary).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "llama.h"

namespace llamaserve {

// Index of the largest value; the first one on ties (as llama.cpp's greedy sampler).
int32_t argmax_first(const float * values, int32_t n);

class GreedyPicker {
public:
    // `bias` may name a token more than once: its biases add up (-inf bans it).
    GreedyPicker(int32_t n_vocab, const std::vector<llama_logit_bias> & bias);

    llama_token pick(const float * logits);

private:
    int32_t n_vocab_;
    std::vector<std::pair<llama_token, float>> bias_;  // one entry per token, sorted by token
    std::vector<float> scratch_;  // the logits with biased tokens masked, on the rare rescan
};

}  // namespace llamaserve
