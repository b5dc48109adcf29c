// A GBNF grammar parsed by llama.cpp's parser and checked before any request uses it: its
// size, nesting and ambiguity are bounded, so that matching it costs bounded work per token.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "grammar_limits.h"
#include "llama.h"
#include "llama-grammar.h"

namespace llamaserve {

class GrammarRules {
public:
    // Throws InvalidRequest ("grammar: ...") when the text is not a grammar or is over a limit.
    GrammarRules(const std::string & text, const std::string & root, const llama_vocab * vocab,
                 const GrammarLimits & limits);

    const GrammarLimits & limits() const { return limits_; }
    const llama_grammar_element * element(uint32_t pos) const { return &elements_[pos]; }
    // Where each alternative of `rule` starts (an END or ALT element for an empty one).
    const std::vector<uint32_t> & alternatives(uint32_t rule) const { return alternatives_[rule]; }
    uint32_t root() const { return root_; }
    // The widest position: how many alternatives its continuation can open at once.
    uint64_t width() const { return width_; }
    uint64_t step_cost() const { return step_cost_; }

    static bool is_end(const llama_grammar_element & e) {
        return e.type == LLAMA_GRETYPE_END || e.type == LLAMA_GRETYPE_ALT;
    }
    static bool is_char(const llama_grammar_element & e) {
        return e.type == LLAMA_GRETYPE_CHAR || e.type == LLAMA_GRETYPE_CHAR_NOT || e.type == LLAMA_GRETYPE_CHAR_ANY;
    }
    static bool is_token(const llama_grammar_element & e) {
        return e.type == LLAMA_GRETYPE_TOKEN || e.type == LLAMA_GRETYPE_TOKEN_NOT;
    }
    // The position after the element at `pos` (a character class spans several).
    uint32_t next(uint32_t pos) const;

private:
    void flatten(const llama_grammar_parser & parser);
    // Refuses left recursion (matching would never end) and measures width_ and step_cost_.
    void analyse(const llama_grammar_parser & parser);

    GrammarLimits limits_;
    std::vector<llama_grammar_element> elements_;  // every rule, each ending with END
    std::vector<std::vector<uint32_t>> alternatives_;
    uint32_t root_ = 0;
    uint64_t width_ = 0;
    uint64_t step_cost_ = 0;
};

}  // namespace llamaserve
