#include "sampling.h"

#include <cmath>
#include <limits>

#include "errors.h"
#include "model_info.h"

namespace llamaserve {

namespace {

bool has_penalties(const SamplingParams & p) {
    return p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
}

}  // namespace

Sampler::Sampler(const Model & model, const SamplingParams & p, bool ignore_eos)
    : n_vocab_(model.metadata().n_vocab) {
    std::vector<llama_logit_bias> bias;
    for (const auto & [token, value] : p.logit_bias) {
        if (!model.valid_token(token)) {
            throw InvalidRequest("logit_bias: unknown token id " + std::to_string(token));
        }
        bias.push_back({token, value});
    }
    if (ignore_eos) {
        for (llama_token t : model.eog_tokens()) {
            bias.push_back({t, -std::numeric_limits<float>::infinity()});
        }
    }
    if (!has_penalties(p) && p.grammar.empty()) {
        if (p.temperature <= 0.0f) {
            mode_ = Mode::Greedy;
        } else if (p.top_k > 0 && p.top_k <= LogitSelector::kMaxTopK) {
            mode_ = Mode::TopK;
            top_k_ = p.top_k;
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
        if (!p.grammar.empty()) {
            grammar_ = llama_sampler_init_grammar(model.vocab(), p.grammar.c_str(), p.grammar_root.c_str());
            if (!grammar_) {
                llama_sampler_free(chain_);
                throw InvalidRequest("grammar: could not be parsed");
            }
        }
        if (p.temperature <= 0.0f) {
            llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
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
    if (grammar_) llama_sampler_free(grammar_);
    if (chain_) llama_sampler_free(chain_);
}

llama_token_data_array Sampler::candidates(const float * logits) {
    candidates_.resize(n_vocab_);
    for (llama_token t = 0; t < n_vocab_; ++t) candidates_[t] = {t, logits[t], 0.0f};
    return {candidates_.data(), candidates_.size(), -1, false};
}

llama_token Sampler::sample_with_grammar(llama_context * ctx, int32_t batch_index) {
    // Checking the grammar against the whole vocabulary is slow, so sample freely first
    // and check only that token; the full check runs only when the grammar refuses it.
    const float * logits = llama_get_logits_ith(ctx, batch_index);
    auto cur = candidates(logits);
    llama_sampler_apply(chain_, &cur);
    llama_token token = cur.data[cur.selected].id;

    llama_token_data single = {token, 1.0f, 0.0f};
    llama_token_data_array one = {&single, 1, -1, false};
    llama_sampler_apply(grammar_, &one);
    if (std::isinf(single.logit)) {
        cur = candidates(logits);
        llama_sampler_apply(grammar_, &cur);
        llama_sampler_apply(chain_, &cur);
        token = cur.data[cur.selected].id;
    }
    llama_sampler_accept(grammar_, token);
    llama_sampler_accept(chain_, token);
    return token;
}

llama_token Sampler::sample_top_k(const float * logits) {
    selector_->top_k(logits, top_k_, candidates_);
    if (candidates_.empty()) return selector_->argmax(logits);  // no finite logit at all
    llama_token_data_array cur = {candidates_.data(), candidates_.size(), -1, true};
    llama_sampler_apply(chain_, &cur);
    const llama_token token = cur.data[cur.selected].id;
    llama_sampler_accept(chain_, token);
    return token;
}

llama_token Sampler::sample(llama_context * ctx, int32_t batch_index) {
    switch (mode_) {
        case Mode::Greedy: return selector_->argmax(llama_get_logits_ith(ctx, batch_index));
        case Mode::TopK: return sample_top_k(llama_get_logits_ith(ctx, batch_index));
        case Mode::Chain: break;
    }
    if (grammar_) return sample_with_grammar(ctx, batch_index);
    return llama_sampler_sample(chain_, ctx, batch_index);
}

}  // namespace llamaserve
