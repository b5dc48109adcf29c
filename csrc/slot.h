// One sequence of the shared context: the request it serves and where it stands.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cache_reuse.h"
#include "llama.h"
#include "prefix_cache.h"
#include "reasoning.h"
#include "sampling.h"
#include "speculation.h"
#include "text_decoder.h"
#include "token_stream.h"

namespace llamaserve {

class Model;

constexpr int32_t kMaxTopLogprobs = 20;  // alternatives a request may ask for per token

// Token ids held natively, made once and shared (a prediction for all of a request's choices).
struct TokenIds {
    std::vector<llama_token> ids;
};

// A validated request, ready for the scheduler: prompt already tokenized, sampler built.
struct Request {
    std::vector<llama_token> prompt;
    std::unique_ptr<Sampler> sampler;
    int32_t max_tokens = -1;  // -1 = until the context is full
    std::vector<std::string> stop;
    int32_t logprobs = -1;  // see GenerationOptions::logprobs
    bool post_sampling_probs = false;  // see GenerationOptions::post_sampling_probs
    bool return_progress = false;      // see GenerationOptions::return_progress
    int32_t slot = -1;                 // see GenerationOptions::slot
    std::chrono::steady_clock::time_point started_at;  // when a slot took it (its prefill's start)
    bool cache_prompt = true;
    bool speculative = true;  // drafts may be verified for it (when the engine speculates)
    std::shared_ptr<const TokenIds> prediction;  // text the output will largely repeat (a draft source)
    size_t prediction_cursor = 0;         // where the last draft taken from it ended
    std::vector<llama_token> preserved;   // sorted: control tokens that come out as their text
    Reasoning reasoning;                  // a reasoning model's thinking (none by default)
    std::shared_ptr<TokenStream> stream;
};

class Slot {
public:
    // `park`: a second sequence of the same KV stream that holds reused chunks until the
    // prefill reaches them (-1: none, chunks can only follow the prefix directly).
    explicit Slot(llama_seq_id seq, llama_seq_id park = -1) : seq_(seq), park_(park) {}

    llama_seq_id seq() const { return seq_; }
    bool busy() const { return request_ != nullptr; }
    bool prefilling() const { return n_prompt_fed_ < request_->prompt.size(); }
    int32_t prompt_left() const { return static_cast<int32_t>(request_->prompt.size() - n_prompt_fed_); }
    // Prompt tokens it would feed now: up to its next snapshot point; none while it follows.
    size_t prefill_ready() const;
    TokenStream & stream() { return *request_->stream; }

    const std::vector<llama_token> & prompt() const { return request_->prompt; }
    bool caching() const { return request_->cache_prompt; }
    uint64_t request_id() const { return request_->stream->id(); }
    size_t n_fed() const { return n_prompt_fed_; }
    // Cells this sequence holds (its prompt cache while idle).
    size_t n_cached() const { return cache_.size(); }
    const std::vector<llama_token> & cached_tokens() const { return cache_; }

    // How many leading tokens of `prompt` this slot's KV can serve: never all of them (the
    // last prompt token is always decoded, for its logits), and with a sliding window only
    // as far back as the cells the window has kept.
    size_t usable_prefix(const std::vector<llama_token> & prompt, llama_memory_t mem, int32_t n_swa) const;
    bool has_cache() const { return !cache_.empty(); }
    // Frees an idle slot's cells (its prompt cache).
    void drop_cache(llama_context * ctx);

    // Takes the request; keeps the plan's prefix of cached tokens and moves its chunks to
    // their new positions (parked until the prefill reaches them); drops the rest.
    void start(std::unique_ptr<Request> request, llama_context * ctx, const ReusePlan & plan);
    // Hands the parked chunks that the prefill has reached to the sequence (each step).
    void unpark_due(llama_context * ctx);
    size_t reused_tokens() const { return reused_tokens_; }
    // Prompt tokens the cache serves: its prefix, and the chunks reused past a divergence.
    size_t served_from_cache() const { return static_cast<size_t>(cached_prompt_tokens_); }
    // The prompt's progress now, sent to a request that asked for it.
    void report_progress() const;
    bool has_parked() const { return !parked_.empty(); }
    // Where the prompt left the cache, reported with the request's stats.
    void set_departure(CacheDeparture departure) { departure_ = std::move(departure); }
    // Replaces this sequence's KV with a host snapshot's first `reuse` tokens (false, and
    // an empty sequence, if llama.cpp refuses it).
    bool restore(llama_context * ctx, const PrefixSnapshot & snapshot, size_t reuse);
    // This sequence's KV as it stands, for the host cache, in `buffer` (sized by
    // llama_state_seq_get_size).
    PrefixSnapshot snapshot(llama_context * ctx, std::vector<uint8_t> buffer) const;

