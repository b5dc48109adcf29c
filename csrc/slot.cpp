#include "slot.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "batch_add.h"
#include "model_info.h"

namespace llamaserve {

size_t Slot::usable_prefix(const std::vector<llama_token> & prompt, llama_memory_t mem,
                           int32_t n_swa) const {
    const size_t reuse = common_prefix(cache_, prompt, prompt.size() - 1);
    if (reuse == 0 || n_swa <= 0 || reuse == cache_.size()) return reuse;
    // Cut back to `reuse`, the next tokens attend to the window before it: those cells
    // must still be there (a window cache reuses the cells that fall out of it).
    const llama_pos pos_min = llama_memory_seq_pos_min(mem, seq_);
    const llama_pos needed_from = static_cast<llama_pos>(reuse) - n_swa;
    return pos_min <= std::max<llama_pos>(0, needed_from) ? reuse : 0;
}

void Slot::drop_cache(llama_context * ctx) {
    llama_memory_t mem = llama_get_memory(ctx);
    llama_memory_seq_rm(mem, seq_, -1, -1);
    clear_parked(mem);
    cache_.clear();
}

void Slot::clear_parked(llama_memory_t mem) {
    if (park_ >= 0) llama_memory_seq_rm(mem, park_, -1, -1);
    parked_.clear();
}

bool Slot::move_chunks(llama_memory_t mem, const ReusePlan & plan) {
    const auto prefix = static_cast<llama_pos>(plan.prefix);
    // Drop the cached cells after the prefix that no chunk takes.
    auto by_cache = plan.chunks;
    std::sort(by_cache.begin(), by_cache.end(),
              [](const ReuseChunk & a, const ReuseChunk & b) { return a.cache_at < b.cache_at; });
    llama_pos from = prefix;
    for (const auto & chunk : by_cache) {
        if (!llama_memory_seq_rm(mem, seq_, from, static_cast<llama_pos>(chunk.cache_at))) return false;
        from = static_cast<llama_pos>(chunk.cache_at + chunk.n);
    }
    if (!llama_memory_seq_rm(mem, seq_, from, -1)) return false;
    // Lift them all past every target position, then each down to its own: chunks may move
    // either way and in any order without landing on one another. A cell's shifts add up:
    // its K is rotated once, by the net distance, at the next decode.
    const auto lift = static_cast<llama_pos>(cache_.size() + request_->prompt.size());
    llama_memory_seq_add(mem, seq_, prefix, -1, lift);
    llama_seq_id holder = seq_;
    if (park_ >= 0) {
        // Parked, the chunks are cells of another sequence of the same stream: the tokens
        // prefilled before them (at lower positions) cannot see them, and llama.cpp's batch
        // check (a sequence continues at its last position) holds.
        llama_memory_seq_cp(mem, seq_, park_, prefix, -1);
        llama_memory_seq_rm(mem, seq_, prefix, -1);
        holder = park_;
    }
    llama_pos end = prefix;
    for (const auto & chunk : plan.chunks) {
        const auto at = static_cast<llama_pos>(chunk.cache_at) + lift;
        llama_memory_seq_add(mem, holder, at, at + static_cast<llama_pos>(chunk.n),
                             static_cast<llama_pos>(chunk.prompt_at) - at);
        end = std::max(end, static_cast<llama_pos>(chunk.prompt_at + chunk.n));
    }
    // A memory that ignores shifts (layers sharing another's KV) shows here.
    if (park_ >= 0) {
        return llama_memory_seq_pos_max(mem, seq_) == prefix - 1 && llama_memory_seq_pos_max(mem, park_) == end - 1;
    }
    return llama_memory_seq_pos_max(mem, seq_) == end - 1;
}

void Slot::report_progress() const {
    if (!request_->return_progress) return;
    const auto processed = static_cast<int32_t>(n_prompt_fed_);
    // Nothing processed yet (the first report): no time spent on it either.
    const double ms = processed > cached_prompt_tokens_
        ? std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - request_->started_at).count()
        : 0.0;
    request_->stream->push_progress({static_cast<int32_t>(request_->prompt.size()), cached_prompt_tokens_,
                                     processed, ms});
}

