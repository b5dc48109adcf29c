// Draft-free speculation: a continuation guessed from text the request already holds.
#pragma once
#include <cstdint>
#include <vector>

#include "llama.h"

namespace llamaserve {

// Appends to `draft` (up to `max_len` tokens) what followed the most recent earlier
// occurrence of the last few tokens of `history`, in `prediction` (the text the client says
// the output will repeat) or else in `history` itself, preferring the longest such n-gram:
// edits, quotes and echoed JSON repeat the prompt, so its next tokens are likely next again.
// A match on one token alone is weak evidence and proposes at most kSingleTokenDraft.
// `cursor` is where the last draft taken from the prediction ended (the request's own).
// Returns how likely such a draft's first token is to be accepted before a slot has its own
// evidence (0 when nothing was drafted): a longer match is better evidence, and a prediction
// is the client saying what the output will be.
double ngram_draft(const std::vector<llama_token> & history, const std::vector<llama_token> & prediction,
                   size_t & cursor, int32_t max_len, std::vector<llama_token> & draft);

constexpr int32_t kNgramMax = 4;
constexpr int32_t kSingleTokenDraft = 2;

}  // namespace llamaserve
