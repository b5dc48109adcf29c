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
// Returns where the draft came from (a DraftSource: the n-gram's length, or the
// prediction), which says how much to trust it; 0 when nothing was drafted.
int32_t ngram_draft(const std::vector<llama_token> & history, const std::vector<llama_token> & prediction,
                   size_t & cursor, int32_t max_len, std::vector<llama_token> & draft);

constexpr int32_t kNgramMax = 4;
constexpr int32_t kSingleTokenDraft = 2;

}  // namespace llamaserve