void Slot::start(std::unique_ptr<Request> request, llama_context * ctx, const ReusePlan & plan) {
    request_ = std::move(request);
    llama_memory_t mem = llama_get_memory(ctx);
    clear_parked(mem);
    size_t reuse = plan.prefix;
    size_t fed = reuse;
    reused_tokens_ = 0;
    if (!plan.chunks.empty() && move_chunks(mem, plan)) {
        reused_tokens_ = plan.reused();
        if (park_ >= 0) {
            parked_ = plan.chunks;
        } else {
            fed += reused_tokens_;  // the chunks follow the prefix directly
        }
    } else if (!llama_memory_seq_rm(mem, seq_, static_cast<llama_pos>(reuse), -1)) {
        llama_memory_seq_rm(mem, seq_, -1, -1);  // a recurrent state cannot be cut back
        reuse = fed = 0;
    } else {
        clear_parked(mem);  // what a failed move left
    }
    cache_.assign(request_->prompt.begin(), request_->prompt.begin() + fed);
    decoder_ = std::make_unique<TextDecoder>(request_->stop);
    n_prompt_fed_ = fed;
    cached_prompt_tokens_ = static_cast<int32_t>(reuse + reused_tokens_);
    n_past_ = static_cast<int32_t>(fed);
    departure_ = CacheDeparture();
    n_generated_ = 0;
    pending_token_ = LLAMA_TOKEN_NULL;
    batch_index_ = -1;
    draft_.clear();
    acceptance_ = Acceptance();
    n_drafted_ = 0;
    n_accepted_ = 0;
    checkpoints_.clear();
    leader_ = nullptr;
}

bool Slot::restore(llama_context * ctx, const PrefixSnapshot & snapshot, size_t reuse) {
    llama_memory_t mem = llama_get_memory(ctx);
    llama_memory_seq_rm(mem, seq_, -1, -1);
    clear_parked(mem);
    reused_tokens_ = 0;
    cache_.clear();
    bool ok = llama_state_seq_set_data(ctx, snapshot.state.data(), snapshot.state.size(), seq_) > 0;
    if (ok && reuse < snapshot.tokens.size()) {
        ok = llama_memory_seq_rm(mem, seq_, static_cast<llama_pos>(reuse), -1);
    }
    if (!ok) {
        llama_memory_seq_rm(mem, seq_, -1, -1);
        reuse = 0;
    }
    cache_.assign(snapshot.tokens.begin(), snapshot.tokens.begin() + reuse);
    n_prompt_fed_ = reuse;
    cached_prompt_tokens_ = static_cast<int32_t>(reuse);
    n_past_ = static_cast<int32_t>(reuse);
    while (!checkpoints_.empty() && checkpoints_.front() <= reuse) checkpoints_.erase(checkpoints_.begin());
    return ok;
}

PrefixSnapshot Slot::snapshot(llama_context * ctx, std::vector<uint8_t> buffer) const {
    PrefixSnapshot out;
    out.state = std::move(buffer);
    const size_t written = llama_state_seq_get_data(ctx, out.state.data(), out.state.size(), seq_);
    out.state.resize(written);
    if (written > 0) out.tokens = cache_;
    return out;
}

void Slot::add_checkpoint(size_t position) {
    if (position <= n_prompt_fed_ || position >= request_->prompt.size()) return;
    auto it = std::lower_bound(checkpoints_.begin(), checkpoints_.end(), position);
    if (it == checkpoints_.end() || *it != position) checkpoints_.insert(it, position);
}

size_t Slot::prefill_ready() const {
    if (leader_) return 0;
    size_t left = request_->prompt.size() - n_prompt_fed_;
    if (!parked_.empty()) left = std::min(left, parked_.front().prompt_at - n_prompt_fed_);
    return checkpoints_.empty() ? left : std::min(left, checkpoints_.front() - n_prompt_fed_);
}

