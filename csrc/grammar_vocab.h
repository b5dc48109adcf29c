// The vocabulary as a grammar sees it: each token's text as Unicode code points, decoded
// once per model, and the tokens in code-point order so that one walk checks them all.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"

namespace llamaserve {

class Model;

// The bytes of a UTF-8 character cut off at the end of a token (n_remain of them to come;
// -1 for an invalid sequence), as llama.cpp's grammar keeps them between tokens.
struct PartialUtf8 {
    uint32_t value = 0;
    int32_t n_remain = 0;
};

// Decodes `size` bytes (up to a NUL) after the `start` of a character, into `cps`; returns
// the character left incomplete at the end. An invalid sequence leaves `cps` empty and
// returns n_remain -1 (llama.cpp's grammar refuses such a token).
PartialUtf8 decode_utf8(const char * bytes, size_t size, PartialUtf8 start, std::vector<uint32_t> & cps);

class GrammarVocab {
public:
    enum class Kind : uint8_t { Text, EndOfGeneration, Never };

    explicit GrammarVocab(const Model & model);

    int32_t size() const { return static_cast<int32_t>(kinds_.size()); }
    Kind kind(llama_token t) const { return kinds_[t]; }
    // The text llama.cpp's grammar matches (control tokens spelled out).
    const char * text(llama_token t) const { return text_.data() + text_offsets_[t]; }
    size_t text_size(llama_token t) const { return text_offsets_[t + 1] - text_offsets_[t]; }
    // Text tokens: their whole code points, and the character cut off at their end.
    const uint32_t * cps(llama_token t) const { return sorted_cps(rank_[t]); }
    size_t n_cps(llama_token t) const { return sorted_n_cps(rank_[t]); }
    PartialUtf8 tail(llama_token t) const { return tails_[t]; }
    // Text tokens sorted by code points (shared[i]: code points order[i] shares with
    // order[i-1]), their code points laid out in that order for a walk that reads them in turn.
    const std::vector<llama_token> & order() const { return order_; }
    const std::vector<uint32_t> & shared() const { return shared_; }
    const uint32_t * sorted_cps(size_t i) const { return cps_.data() + cps_offsets_[i]; }
    size_t sorted_n_cps(size_t i) const { return cps_offsets_[i + 1] - cps_offsets_[i]; }

private:
    std::vector<Kind> kinds_;
    std::string text_;
    std::vector<size_t> text_offsets_;
    std::vector<PartialUtf8> tails_;
    std::vector<uint32_t> rank_;  // a text token's place in order_
    std::vector<llama_token> order_;
    std::vector<uint32_t> shared_;
    std::vector<uint32_t> cps_;
    std::vector<size_t> cps_offsets_;
};

}  // namespace llamaserve
