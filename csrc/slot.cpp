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

size_t Slot::reusable_prefix(const std::vector<llama_token> & prompt) const {
    const size_t limit = std::min(cache_.size(), prompt.size() - 1);
    size_t n = 0;
    while (n < limit && cache_[n] == prompt[n]) ++n;
    return n;
}

void Slot::start(std::unique_ptr<Request> request, llama_context * ctx, int32_t n_swa) {
    request_ = std::move(request);
    llama_memory_t mem = llama_get_memory(ctx);
    size_t reuse = request_->cache_prompt ? reusable_prefix(request_->prompt) : 0;
    if (reuse > 0 && n_swa > 0) {
        // A sliding-window cache may have dropped the early positions the next tokens
        // must attend to; then nothing is reusable.
        const llama_pos pos_min = llama_memory_seq_pos_min(mem, seq_);
        const llama_pos needed_from = std::max<llama_pos>(0, static_cast<llama_pos>(reuse) - n_swa);
        if (pos_min > 0 && pos_min >= needed_from) reuse = 0;
    }
    if (!llama_memory_seq_rm(mem, seq_, static_cast<llama_pos>(reuse), -1)) {
        llama_memory_seq_rm(mem, seq_, -1, -1);
        reuse = 0;
    }
    cache_.resize(reuse);
    decoder_ = std::make_unique<TextDecoder>(request_->stop);
    n_prompt_fed_ = reuse;
    cached_prompt_tokens_ = static_cast<int32_t>(reuse);
    n_past_ = static_cast<int32_t>(reuse);
    n_generated_ = 0;
    pending_token_ = LLAMA_TOKEN_NULL;
    batch_index_ = -1;
}

void Slot::add_to_batch(llama_batch & batch, int32_t budget) {
    batch_index_ = -1;
    if (budget <= 0) return;
    if (!prefilling()) {
        batch_index_ = batch.n_tokens;
        batch_add(batch, pending_token_, n_past_++, seq_, true);
        cache_.push_back(pending_token_);
        return;
    }
    const auto & prompt = request_->prompt;
    const size_t n = std::min<size_t>(budget, prompt.size() - n_prompt_fed_);
    for (size_t k = 0; k < n; ++k) {
        const bool last = n_prompt_fed_ + 1 == prompt.size();
        if (last) batch_index_ = batch.n_tokens;
        cache_.push_back(prompt[n_prompt_fed_]);
        batch_add(batch, prompt[n_prompt_fed_++], n_past_++, seq_, last);
    }
}

llama_token Slot::sample(llama_context * ctx, int32_t n_vocab) {
    const llama_token token = request_->sampler->sample(ctx, batch_index_);
    if (request_->logprobs < 0 || token == LLAMA_TOKEN_NULL) return token;

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
    if (token == LLAMA_TOKEN_NULL) {
        // The grammar is complete and end-of-generation is banned (ignore_eos).
        final_text_ = decoder_->flush();
        return "stop";
    }
    if (n_generated_ == 0) stream.mark_first_token();
    ++n_generated_;
    pending_token_ = token;

    if (llama_vocab_is_eog(model.vocab(), token)) {
        // Only reachable without ignore_eos: the sampler bans these tokens otherwise.
        final_text_ = decoder_->flush();
        return "stop";
    }
    auto step = decoder_->push(model.token_bytes(token));
    if (step.stopped) {
        final_text_ = std::move(step.text);
        return "stop";
    }
    const bool out_of_tokens = request_->max_tokens >= 0 && n_generated_ >= request_->max_tokens;
    const bool out_of_context = n_past_ >= n_ctx_seq;  // no cell left for the next token
    if (out_of_tokens || out_of_context) {
        final_text_ = std::move(step.text) + decoder_->flush();
        return "length";
    }
    stream.push(std::move(step.text));
    return nullptr;
}

void Slot::finish(const std::string & reason, llama_context * ctx, const std::string & error) {
    // The slot is free before anything here may throw, so a failure cannot wedge it.
    const std::unique_ptr<Request> request = std::move(request_);
    decoder_.reset();
    const bool keep = request->cache_prompt && (reason == "stop" || reason == "length");
    if (!keep) {
        llama_memory_seq_rm(llama_get_memory(ctx), seq_, -1, -1);
        cache_.clear();
    }
    StreamStats stats;
    stats.prompt_tokens = static_cast<int32_t>(request->prompt.size());
    stats.cached_tokens = cached_prompt_tokens_;
    stats.completion_tokens = n_generated_;
    stats.finish_reason = reason;
    stats.error = error;
    request->stream->finish(std::move(stats), std::move(final_text_));
    final_text_.clear();
}

}  // namespace llamaserve