void Slot::unpark_due(llama_context * ctx) {
    llama_memory_t mem = llama_get_memory(ctx);
    const auto & prompt = request_->prompt;
    while (!parked_.empty() && parked_.front().prompt_at == n_prompt_fed_) {
        const ReuseChunk chunk = parked_.front();
        parked_.erase(parked_.begin());
        const auto p0 = static_cast<llama_pos>(chunk.prompt_at);
        const auto p1 = p0 + static_cast<llama_pos>(chunk.n);
        llama_memory_seq_cp(mem, park_, seq_, p0, p1);
        llama_memory_seq_rm(mem, park_, p0, p1);
        cache_.insert(cache_.end(), prompt.begin() + p0, prompt.begin() + p1);
        n_prompt_fed_ += chunk.n;
        n_past_ += static_cast<int32_t>(chunk.n);
    }
    // A snapshot point inside a chunk is passed (the sequence never stood there).
    while (!checkpoints_.empty() && checkpoints_.front() < n_prompt_fed_) checkpoints_.erase(checkpoints_.begin());
}

bool Slot::at_checkpoint() const {
    return busy() && !checkpoints_.empty() && checkpoints_.front() == n_prompt_fed_;
}

void Slot::passed_checkpoint() {
    if (!checkpoints_.empty()) checkpoints_.erase(checkpoints_.begin());
}

bool Slot::is_leader_of(size_t position) const {
    return std::binary_search(checkpoints_.begin(), checkpoints_.end(), position);
}

void Slot::follow(const Slot & leader, size_t position) {
    leader_ = &leader;
    leader_request_ = leader.request_id();
    leader_position_ = position;
}

bool Slot::leader_done() const {
    // The checkpoint leaves the leader's list once its snapshot is in the host cache.
    return !leader_->busy() || leader_->request_id() != leader_request_ ||
           !leader_->is_leader_of(leader_position_);
}

int32_t Slot::draft_room(int32_t n_ctx_seq) const {
    // The pending token takes cell n_past_; each drafted one the next.
    int64_t room = static_cast<int64_t>(n_ctx_seq) - n_past_ - 1;
    if (request_->max_tokens >= 0) room = std::min<int64_t>(room, request_->max_tokens - n_generated_);
    return static_cast<int32_t>(std::max<int64_t>(0, room));
}

const std::vector<llama_token> & Slot::history() {
    history_.assign(cache_.begin(), cache_.end());
    history_.push_back(pending_token_);
    return history_;
}

void Slot::add_to_batch(llama_batch & batch, int32_t budget) {
    batch_index_ = -1;
    if (budget <= 0) return;
    if (!prefilling()) {
        batch_index_ = batch.n_tokens;
        batch_add(batch, pending_token_, n_past_++, seq_, true);
        cache_.push_back(pending_token_);
        for (llama_token t : draft_) {
            batch_add(batch, t, n_past_++, seq_, true);
            cache_.push_back(t);
        }
        return;
    }
    if (leader_) return;  // waits for the leader's snapshot
    const auto & prompt = request_->prompt;
    size_t n = std::min<size_t>(budget, prefill_ready());
    for (size_t k = 0; k < n; ++k) {
        const bool last = n_prompt_fed_ + 1 == prompt.size();
        if (last) batch_index_ = batch.n_tokens;
        cache_.push_back(prompt[n_prompt_fed_]);
        batch_add(batch, prompt[n_prompt_fed_++], n_past_++, seq_, last);
    }
}

