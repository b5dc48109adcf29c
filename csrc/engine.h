// The engine: one model, one context with n_parallel sequence slots, and one scheduler
// thread that alone touches the context. Callers submit requests and read TokenStreams.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "llama.h"
#include "model_info.h"
#include "sampling.h"
#include "slot.h"
#include "token_stream.h"

namespace llamaserve {

struct EngineOptions {
    int32_t n_ctx = 4096;    // per request: prompt + completion tokens
    int32_t n_parallel = 4;  // sequences decoded together
    int32_t n_batch = 512;   // tokens per decode step (decoding slots + prefill chunks)
    int32_t n_threads = 0;   // 0 = all hardware threads
    int32_t n_gpu_layers = 0;
    int32_t max_queue = 256;  // requests waiting for a slot before QueueFull
    // One KV buffer shared by all slots, or one per slot (each attends over its own cells
    // only: less attention work when many slots decode together).
    bool kv_unified = false;
};

// Bytes one engine holds on one buffer type (a device, or host memory).
struct MemoryUse {
    std::string buffer;
    uint64_t model = 0;    // weights
    uint64_t context = 0;  // KV cache and other per-context state
    uint64_t compute = 0;  // compute scratch buffers
};

struct GenerationOptions {
    int32_t max_tokens = -1;  // -1 = until the context is full
    std::vector<std::string> stop;
    bool ignore_eos = false;
    bool cache_prompt = false;  // reuse a slot's KV for the prompt's longest cached prefix
    int32_t logprobs = -1;  // -1 = off; 0 = the sampled token's; N = and the top N alternatives
    bool add_special = true;    // BOS etc. as the model wants
    bool parse_special = true;  // "<start_of_turn>" in a prompt is the control token
};

class Engine {
public:
    Engine(const std::string & model_path, const EngineOptions & options);
    ~Engine();
    Engine(const Engine &) = delete;
    Engine & operator=(const Engine &) = delete;

    std::shared_ptr<TokenStream> submit(const std::string & prompt, const SamplingParams & sampling,
                                        const GenerationOptions & options,
                                        std::shared_ptr<AsyncNotifier> notifier);
    std::shared_ptr<TokenStream> submit_tokens(std::vector<llama_token> prompt,
                                               const SamplingParams & sampling,
                                               const GenerationOptions & options,
                                               std::shared_ptr<AsyncNotifier> notifier);

    const Model & model() const { return *model_; }
    const EngineOptions & options() const { return options_; }
    int32_t n_ctx_per_request() const { return options_.n_ctx; }
    size_t queue_depth() const;
    int32_t busy_slots() const { return busy_slots_.load(); }
    const std::vector<MemoryUse> & memory_use() const { return memory_use_; }

    // Stops the scheduler; unfinished requests end as "cancelled". Idempotent.
    void close();

private:
    // What the scheduler shares with callers: the lock, its wake-up and the requests waiting
    // for a slot. Streams hold it weakly, so that a cancel takes its request out of the
    // queue at once, even while the engine closes or after it is gone.
    struct Waiting {
        std::mutex mu;
        std::condition_variable cv;
        std::deque<std::unique_ptr<Request>> queue;
        std::atomic<bool> stopping{false};  // written under mu; read by the decode abort check

        void withdraw(uint64_t stream_id);
    };

    void run();
    void step();
    void admit_locked();
    Slot * pick_slot(const Request & request);
    void build_batch();
    void decode_and_sample();
    void shut_down();
    void finish_slot(Slot & slot, const std::string & reason, const std::string & error = "");
    // The exception barrier of one slot: whatever `work` throws ends that request alone.
    template <typename Work>
    bool guarded(Slot & slot, const char * what, Work && work);
    void fail(Slot & slot, const char * what, const char * why) noexcept;
    // Lets llama_decode stop between graph nodes when nobody wants the step any more.
    static bool abort_decode(void * engine);

    EngineOptions options_;
    std::unique_ptr<Model> model_;
    llama_context * ctx_ = nullptr;
    ggml_threadpool_t threadpool_ = nullptr;
    int32_t n_swa_ = 0;  // the model's attention window (0: none)
    std::vector<MemoryUse> memory_use_;  // fixed once the context exists
    std::vector<Slot> slots_;
    llama_batch batch_{};
    std::vector<Slot *> in_batch_;  // the slots with tokens in batch_ (scheduler thread only)

    std::shared_ptr<Waiting> waiting_ = std::make_shared<Waiting>();
    std::atomic<int32_t> busy_slots_{0};
    std::atomic<uint64_t> next_id_{1};
    std::thread scheduler_;
};

}  // namespace llamaserve
