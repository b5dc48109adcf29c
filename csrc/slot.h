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

constexpr int32_t kMaxTopLogprobs = 20;  // alternatives a request may ask for per token

// A validated request, ready for the scheduler: prompt already tokenized, sampler built.
struct Request {
    std::vector<llama_token> prompt;
    std::unique_ptr<Sampler> sampler;
    int32_t max_tokens = -1;  // -1 = until the context is full
    std::vector<std::string> stop;
    int32_t logprobs = -1;  // see GenerationOptions::logprobs
    bool cache_prompt = false;
    std::shared_ptr<TokenStream> stream;
};

class Slot {
public:
    explicit Slot(llama_seq_id seq) : seq_(seq) {}

    llama_seq_id seq() const { return seq_; }
    bool busy() const { return request_ != nullptr; }
    bool prefilling() const { return n_prompt_fed_ < request_->prompt.size(); }
    int32_t prompt_left() const { return static_cast<int32_t>(request_->prompt.size() - n_prompt_fed_); }
    TokenStream & stream() { return *request_->stream; }

    // How many leading prompt tokens this slot's cached KV could serve (never all of
    // them: the last prompt token is always decoded, for its logits).
    size_t reusable_prefix(const std::vector<llama_token> & prompt) const;
    bool has_cache() const { return !cache_.empty(); }

    // Takes the request; keeps the cached KV prefix it may reuse and drops the rest.
    void start(std::unique_ptr<Request> request, llama_context * ctx, int32_t n_swa);

    // Adds this slot's next tokens to the batch: the pending sampled token, or up to
    // `budget` prompt tokens (none when the budget is 0).
    void add_to_batch(llama_batch & batch, int32_t budget);
    int32_t batch_index() const { return batch_index_; }

    // Handles a freshly sampled token (LLAMA_TOKEN_NULL: none was possible): emits its text
    // and returns the finish reason ("stop", "length") when the request is done, nullptr
    // while it goes on.
    const char * accept(llama_token token, const Model & model, int32_t n_ctx_seq);
    // Samples this slot's next token (and records its log-probabilities when asked).
    llama_token sample(llama_context * ctx, int32_t n_vocab);

    // Ends the request with `reason` and tells its consumer; the slot is free even if this
    // throws. The KV cells are freed, or kept as this slot's prompt cache when the request
    // asked for caching and completed.
    void finish(const std::string & reason, llama_context * ctx, const std::string & error = "");

private:
    const llama_seq_id seq_;
    std::unique_ptr<Request> request_;
    std::unique_ptr<TextDecoder> decoder_;
    std::vector<llama_token> cache_;  // the tokens whose KV this sequence holds, in order
    size_t n_prompt_fed_ = 0;
    int32_t cached_prompt_tokens_ = 0;
    int32_t n_past_ = 0;
    int32_t n_generated_ = 0;
    llama_token pending_token_ = LLAMA_TOKEN_NULL;
    // The last text of a request that accept() ended: handed over with the end, in one step,
    // so a reader never sees the last piece without the end (and sends them as one event).
    std::string final_text_;
    int32_t batch_index_ = -1;
};

}  // namespace llamaserve
