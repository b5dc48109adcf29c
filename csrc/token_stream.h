// The per-request channel from the scheduler thread to its consumer, and the one
// notifier per event loop that tells asyncio which streams have something new.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace llamaserve {

// Wakes an event loop through a pipe it watches: one byte per burst, not per token.
class AsyncNotifier {
public:
    AsyncNotifier();
    ~AsyncNotifier();
    AsyncNotifier(const AsyncNotifier &) = delete;
    AsyncNotifier & operator=(const AsyncNotifier &) = delete;

    int fd() const { return read_fd_; }
    void notify(uint64_t stream_id);
    // Empties the pipe and returns the streams that became ready since the last call.
    std::vector<uint64_t> take_ready();

private:
    int read_fd_ = -1;
    int write_fd_ = -1;
    std::mutex mu_;
    std::vector<uint64_t> ready_;
    bool signalled_ = false;
};

// The model's log-probability of one generated token, and of its top alternatives.
struct TokenLogprob {
    int32_t token = 0;
    float logprob = 0.0f;
    std::vector<std::pair<int32_t, float>> top;
};

// How far a request's prompt is (llama-server's prompt_progress): sent when its prefill starts
// and after each chunk of it, to a request that asked (GenerationOptions::return_progress).
struct PromptProgress {
    int32_t total = 0;      // prompt tokens
    int32_t cache = 0;      // of which served from a cache
    int32_t processed = 0;  // of which in the KV now (the cached ones included)
    double ms = 0.0;        // since the prefill started
};

struct StreamStats {
    int32_t prompt_tokens = 0;
    int32_t completion_tokens = 0;
    int32_t cached_tokens = 0;  // prompt tokens served from a slot's prompt cache (reused ones too)
    int32_t reused_tokens = 0;  // of which reused past a divergence (moved to new positions)
    int32_t cache_departure = -1;      // the first prompt token where the prompt left the cache (-1: none)
    std::string cache_departure_text;  // a short excerpt of the prompt there
    int32_t drafted_tokens = 0;   // speculation: tokens verified beside the sampled ones
    int32_t accepted_tokens = 0;  // of which the model chose (they are in the completion)
    int32_t reasoning_tokens = 0;  // of the completion's tokens, those of thinking
    double time_to_first_token = -1.0;  // seconds from submit; -1 if no token came
    double total_time = 0.0;            // seconds from submit to finish
    std::string finish_reason;          // stop | length | cancelled | error
    std::string error;
    bool invalid_request = false;  // the error is the request's fault (InvalidRequest, 400)
};

class TokenStream {
public:
    using Clock = std::chrono::steady_clock;

    TokenStream(uint64_t id, std::shared_ptr<AsyncNotifier> notifier);

    uint64_t id() const { return id_; }

    // Producer side: the scheduler thread only.
    void push(std::string piece);
    // Ends the stream; `last_piece` (if any) is delivered together with the end.
    void finish(StreamStats stats, std::string last_piece = "");
    void mark_token();  // a token was generated now (its time is kept: time to first token, gaps)
    void push_logprob(TokenLogprob record);
    void push_progress(PromptProgress progress);  // wakes the consumer, as a piece does

    // Consumer side.
    enum class Wait { Piece, Finished, Timeout };
    Wait wait_next(std::string & out, std::chrono::milliseconds timeout);
    // Never blocks: the pieces so far, and whether the stream had finished before them.
    std::vector<std::string> drain(bool & finished);
    bool finished() const;
    StreamStats stats() const;
    std::vector<TokenLogprob> take_logprobs();  // records since the last call, in order
    std::vector<PromptProgress> take_progress();  // reports since the last call, in order
    std::vector<float> token_times() const;  // seconds from submit at which each token came

    // The first cancel also runs the hook (the engine's: a queued request leaves the queue).
    void cancel();
    bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
    // Set once, before the stream is shared with another thread.
    void on_cancel(std::function<void()> hook) { on_cancel_ = std::move(hook); }

    const Clock::time_point submitted_at = Clock::now();

private:
    void notify_locked();

    const uint64_t id_;
    const std::shared_ptr<AsyncNotifier> notifier_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::string> pieces_;
    std::vector<TokenLogprob> logprobs_;
    std::vector<PromptProgress> progress_;
    std::vector<float> token_times_;
    bool finished_ = false;
    bool notified_ = false;  // our id is already in the notifier's ready list
    StreamStats stats_;
    std::atomic<bool> cancelled_{false};
    std::function<void()> on_cancel_;
};

}  // namespace llamaserve
