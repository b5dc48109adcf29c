// One sequence of the shared context: the request it serves and where it stands.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "sampling.h"
#include "text_decoder.h"
#include "token_stream.h"

namespace llamaserve {

class Model;

// A validated request, ready for the scheduler: prompt already tokenized, sampler built.
constexpr int32_t kMaxTopLogprobs = 20;

struct Request {
    std::vector<llama_token> prompt;
    std::unique_ptr<Sampler> sampler;
    int32_t max_tokens = -1;  // -1 = until the context is full
    std::vector<std::string> stop;
    int32_t logprobs = -1;  // see GenerationOptions::logprobs
    std::shared_ptr<TokenStream> stream;
};

class Slot {
public:
    explicit Slot(llama_seq_id seq) : seq_(seq) {}

    llama_seq_id seq() const { return seq_; }
    bool busy() const { return request_ != nullptr; }
    bool prefilling() const { return n_prompt_fed_ < request_->prompt.size(); }
    TokenStream & stream() { return *request_->stream; }

    void start(std::unique_ptr<Request> request);

    // Adds this slot's next tokens to the batch: the pending sampled token, or up to
    // `budget` prompt tokens. Returns how many it added.
    int32_t add_to_batch(llama_batch & batch, int32_t budget);
    int32_t batch_index() const { return batch_index_; }

    // Handles a freshly sampled token: emits its text and returns the finish reason
    // ("stop", "length") when the request is done, nullptr while it goes on.
    const char * accept(llama_token token, const Model & model, int32_t n_ctx_seq);
    // Samples this slot's next token (and records its log-probabilities when asked).
    llama_token sample(llama_context * ctx, int32_t n_vocab);

    // Ends the request with `reason`, tells its consumer, and frees the slot's KV cells.
    void finish(const std::string & reason, llama_context * ctx, const std::string & error = "");

private:
    const llama_seq_id seq_;
    std::unique_ptr<Request> request_;
    std::unique_ptr<TextDecoder> decoder_;
    size_t n_prompt_fed_ = 0;
    int32_t n_past_ = 0;
    int32_t n_generated_ = 0;
    llama_token pending_token_ = LLAMA_TOKEN_NULL;
    int32_t batch_index_ = -1;
};

}  // namespace llamaserve