const char * Slot::advance(llama_context * ctx, const Model & model, int32_t n_ctx_seq, int32_t n_vocab) {
    const int32_t drafted = static_cast<int32_t>(draft_.size());
    const llama_pos first = n_past_ - drafted;  // the cell after the last one decoded for sure
    const int32_t first_index = batch_index_;
    int32_t accepted = 0;
    const char * reason = nullptr;
    request_->sampler->begin_step();
    for (;;) {
        batch_index_ = first_index + accepted;
        n_past_ = first + accepted;  // where the token sampled now will go
        const llama_token forced = request_->reasoning.forced();
        const llama_token token = forced != LLAMA_TOKEN_NULL ? request_->sampler->force(forced) : sample(ctx, n_vocab);
        reason = accept(token, model, n_ctx_seq);
        if (reason || accepted == drafted || token != draft_[accepted]) break;
        ++accepted;
    }
    if (accepted < drafted) {
        // The rejected drafts' cells: the next token goes where the first of them was.
        llama_memory_seq_rm(llama_get_memory(ctx), seq_, first + accepted, -1);
        cache_.resize(first + accepted);
    }
    if (drafted > 0) {
        acceptance_.record(drafted, accepted);
        n_drafted_ += drafted;
        n_accepted_ += accepted;
    } else if (!prefilling()) {
        acceptance_.idle();
    }
    draft_.clear();
    return reason;
}

llama_token Slot::sample(llama_context * ctx, int32_t n_vocab) {
    const llama_token token = request_->sampler->sample(ctx, batch_index_);
    if (request_->logprobs < 0 || token == LLAMA_TOKEN_NULL) return token;

    if (request_->post_sampling_probs) {
        const Sampler & sampler = *request_->sampler;
        TokenLogprob record;
        record.token = token;
        record.logprob = std::log(sampler.chosen_prob());
        for (const auto & [id, p] : sampler.final_probs()) record.top.emplace_back(id, std::log(p));
        request_->stream->push_logprob(std::move(record));
        return token;
    }
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
    stream.mark_token();
    ++n_generated_;
    pending_token_ = token;

    if (llama_vocab_is_eog(model.vocab(), token)) {
        // Only reachable without ignore_eos: the sampler bans these tokens otherwise.
        final_text_ = decoder_->flush();
        return "stop";
    }
    const auto & preserved = request_->preserved;
    const bool as_text = !preserved.empty() && std::binary_search(preserved.begin(), preserved.end(), token);
    auto & reasoning = request_->reasoning;
    if (reasoning.before_answer()) {
        reasoning.observe(model.token_text(token));
        request_->sampler->set_grammar_waiting(reasoning.before_answer());  // the grammar shapes the answer
    }
    auto step = decoder_->push(as_text ? model.token_text(token) : model.token_bytes(token));
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

void Slot::finish(const std::string & reason, llama_context * ctx, const std::string & error,
                  bool invalid_request) {
    // The slot is free before anything here may throw, so a failure cannot wedge it.
    const std::unique_ptr<Request> request = std::move(request_);
    decoder_.reset();
    const bool keep = request->cache_prompt && (reason == "stop" || reason == "length");
    checkpoints_.clear();
    draft_.clear();
    leader_ = nullptr;
    clear_parked(llama_get_memory(ctx));  // chunks an unfinished prefill had not reached
    if (!keep) {
        llama_memory_seq_rm(llama_get_memory(ctx), seq_, -1, -1);
        cache_.clear();
    }
    StreamStats stats;
    stats.prompt_tokens = static_cast<int32_t>(request->prompt.size());
    stats.cached_tokens = cached_prompt_tokens_;
    stats.reused_tokens = static_cast<int32_t>(reused_tokens_);
    stats.cache_departure = departure_.at;
    stats.cache_departure_text = departure_.text;
    stats.completion_tokens = n_generated_;
    stats.drafted_tokens = n_drafted_;
    stats.accepted_tokens = n_accepted_;
    stats.reasoning_tokens = request->reasoning.tokens();
    stats.finish_reason = reason;
    stats.error = error;
    stats.invalid_request = invalid_request;
    request->stream->finish(std::move(stats), std::move(final_text_));
    final_text_.clear();
}

}  // namespace llamaserve
