#include "embedder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "errors.h"
#include "gguf.h"

namespace llamaserve {

namespace {

constexpr int32_t kMaxSequences = 16;  // inputs embedded in one decode

// What the GGUF asks for (rank when asked to rerank); a generative model asks for nothing
// and gets mean pooling.
enum llama_pooling_type pooling_of(const Model & model, bool rank) {
    if (rank) return LLAMA_POOLING_TYPE_RANK;
    const std::string key = model.metadata().architecture + ".pooling_type";
    char buf[16] = {0};
    if (llama_model_meta_val_str(model.get(), key.c_str(), buf, sizeof buf) < 0) return LLAMA_POOLING_TYPE_MEAN;
    const auto type = static_cast<enum llama_pooling_type>(std::atoi(buf));
    return type == LLAMA_POOLING_TYPE_NONE ? LLAMA_POOLING_TYPE_MEAN : type;
}

// Whether llama.cpp's rank pooling gives n_cls_out floats per sequence: only through the
// classifier's output layer (cls.output). Without it (a decoder forced to rank, a head of one
// dense layer as jina-reranker-v1-tiny's) a sequence's row is n_embd wide, while llama.cpp reads
// the scores of sequence s at s * n_cls_out: right for the first sequence of a decode alone.
bool has_score_layer(const Model & model) {
    gguf_init_params params{/*no_alloc =*/true, /*ctx =*/nullptr};
    gguf_context * file = gguf_init_from_file(model.metadata().path.c_str(), params);
    if (!file) return false;
    const bool found = gguf_find_tensor(file, "cls.output.weight") >= 0;
    gguf_free(file);
    return found;
}

}  // namespace

Embedder::Embedder(const Model & model, int32_t n_ctx, int32_t n_threads, bool rank)
    : model_(model), n_ctx_(n_ctx), n_threads_(n_threads), pooling_(pooling_of(model, rank)),
      max_sequences_(pooling_ == LLAMA_POOLING_TYPE_RANK && !has_score_layer(model) ? 1 : kMaxSequences) {}

Embedder::~Embedder() {
    if (ctx_) {
        llama_batch_free(batch_);
        llama_free(ctx_);
    }
}

int32_t Embedder::n_embd() const { return llama_model_n_embd(model_.get()); }

int32_t Embedder::n_scores() const { return static_cast<int32_t>(llama_model_n_cls_out(model_.get())); }

std::string Embedder::pooling() const {
    switch (pooling_) {
        case LLAMA_POOLING_TYPE_CLS: return "cls";
        case LLAMA_POOLING_TYPE_LAST: return "last";
        case LLAMA_POOLING_TYPE_RANK: return "rank";
        default: return "mean";
    }
}

void Embedder::ensure_context() {
    if (ctx_) return;
    auto params = llama_context_default_params();
    params.embeddings = true;
    params.pooling_type = pooling_;
    params.n_ctx = static_cast<uint32_t>(n_ctx_);
    // Pooling needs a whole sequence in one ubatch.
    params.n_batch = params.n_ubatch = static_cast<uint32_t>(n_ctx_);
    params.n_seq_max = kMaxSequences;
    params.kv_unified = true;  // the inputs of a batch share the n_ctx cells
    params.n_threads = params.n_threads_batch = n_threads_;
    params.no_perf = true;
    ctx_ = llama_init_from_model(model_.get(), params);
    if (!ctx_) throw EngineError("cannot create an embedding context");
    batch_ = llama_batch_init(n_ctx_, 0, 1);
}

std::vector<float> Embedder::embed(const std::vector<std::vector<llama_token>> & inputs) {
    if (pooling_ == LLAMA_POOLING_TYPE_RANK) {
        throw InvalidRequest("input: this is a reranking model; it scores pairs, it has no embeddings");
    }
    return run(inputs, static_cast<size_t>(n_embd()), true);
}

std::vector<float> Embedder::score(const std::vector<std::vector<llama_token>> & inputs) {
    if (pooling_ != LLAMA_POOLING_TYPE_RANK) {
        throw InvalidRequest("this is not a reranking model (pooling " + pooling() +
                             "); serve one with pooling type rank");
    }
    return run(inputs, static_cast<size_t>(n_scores()), false);
}

std::vector<float> Embedder::run(const std::vector<std::vector<llama_token>> & inputs, size_t width, bool normalize) {
    for (size_t i = 0; i < inputs.size(); ++i) {
        const std::string where = "input[" + std::to_string(i) + "]";
        if (inputs[i].empty()) throw InvalidRequest(where + ": must not be empty");
        if (static_cast<int64_t>(inputs[i].size()) > n_ctx_) {
            throw ContextLengthExceeded(where + " has " + std::to_string(inputs[i].size()) +
                                        " tokens but one input holds at most " + std::to_string(n_ctx_));
        }
        for (llama_token t : inputs[i]) {
            if (!model_.valid_token(t)) throw InvalidRequest(where + ": unknown token id " + std::to_string(t));
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    ensure_context();
    std::vector<float> out(inputs.size() * width);
    // Pack inputs into decodes of at most max_sequences_ sequences and n_ctx tokens.
    size_t first = 0;
    while (first < inputs.size()) {
        size_t count = 0, tokens = 0;
        while (first + count < inputs.size() && count < max_sequences_ &&
               tokens + inputs[first + count].size() <= static_cast<size_t>(n_ctx_)) {
            tokens += inputs[first + count].size();
            ++count;
        }
        run_batch(inputs, first, count, width, normalize, out);
        first += count;
    }
    return out;
}

void Embedder::run_batch(const std::vector<std::vector<llama_token>> & inputs, size_t first, size_t count,
                         size_t width, bool normalize, std::vector<float> & out) {
    llama_memory_clear(llama_get_memory(ctx_), true);
    batch_.n_tokens = 0;
    for (size_t s = 0; s < count; ++s) {
        const auto & tokens = inputs[first + s];
        for (size_t p = 0; p < tokens.size(); ++p) {
            const int32_t i = batch_.n_tokens++;
            batch_.token[i] = tokens[p];
            batch_.pos[i] = static_cast<llama_pos>(p);
            batch_.n_seq_id[i] = 1;
            batch_.seq_id[i][0] = static_cast<llama_seq_id>(s);
            batch_.logits[i] = true;
        }
    }
    const int32_t rc = llama_decode(ctx_, batch_);
    if (rc != 0) throw EngineError("embedding failed: llama_decode returned " + std::to_string(rc));
    for (size_t s = 0; s < count; ++s) {
        const float * v = llama_get_embeddings_seq(ctx_, static_cast<llama_seq_id>(s));
        if (!v) throw EngineError("embedding failed: no pooled output");
        double norm = 0.0;
        for (size_t k = 0; k < width && normalize; ++k) norm += double(v[k]) * v[k];
        const float scale = normalize && norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 1.0f;
        float * row = out.data() + (first + s) * width;
        for (size_t k = 0; k < width; ++k) row[k] = v[k] * scale;
    }
}

}  // namespace llamaserve
