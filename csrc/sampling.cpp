#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "errors.h"
#include "grammar.h"
#include "model_info.h"

namespace llamaserve {

namespace {

bool has_penalties(const SamplingParams & p) {
    return p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

}  // namespace

Sampler::Sampler(const Model & model, const SamplingParams & p, bool ignore_eos, std::unique_ptr<Grammar> grammar,
                 std::chrono::milliseconds grammar_budget)
    : grammar_(std::move(grammar)), grammar_budget_(grammar_budget), n_vocab_(model.metadata().n_vocab) {
    std::vector<llama_logit_bias> bias;
    for (const auto & [token, value] : p.logit_bias) {
        if (!model.valid_token(token)) {
            throw InvalidRequest("logit_bias: unknown token id " + std::to_string(token));
        }
        bias.push_back({token, value});
        if (value == -std::numeric_limits<float>::infinity()) banned_.push_back(token);
    }
    if (ignore_eos) {
        for (llama_token t : model.eog_tokens()) {
            bias.push_back({t, -std::numeric_limits<float>::infinity()});
            banned_.push_back(t);
        }
    }
    if (!has_penalties(p)) {
        if (p.temperature <= 0.0f) {
            mode_ = Mode::Greedy;
        } else if (p.top_k > 0 && p.top_k <= LogitSelector::kMaxTopK) {
            mode_ = Mode::TopK;
            top_k_ = p.top_k;
            if (grammar_) top_k_sampler_ = llama_sampler_init_top_k(p.top_k);
        }
    }
    if (mode_ != Mode::Chain) selector_ = std::make_unique<LogitSelector>(n_vocab_, bias);
    if (mode_ == Mode::Greedy) return;

    auto chain_params = llama_sampler_chain_default_params();
    chain_params.no_perf = true;
    chain_ = llama_sampler_chain_init(chain_params);
    if (mode_ == Mode::Chain) {
        if (!bias.empty()) {
            llama_sampler_chain_add(chain_, llama_sampler_init_logit_bias(
                                                n_vocab_, static_cast<int32_t>(bias.size()), bias.data()));
        }
        if (has_penalties(p)) {
            llama_sampler_chain_add(chain_, llama_sampler_init_penalties(
                                                n_vocab_, p.penalty_last_n, p.repeat_penalty,
                                                p.frequency_penalty, p.presence_penalty));
        }
        if (p.temperature <= 0.0f) {
            llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
            chain_greedy_ = true;
            return;
        }
        if (p.top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(p.top_k));
    }
    if (p.top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(chain_, llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(chain_, llama_sampler_init_dist(p.seed));
}

Sampler::~Sampler() {
    if (top_k_sampler_) llama_sampler_free(top_k_sampler_);
    if (chain_) llama_sampler_free(chain_);
}

llama_token Sampler::sample(llama_context * ctx, int32_t batch_index) {
    const float * logits = llama_get_logits_ith(ctx, batch_index);
    llama_token token = free_choice(logits);
    if (grammar_ && !grammar_waiting_) {
        // Checking the grammar against the whole vocabulary is slow, so the free choice
        // is checked alone; only a refused one costs the full check.
        if (!grammar_->allows(token, budget_)) token = choice_within_grammar(logits);
        if (token == LLAMA_TOKEN_NULL) return token;
        grammar_->accept(token, budget_);
    }
    if (chain_) llama_sampler_accept(chain_, token);
    return token;
}

llama_token Sampler::free_choice(const float * logits) {
    switch (mode_) {
        case Mode::Greedy:
            return certain(selector_->argmax(logits));
        case Mode::TopK:
            selector_->top_k(logits, top_k_, candidates_);
            if (candidates_.empty()) return certain(selector_->argmax(logits));  // no finite logit at all
            return apply_chain({candidates_.data(), candidates_.size(), -1, true});
        case Mode::Chain:
            break;
    }
    return apply_chain(all_candidates(logits, false));
}

llama_token Sampler::choice_within_grammar(const float * logits) {
    // The chain's own steps before top-k (the biases) are additive, so applying the
    // grammar first changes nothing but which tokens are left.
    auto cur = all_candidates(logits, mode_ != Mode::Chain);
    grammar_->apply(cur, budget_);
    // A complete grammar allows only end-of-generation; with that banned, nothing is left
    // (and accepting any other token would throw).
    const auto allowed = [&](const llama_token_data & c) {
        return c.logit > -std::numeric_limits<float>::infinity() &&
               std::find(banned_.begin(), banned_.end(), c.id) == banned_.end();
    };
    if (std::none_of(cur.data, cur.data + cur.size, allowed)) return LLAMA_TOKEN_NULL;
    if (mode_ == Mode::Greedy) {
        size_t best = 0;
        for (size_t i = 1; i < cur.size; ++i) {
            if (cur.data[i].logit > cur.data[best].logit) best = i;
        }
        return certain(cur.data[best].id);
    }
    if (top_k_sampler_) llama_sampler_apply(top_k_sampler_, &cur);
    return apply_chain(cur);
}

llama_token_data_array Sampler::all_candidates(const float * logits, bool biased) {
    if (biased) return selector_->all(logits, candidates_);
    candidates_.resize(n_vocab_);
    for (llama_token t = 0; t < n_vocab_; ++t) candidates_[t] = {t, logits[t], 0.0f};
    return {candidates_.data(), candidates_.size(), -1, false};
}

llama_token Sampler::apply_chain(llama_token_data_array cur) {
    llama_sampler_apply(chain_, &cur);
    if (chain_greedy_) return certain(cur.data[cur.selected].id);
    if (keep_n_ >= 0) {  // the dist sampler, last in the chain, left each candidate's probability
        chosen_p_ = cur.data[cur.selected].p;
        final_.clear();
        for (size_t i = 0; i < cur.size; ++i) {
            if (cur.data[i].p > 0.0f) final_.emplace_back(cur.data[i].id, cur.data[i].p);
        }
        const auto end = final_.begin() + std::min<size_t>(final_.size(), static_cast<size_t>(keep_n_));
        std::partial_sort(final_.begin(), end, final_.end(),
                          [](const auto & a, const auto & b) { return a.second > b.second; });
        final_.erase(end, final_.end());
    }
    return cur.data[cur.selected].id;
}

llama_token Sampler::certain(llama_token token) {
    if (keep_n_ >= 0) {
        chosen_p_ = 1.0f;
        final_.assign(keep_n_ > 0 ? 1 : 0, {token, 1.0f});
    }
    return token;
}

}  // namespace llamaserve
