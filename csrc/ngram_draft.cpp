#include "ngram_draft.h"

#include <algorithm>

#include "speculation.h"

namespace llamaserve {

static_assert(kFromNgram1 + kNgramMax - 1 < kFromPrediction && kFromPrediction == kNgramMax + 1);

namespace {

// The start of the most recent occurrence of `tail` (n tokens) in text[0, end) that has at
// least one token after it (in the history, that leaves the tail itself out); -1 if none.
int64_t last_occurrence(const llama_token * text, int64_t end, const llama_token * tail, int32_t n) {
    for (int64_t i = end - n - 1; i >= 0; --i) {
        if (text[i + n - 1] == tail[n - 1] && std::equal(tail, tail + n, text + i)) return i;
    }
    return -1;
}

// In a prediction the output moves forward: the first occurrence at or after `cursor` (where
// the last draft from it ended), else the last one before it.
int64_t occurrence_from(const std::vector<llama_token> & text, size_t cursor, const llama_token * tail, int32_t n) {
    const int64_t end = static_cast<int64_t>(text.size());
    for (int64_t i = std::max<int64_t>(0, static_cast<int64_t>(cursor) - n); i + n < end; ++i) {
        if (text[i + n - 1] == tail[n - 1] && std::equal(tail, tail + n, text.data() + i)) return i;
    }
    return last_occurrence(text.data(), std::min<int64_t>(end, cursor), tail, n);
}

}  // namespace

int32_t ngram_draft(const std::vector<llama_token> & history, const std::vector<llama_token> & prediction,
                    size_t & cursor, int32_t max_len, std::vector<llama_token> & draft) {
    if (max_len <= 0 || history.size() < 2) return 0;
    const int64_t len = static_cast<int64_t>(history.size());
    const int32_t longest = static_cast<int32_t>(std::min<int64_t>(kNgramMax, len - 1));
    for (int32_t n = longest; n >= 1; --n) {
        const llama_token * tail = history.data() + len - n;
        const std::vector<llama_token> * source = &prediction;
        int64_t at = occurrence_from(prediction, cursor, tail, n);
        if (at < 0) {
            source = &history;
            at = last_occurrence(history.data(), len, tail, n);
        }
        if (at < 0) continue;
        const int32_t cap = n == 1 ? std::min(max_len, kSingleTokenDraft) : max_len;
        const int64_t from = at + n;
        const int64_t to = std::min<int64_t>(from + cap, source->size());
        draft.insert(draft.end(), source->begin() + from, source->begin() + to);
        if (source != &prediction) return n;  // kFromNgram1 + n - 1
        cursor = static_cast<size_t>(to);
        return kNgramMax + 1;  // kFromPrediction
    }
    return 0;
}

}  // namespace llamaserve
