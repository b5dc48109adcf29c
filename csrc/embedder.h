// Sentence embeddings and reranking scores: a llama_context of its own on an engine's model
// (the weights are shared), pooled as the GGUF says (mean for a generative model, which says
// nothing; rank for a reranker, whose pooled output is its scores).
// Its own context keeps embedding requests out of the scheduler: the slots go on decoding
// while a batch of texts is embedded on the caller's thread.
#pragma once
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "llama.h"
#include "model_info.h"

namespace llamaserve {

class Embedder {
public:
    // n_ctx: the longest input, in tokens; the context is made on the first call.
    // rank: score inputs with pooling RANK whatever the GGUF says (llama-server's --reranking:
    // a model without a classification head scores with its pooled hidden state's first value).
    Embedder(const Model & model, int32_t n_ctx, int32_t n_threads, bool rank);
    ~Embedder();
    Embedder(const Embedder &) = delete;
    Embedder & operator=(const Embedder &) = delete;

    // One L2-normalized vector of n_embd() floats per input, row after row.
    // InvalidRequest for an empty input, an unknown token id or a reranking model,
    // ContextLengthExceeded for an input longer than n_ctx. One call at a time (a mutex);
    // the GIL is the caller's.
    std::vector<float> embed(const std::vector<std::vector<llama_token>> & inputs);

    // A reranker's scores: n_scores() floats per input (a query and document framed as one
    // sequence), as the classification head gives them. InvalidRequest unless pooling is RANK.
    std::vector<float> score(const std::vector<std::vector<llama_token>> & inputs);

    int32_t n_embd() const;
    int32_t n_scores() const;
    int32_t n_ctx() const { return n_ctx_; }
    std::string pooling() const;  // mean | cls | last | rank

private:
    std::vector<float> run(const std::vector<std::vector<llama_token>> & inputs, size_t width, bool normalize);
    void ensure_context();
    void run_batch(const std::vector<std::vector<llama_token>> & inputs, size_t first, size_t count,
                   size_t width, bool normalize, std::vector<float> & out);

    const Model & model_;
    const int32_t n_ctx_;
    const int32_t n_threads_;
    enum llama_pooling_type pooling_;  // "enum": llama.h has a function of that name too
    const size_t max_sequences_;  // in one decode
    llama_context * ctx_ = nullptr;
    llama_batch batch_{};
    std::mutex mu_;
};

}  // namespace llamaserve
