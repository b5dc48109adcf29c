#include "grammar_vocab.h"

#include <algorithm>
#include <numeric>

#include "model_info.h"

namespace llamaserve {

PartialUtf8 decode_utf8(const char * bytes, size_t size, PartialUtf8 start, std::vector<uint32_t> & cps) {
    // The sequence lengths by a first byte's high nibble; 0: a continuation byte, invalid first.
    static const int kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4};
    cps.clear();
    const char * pos = bytes;
    const char * const end = bytes + size;
    uint32_t value = start.value;
    int32_t remain = start.n_remain;
    while (pos < end && *pos && remain > 0) {  // the rest of the character the last token began
        const auto byte = static_cast<uint8_t>(*pos);
        if ((byte >> 6) != 2) return {0, -1};
        value = (value << 6) + (byte & 0x3F);
        ++pos;
        --remain;
    }
    if (start.n_remain > 0 && remain == 0) cps.push_back(value);
    while (pos < end && *pos) {
        const auto first = static_cast<uint8_t>(*pos);
        remain = kLength[first >> 4] - 1;
        if (remain < 0) {
            cps.clear();
            return {0, -1};
        }
        value = first & ((1u << (7 - remain)) - 1);
        ++pos;
        // Like llama.cpp, continuation bytes are taken as they come.
        while (pos < end && *pos && remain > 0) {
            value = (value << 6) + (static_cast<uint8_t>(*pos) & 0x3F);
            ++pos;
            --remain;
        }
        if (remain == 0) cps.push_back(value);
    }
    return {value, remain};
}

GrammarVocab::GrammarVocab(const Model & model) {
    const int32_t n = model.metadata().n_vocab;
    kinds_.assign(n, Kind::Never);
    tails_.resize(n);
    rank_.assign(n, 0);
    text_offsets_.assign(n + 1, 0);
    // Every token's code points in one buffer, in token order until sorted: a vector per
    // token would be a quarter of a million small allocations that leave the heap fragmented.
    std::vector<uint32_t> by_token;
    std::vector<size_t> by_token_at(n + 1, 0);
    std::vector<uint32_t> one;
    for (llama_token t = 0; t < n; ++t) {
        const std::string piece = model.token_text(t);
        text_offsets_[t] = text_.size();
        text_ += piece;
        by_token_at[t] = by_token.size();
        if (llama_vocab_is_eog(model.vocab(), t)) {
            kinds_[t] = Kind::EndOfGeneration;
        } else if (!piece.empty() && piece[0] != 0) {  // else never allowed, as in llama.cpp
            tails_[t] = decode_utf8(piece.data(), piece.size(), {}, one);
            if (tails_[t].n_remain >= 0) {
                kinds_[t] = Kind::Text;
                order_.push_back(t);
                by_token.insert(by_token.end(), one.begin(), one.end());
            }
        }
    }
    text_offsets_[n] = text_.size();
    by_token_at[n] = by_token.size();
    auto first = [&](llama_token t) { return by_token.begin() + static_cast<std::ptrdiff_t>(by_token_at[t]); };
    auto last = [&](llama_token t) { return by_token.begin() + static_cast<std::ptrdiff_t>(by_token_at[t + 1]); };
    std::sort(order_.begin(), order_.end(), [&](llama_token a, llama_token b) {
        return std::lexicographical_compare(first(a), last(a), first(b), last(b));
    });
    shared_.assign(order_.size(), 0);
    cps_.reserve(by_token.size());
    cps_offsets_.reserve(order_.size() + 1);
    for (size_t i = 0; i < order_.size(); ++i) {
        const llama_token here = order_[i];
        rank_[here] = static_cast<uint32_t>(i);
        cps_offsets_.push_back(cps_.size());
        cps_.insert(cps_.end(), first(here), last(here));
        if (i == 0) continue;
        const llama_token before = order_[i - 1];
        shared_[i] = static_cast<uint32_t>(std::mismatch(first(here), last(here), first(before), last(before)).first -
                                           first(here));
    }
    cps_offsets_.push_back(cps_.size());
}

}  // namespace llamaserve