    // Prefill pauses at `position` so that the engine can snapshot the prefix there.
    void add_checkpoint(size_t position);
    // The prefill stands at its next checkpoint (the engine takes it, then calls passed).
    bool at_checkpoint() const;
    void passed_checkpoint();
    // Waits, feeding nothing, until `leader` has prefilled to `position` (and snapshot it).
    void follow(const Slot & leader, size_t position);
    bool following() const { return leader_ != nullptr; }
    // Whether the leader is done with what this slot waits for (or gone).
    bool leader_done() const;
    void stop_following() { leader_ = nullptr; }
    bool is_leader_of(size_t position) const;

    // Speculation: while decoding, the slot may offer drafted tokens to verify with its
    // pending one.
    bool speculative() const { return request_->speculative && !prefilling(); }
    // Most drafted tokens that fit: the context's cells, and max_tokens (a draft never
    // runs past the last token the request may emit).
    int32_t draft_room(int32_t n_ctx_seq) const;
    // The tokens so far: those with KV, then the pending one (what a draft continues).
    const std::vector<llama_token> & history();
    const std::vector<llama_token> & prediction() const {
        static const std::vector<llama_token> kNone;
        return request_->prediction ? request_->prediction->ids : kNone;
    }
    size_t & prediction_cursor() { return request_->prediction_cursor; }
    std::vector<llama_token> & draft() { return draft_; }
    Acceptance & acceptance() { return acceptance_; }
    // The kind of this step's draft (a DraftSource), for the engine's record of each kind.
    int32_t draft_source() const { return draft_source_; }
    void set_draft_source(int32_t source) { draft_source_ = source; }
    int32_t accepted_tokens() const { return n_accepted_; }  // drafted tokens the model chose so far
    int32_t generated_tokens() const { return n_generated_; }  // of the running request, so far

    // Adds this slot's next tokens to the batch: the pending sampled token and its draft,
    // or up to `budget` prompt tokens (none when the budget is 0).
    void add_to_batch(llama_batch & batch, int32_t budget);
    int32_t batch_index() const { return batch_index_; }

    // After the step's decode: samples the next token, and while it equals the drafted
    // one, the token after it (one draw per emitted token, so a draft never changes what
    // is sampled, only how many tokens one step emits). The cells of rejected drafts are
    // freed. Returns the finish reason ("stop", "length") when the request is done.
    const char * advance(llama_context * ctx, const Model & model, int32_t n_ctx_seq, int32_t n_vocab);

    // Ends the request with `reason` and tells its consumer; the slot is free even if this
    // throws. The KV cells are freed, or kept as this slot's prompt cache when the request
    // asked for caching and completed.
    void finish(const std::string & reason, llama_context * ctx, const std::string & error = "",
                bool invalid_request = false);

private:
    // Handles a freshly sampled token (LLAMA_TOKEN_NULL: none was possible): emits its text
    // and returns the finish reason when the request is done, nullptr while it goes on.
    const char * accept(llama_token token, const Model & model, int32_t n_ctx_seq);
    // Samples at `batch_index_` (and records its log-probabilities when asked).
    llama_token sample(llama_context * ctx, int32_t n_vocab);

    // Frees this slot's parked chunks (if any).
    void clear_parked(llama_memory_t mem);
    // Moves the plan's chunks into place (see start); false if the memory refused.
    bool move_chunks(llama_memory_t mem, const ReusePlan & plan);

    const llama_seq_id seq_;
    const llama_seq_id park_;
    std::vector<ReuseChunk> parked_;  // chunks still to hand over, in prompt order (prompt_at: their place)
    size_t reused_tokens_ = 0;
    CacheDeparture departure_;
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
    std::vector<llama_token> draft_;    // in the batch after the pending token
    std::vector<llama_token> history_;  // see history()
    Acceptance acceptance_;
    int32_t draft_source_ = 0;
    int32_t n_drafted_ = 0;
    int32_t n_accepted_ = 0;
    std::vector<size_t> checkpoints_;  // ascending prompt positions still to snapshot
    const Slot * leader_ = nullptr;    // see follow()
    uint64_t leader_request_ = 0;
    size_t leader_position_ = 0;
};

}  // namespace llamaserve
