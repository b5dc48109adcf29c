// Per-request sampling settings and the llama_sampler chain built from them.
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "grammar_limits.h"
#include "llama.h"
#include "logit_select.h"

namespace llamaserve {

class Grammar;
class Model;

struct SamplingParams {
    float temperature = 0.8f;  // 0 = greedy
    int32_t top_k = 40;        // 0 = off
    float top_p = 0.95f;       // 1 = off
    float min_p = 0.05f;       // 0 = off
    float repeat_penalty = 1.0f;
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    int32_t penalty_last_n = 64;
    uint32_t seed = LLAMA_DEFAULT_SEED;  // default: a random seed per request
    std::vector<std::pair<llama_token, float>> logit_bias;
    std::string grammar;  // GBNF; empty = unconstrained (the engine compiles it: see Grammar)
    std::string grammar_root = "root";
};

// Chooses each token of one request. Without penalties, the first steps of llama.cpp's
// chain (logit bias, then greedy or top-k) run in LogitSelector over the logits themselves,
// and only the rest of the chain sees the k candidates left: the same choices, without
// copying the whole vocabulary for every token. A grammar checks the free choice alone,
// and filters the whole vocabulary only when it refuses that token. The grammar's work in one
// step is bounded by `grammar_budget`: past it, sample() throws InvalidRequest.
class Sampler {
public:
    Sampler(const Model & model, const SamplingParams & params, bool ignore_eos,
            std::unique_ptr<Grammar> grammar = nullptr,
            std::chrono::milliseconds grammar_budget = std::chrono::milliseconds(0));
    ~Sampler();
    Sampler(const Sampler &) = delete;
    Sampler & operator=(const Sampler &) = delete;

    // LLAMA_TOKEN_NULL when the grammar allows no token that is not banned: it is complete
    // and end-of-generation is banned (ignore_eos).
    llama_token sample(llama_context * ctx, int32_t batch_index);
    // A token chosen for the model (a reasoning budget's closing marker): the chain's state
    // (penalties) sees it as sampled; the grammar waits meanwhile.
    llama_token force(llama_token token) {
        if (chain_) llama_sampler_accept(chain_, token);
        return token;
    }
    // While a reasoning model thinks, the grammar (the answer's shape) is not applied; it starts
    // at the first token of the answer.
    void set_grammar_waiting(bool waiting) { grammar_waiting_ = waiting; }
    // Starts the grammar's budget for this scheduler step (the tokens sampled in it share it).
    void begin_step() {
        if (grammar_) budget_ = GrammarBudget(grammar_budget_);
    }
    // Keep the probabilities the chain left of the last sample(): the chosen token's and the
    // n most likely (llama-server's post_sampling_probs). Greedy: the choice, certain.
    void keep_final_probs(int32_t n) { keep_n_ = n; }
    float chosen_prob() const { return chosen_p_; }
    const std::vector<std::pair<llama_token, float>> & final_probs() const { return final_; }

private:
    enum class Mode { Greedy, TopK, Chain };

    llama_token free_choice(const float * logits);
    llama_token choice_within_grammar(const float * logits);
    llama_token_data_array all_candidates(const float * logits, bool biased);
    llama_token apply_chain(llama_token_data_array cur);
    llama_token certain(llama_token token);  // a choice without a chain: probability 1

    Mode mode_ = Mode::Chain;
    int32_t top_k_ = 0;
    std::unique_ptr<LogitSelector> selector_;  // Greedy and TopK
    llama_sampler * chain_ = nullptr;          // TopK: what follows top-k; Chain: all of it
    std::unique_ptr<Grammar> grammar_;         // kept out of the chain: see sample()
    bool grammar_waiting_ = false;             // see set_grammar_waiting()
    bool chain_greedy_ = false;                // the chain ends in greedy (penalties at temperature 0)
    int32_t keep_n_ = -1;                      // see keep_final_probs(); -1: not kept
    float chosen_p_ = 0.0f;
    std::vector<std::pair<llama_token, float>> final_;
    std::chrono::milliseconds grammar_budget_;
    GrammarBudget budget_{std::chrono::milliseconds(0)};
    llama_sampler * top_k_sampler_ = nullptr;  // TopK with a grammar: for refused tokens
    std::vector<llama_token> banned_;  // biased to -inf: never a choice, whatever the chain does
    std::vector<llama_token_data> candidates_;
    int32_t n_vocab_ = 0;
};

}  // namespace llamaserve
