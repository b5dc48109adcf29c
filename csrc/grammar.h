// Matching a grammar token by token: llama.cpp's grammar semantics (its pushdown stacks over
// the parsed rules), with bounded work. llama.cpp's sampler follows every way a token can be
// matched on its own, which is exponential in an ambiguous grammar (`[a-z]?` fifty times took
// two minutes for one token); here the stacks a prefix can reach form one deduplicated state,
// and states and their transitions by character are memoized, so a token costs a few lookups
// and a whole vocabulary one walk over its tokens in code-point order.
#pragma once
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "grammar_limits.h"
#include "grammar_rules.h"
#include "grammar_vocab.h"
#include "llama.h"

namespace llamaserve {

class Grammar {
public:
    Grammar(std::shared_ptr<const GrammarRules> rules, std::shared_ptr<const GrammarVocab> vocab);

    bool allows(llama_token token, GrammarBudget & budget);
    // Sets the logit of every candidate the grammar refuses to -inf.
    void apply(llama_token_data_array & candidates, GrammarBudget & budget);
    // Moves past `token` (which apply allowed).
    void accept(llama_token token, GrammarBudget & budget);

private:
    struct Node {
        uint32_t pos;    // the element to match next
        int32_t parent;  // the stack below; the empty stack is node 0
    };
    using State = std::vector<int32_t>;  // sorted stacks (node ids); state 0 is the dead one

    int32_t node(uint32_t pos, int32_t parent);
    // The stack after the element on top of `stack` is matched.
    int32_t after_top(int32_t stack);
    // The stacks `stack` expands to, each with a character or token on top (or empty).
    const std::vector<int32_t> & closure(int32_t stack, GrammarBudget & budget);
    int32_t intern(State & stacks);
    int32_t step(int32_t state, uint32_t cp, GrammarBudget & budget);
    int32_t walk(int32_t state, const uint32_t * cps, size_t n, GrammarBudget & budget);
    bool ends_well(int32_t state, PartialUtf8 tail) const;
    bool token_allowed_on_top(llama_token token) const;
    bool has_token_tops() const;
    // One token given the code points it decodes to after the current partial character.
    bool allows_text(llama_token token, const uint32_t * cps, size_t n, PartialUtf8 tail, GrammarBudget & budget);
    // Starts the tables afresh from the current state when they have grown large.
    void compact();

    std::shared_ptr<const GrammarRules> rules_;
    std::shared_ptr<const GrammarVocab> vocab_;
    std::vector<Node> nodes_;
    std::unordered_map<uint64_t, int32_t> node_ids_;
    std::vector<std::vector<int32_t>> closures_;
    std::vector<bool> closed_;
    std::vector<State> states_;
    std::unordered_map<uint64_t, std::vector<int32_t>> state_ids_;  // hash -> states
    // (state, code point) -> state: the hottest lookup, so open addressing in one array.
    struct Steps {
        std::vector<std::pair<uint64_t, int32_t>> slots;  // key 0: free (state 0 is never stored)
        size_t used = 0;
        int32_t find(uint64_t key) const;  // -1: not there
        void insert(uint64_t key, int32_t value);
        void clear();
    };
    Steps steps_;
    int32_t state_ = 0;
    PartialUtf8 partial_;
    std::vector<uint8_t> allowed_;  // apply's scratch: one flag per token
    std::vector<int32_t> path_;
    std::vector<uint32_t> cps_;
};

}  // namespace llamaserve
