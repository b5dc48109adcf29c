#include "slot.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model_info.h"

namespace llamaserve {

namespace {

void batch_add(llama_batch & batch, llama_token token, llama_pos pos, llama_seq_id seq,
               bool logits) {
    const int32_t i = batch.n_tokens++;
    batch.token[i] = token;
    batch.pos[i] = pos;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = seq;
    batch.logits[i] = logits;
}

}  // namespace

void Slot::start(std::unique_ptr<Request> request) {
    request_ = std::move(request);
    decoder_ = std::make_unique<TextDecoder>(request_->stop);
    n_prompt_fed_ = 0;
    n_past_ = 0;
    n_generated_ = 0;
    pending_token_ = LLAMA_TOKEN_NULL;
    batch_index_ = -1;
}

int32_t Slot::add_to_batch(llama_batch & batch, int32_t budget) {
    batch_index_ = -1;
    if (budget <= 0) return 0;
    if (!prefilling()) {
        batch_index_ = batch.n_tokens;
        batch_add(batch, pending_token_, n_past_++, seq_, true);
        return 1;
    }
    const auto & prompt = request_->prompt;
    const size_t n = std::min<size_t>(budget, prompt.size() - n_prompt_fed_);
    for (size_t k = 0; k < n; ++k) {
        const bool last = n_prompt_fed_ + 1 == prompt.size();
        if (last) batch_index_ = batch.n_tokens;
        batch_add(batch, prompt[n_prompt_fed_++], n_past_++, seq_, last);
    }
    return static_cast<int32_t>(n);
}

llama_token Slot::sample(llama_context * ctx, int32_t n_vocab) {
    const llama_token token = request_->sampler->sample(ctx, batch_index_);
    if (request_->logprobs < 0) return token;

    const float * logits = llama_get_logits_ith(ctx, batch_index_);
    const float max_logit = *std::max_element(logits, logits + n_vocab);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(double(logits[i] - max_logit));
    const float log_norm = max_logit + static_cast<float>(std::log(sum));

    TokenLogprob record;
    record.token = token;
    record.logprob = logits[token] - log_norm;
    if (request_->logprobs > 0) {
        std::vector<llama_token> ids(n_vocab);
        std::iota(ids.begin(), ids.end(), 0);
        const auto top_end = ids.begin() + std::min(request_->logprobs, n_vocab);
        std::partial_sort(ids.begin(), top_end, ids.end(),
                          [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
        for (auto it = ids.begin(); it != top_end; ++it) {
            record.top.emplace_back(*it, logits[*it] - log_norm);
        }
    }
    request_->stream->push_logprob(std::move(record));
    return token;
}

const char * Slot::accept(llama_token token, const Model & model, int32_t n_ctx_seq) {
    auto & stream = *request_->stream;
    if (n_generated_ == 0) stream.mark_first_token();
    ++n_generated_;
    pending_token_ = token;

    if (llama_vocab_is_eog(model.vocab(), token)) {
        // Only reachable without ignore_eos: the sampler bans these tokens otherwise.
        stream.push(decoder_->flush());
        return "stop";
    }
    auto step = decoder_->push(model.token_bytes(token));
    stream.push(std::move(step.text));
    if (step.stopped) return "stop";
    const bool out_of_tokens = request_->max_tokens >= 0 && n_generated_ >= request_->max_tokens;
    const bool out_of_context = n_past_ >= n_ctx_seq;  // no cell left for the next token
    if (out_of_tokens || out_of_context) {
        stream.push(decoder_->flush());
        return "length";
    }
    return nullptr;
}

void Slot::finish(const std::string & reason, llama_context * ctx, const std::string & error) {
    StreamStats stats;
    stats.prompt_tokens = static_cast<int32_t>(request_->prompt.size());
    stats.completion_tokens = n_generated_;
    stats.finish_reason = reason;
    stats.error = error;
    request_->stream->finish(std::move(stats));
    llama_memory_seq_rm(llama_get_memory(ctx), seq_, -1, -1);
    request_.reset();
    decoder_.reset();
}

}  // namespace llamaserve
