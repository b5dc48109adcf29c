// Sentence embeddings: a llama_context of its own on an engine's model (the weights are
// shared), pooled as the GGUF says (mean for a generative model, which says nothing).
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
    // n_ctx: the longest input, in tokens; the context is made on the first embed().
    Embedder(const Model & model, int32_t n_ctx, int32_t n_threads);
    ~Embedder();
    Embedder(const Embedder &) = delete;
    Embedder & operator=(const Embedder &) = delete;

    // One L2-normalized vector of n_embd() floats per input, row after row.
    // InvalidRequest for an empty input or an unknown token id, ContextLengthExceeded for
    // an input longer than n_ctx. One call at a time (a mutex); the GIL is the caller's.
    std::vector<float> embed(const std::vector<std::vector<llama_token>> & inputs);

    int32_t n_embd() const;
    int32_t n_ctx() const { return n_ctx_; }
    std::string pooling() const;  // mean | cls | last

private:
    void ensure_context();
    void run_batch(const std::vector<std::vector<llama_token>> & inputs, size_t first, size_t count,
                   std::vector<float> & out);

    const Model & model_;
    const int32_t n_ctx_;
    const int32_t n_threads_;
    enum llama_pooling_type pooling_;  // "enum": llama.h has a function of that name too
    llama_context * ctx_ = nullptr;
    llama_batch batch_{};
    std::mutex mu_;
};

}  // namespace llamaserve
