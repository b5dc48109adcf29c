#include "draft_model.h"

#include <algorithm>
#include <chrono>

#include "batch_add.h"
#include "errors.h"
#include "prefix_cache.h"

namespace llamaserve {

namespace {

void check_same_vocabulary(const Model & draft, const Model & target) {
    const llama_vocab * d = draft.vocab();
    const llama_vocab * t = target.vocab();
    const auto mismatch = [&](const std::string & what) {
        return InvalidRequest("draft_model: " + draft.metadata().name + " cannot draft for " +
                              target.metadata().name + ": " + what);
    };
    if (llama_vocab_type(d) != llama_vocab_type(t)) throw mismatch("the tokenizers differ");
    if (llama_vocab_n_tokens(d) != llama_vocab_n_tokens(t)) {
        throw mismatch("vocabularies of " + std::to_string(llama_vocab_n_tokens(d)) + " and " +
                       std::to_string(llama_vocab_n_tokens(t)) + " tokens");
    }
    if (llama_vocab_bos(d) != llama_vocab_bos(t) || llama_vocab_eos(d) != llama_vocab_eos(t)) {
        throw mismatch("the special tokens differ");
    }
    for (llama_token id = 0; id < llama_vocab_n_tokens(t); ++id) {
        if (std::string(llama_vocab_get_text(d, id)) != llama_vocab_get_text(t, id)) {
            throw mismatch("token " + std::to_string(id) + " differs");
        }
    }
}

// Catch-up tokens per drafted token above which a step's timing is a prompt's, not drafting's.
constexpr int32_t kCatchUpPerToken = 4;

}  // namespace

DraftModel::DraftModel(const std::string & path, const Model & target, int32_t n_parallel,
                       int32_t n_ctx_seq, int32_t n_batch, int32_t n_gpu_layers, int32_t n_threads,
                       ggml_threadpool_t threadpool)
    : n_batch_(n_batch), cached_(n_parallel) {
    ModelLoadOptions load;
    load.n_gpu_layers = n_gpu_layers;
    model_ = std::make_unique<Model>(path, load);
    check_same_vocabulary(*model_, target);
    n_vocab_ = model_->metadata().n_vocab;

    auto params = llama_context_default_params();
    params.n_ctx = static_cast<uint32_t>(n_ctx_seq) * n_parallel;
    params.n_batch = n_batch;
    params.n_ubatch = std::min(n_batch, 512);
    params.n_seq_max = n_parallel;
    params.n_outputs_max = n_parallel;  // one row per drafting slot and step
    params.n_threads = n_threads;
    params.n_threads_batch = n_threads;
    params.kv_unified = false;
    params.no_perf = true;
    ctx_ = llama_init_from_model(model_->get(), params);
    if (!ctx_) throw ModelLoadError("cannot create a context for the draft model " + path);
    // The scheduler thread runs both models in turn: they share its workers.
    if (threadpool) llama_attach_threadpool(ctx_, threadpool, threadpool);
    batch_ = llama_batch_init(n_batch, 0, 1);
}

DraftModel::~DraftModel() {
    llama_batch_free(batch_);
    if (ctx_) llama_free(ctx_);
}

void DraftModel::forget(int32_t seq) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq, -1, -1);
    cached_[seq].clear();
}

llama_token DraftModel::greedy(int32_t batch_index) const {
    const float * logits = llama_get_logits_ith(ctx_, batch_index);
    return static_cast<llama_token>(std::max_element(logits, logits + n_vocab_) - logits);
}

int32_t DraftModel::catch_up(std::vector<Ask> & asks, std::vector<bool> & ready) {
    llama_memory_t mem = llama_get_memory(ctx_);
    batch_.n_tokens = 0;
    std::vector<int32_t> index(asks.size(), -1);
    for (size_t a = 0; a < asks.size(); ++a) {
        auto & cached = cached_[asks[a].seq];
        const auto & history = *asks[a].history;
        // Keep what still matches (the accepted drafts among it); the last token is fed
        // again whenever needed, for its logits.
        const size_t keep = common_prefix(cached, history, history.size() - 1);
        if (keep < cached.size()) {
            if (!llama_memory_seq_rm(mem, asks[a].seq, static_cast<llama_pos>(keep), -1)) {
                llama_memory_seq_rm(mem, asks[a].seq, -1, -1);
                cached.clear();
            } else {
                cached.resize(keep);
            }
        }
        // A long prompt catches up over several steps, a batch at a time.
        const size_t room = static_cast<size_t>(n_batch_ - batch_.n_tokens);
        const size_t end = std::min(history.size(), cached.size() + room);
        for (size_t k = cached.size(); k < end; ++k) {
            const bool last = k + 1 == history.size();
            if (last) index[a] = batch_.n_tokens;
            batch_add(batch_, history[k], static_cast<llama_pos>(k), asks[a].seq, last);
        }
        cached.assign(history.begin(), history.begin() + end);
    }
    if (batch_.n_tokens > 0 && llama_decode(ctx_, batch_) != 0) {
        for (auto & ask : asks) forget(ask.seq);
        return 0;
    }
    for (size_t a = 0; a < asks.size(); ++a) {
        if (index[a] < 0) continue;
        ready[a] = true;
        asks[a].draft->push_back(greedy(index[a]));
    }
    return batch_.n_tokens;
}

void DraftModel::propose(std::vector<Ask> & asks) {
    const auto started = std::chrono::steady_clock::now();
    std::vector<bool> ready(asks.size(), false);
    const int32_t fed = catch_up(asks, ready);
    size_t drafted = 0;
    for (size_t a = 0; a < asks.size(); ++a) drafted += asks[a].draft->size();
    // Each further token: one decode of every slot's last drafted token.
    for (;;) {
        batch_.n_tokens = 0;
        std::vector<size_t> stepping;
        for (size_t a = 0; a < asks.size(); ++a) {
            auto & draft = *asks[a].draft;
            if (!ready[a] || static_cast<int32_t>(draft.size()) >= asks[a].wanted) continue;
            auto & cached = cached_[asks[a].seq];
            batch_add(batch_, draft.back(), static_cast<llama_pos>(cached.size()), asks[a].seq, true);
            cached.push_back(draft.back());
            stepping.push_back(a);
        }
        if (stepping.empty()) break;
        if (llama_decode(ctx_, batch_) != 0) {
            for (auto & ask : asks) forget(ask.seq);
            return;
        }
        for (size_t k = 0; k < stepping.size(); ++k) {
            asks[stepping[k]].draft->push_back(greedy(static_cast<int32_t>(k)));
        }
        drafted += stepping.size();
    }
    // A prompt's catch-up is a one-time cost, not the price of drafting.
    if (drafted == 0 || fed > kCatchUpPerToken * static_cast<int32_t>(drafted)) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() / drafted;
    seconds_per_token_ = seconds_per_token_ == 0 ? s : 0.8 * seconds_per_token_ + 0.2 * s;
}

}  // namespace llamaserve
