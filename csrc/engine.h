// The engine: one model, one context with n_parallel sequence slots, and one scheduler
// thread that alone touches the context. Callers submit requests and read TokenStreams.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "draft_model.h"
#include "llama.h"
#include "model_info.h"
#include "prefix_cache.h"
#include "prefix_disk.h"
#include "sampling.h"
#include "slot.h"
#include "speculation.h"
#include "token_stream.h"

namespace llamaserve {

class Grammar;
class GrammarCache;
class GrammarVocab;

struct EngineOptions {
    int32_t n_ctx = 4096;    // per request: prompt + completion tokens
    int32_t n_kv = 0;        // KV cells in all, split per slot or one pool (0: n_ctx for every slot)
    int32_t n_parallel = 4;  // sequences decoded together
    int32_t n_batch = 512;   // tokens per decode step (decoding slots + prefill chunks)
    int32_t n_threads = 0;   // 0 = all hardware threads
    int32_t n_gpu_layers = 0;
    int32_t max_queue = 256;  // requests waiting for a slot before QueueFull
    // One pool of cells that requests take by need, or an equal share per slot. Per-slot
    // streams decode faster with many slots (each attends over its own cells only:
    // llama-batched-bench, 16 x 128+64 on Gemma 3 270M, 122 against 112 tok/s).
    bool kv_unified = false;
    uint64_t cache_ram = 0;  // bytes of host memory for prefix snapshots (0: no host tier)
    // A folder for prefix snapshots on disk (empty: no disk tier; prefix_disk.h), and the bytes
    // its snapshot files may take in all.
    std::string cache_dir;
    uint64_t cache_disk = 0;
    // Reuse past a divergence (cache_reuse.h): the shortest cached chunk, in tokens, that a
    // prompt reuses after it left the cache (0: off). With one KV pool (kv_unified) a chunk
    // may come after new tokens; with a share per slot only right after the cached prefix.
    // Off for sliding-window (without swa_full) and recurrent models: their KV cannot move.
    int32_t cache_reuse = 0;
    std::string type_k = "f16";  // KV cache types: f32, f16, bf16, q8_0, q4_0, ...
    std::string type_v = "f16";
    std::string flash_attn = "auto";  // auto, on, off
    // Full-size cache for sliding-window layers: more memory, prefixes reusable anywhere.
    bool swa_full = false;
    // Speculative decoding: "ngram" drafts from the request's own prompt and output,
    // "draft" from `draft_model` (same vocabulary), "off" never drafts.
    std::string spec = "ngram";
    std::string draft_model;
    int32_t spec_draft_max = 16;  // drafted tokens one slot may verify in one step
    // Time one request's grammar may take in one step (past it the request fails, so that it
    // cannot stall the others); 0: no limit. Measured costs: README, "Grammars".
    int32_t grammar_budget_ms = 250;
};

// Drafted tokens one step verifies in all: each wants a row of logits (n_vocab floats,
// 1 MiB for Gemma 3), reserved when the context is made.
constexpr int32_t kMaxStepDrafts = 32;

// What speculation has done since the engine started, for metrics.
struct SpeculationStats {
    uint64_t drafted = 0;   // tokens verified beside the sampled ones
    uint64_t accepted = 0;  // of which the model chose
};

// What the scheduler's decode loop has done since the engine started, for llama-server's
// metrics (llamacpp:n_decode_total and its neighbours).
struct DecodeStats {
    uint64_t decodes = 0;           // llama_decode calls (the draft model's are not counted)
    uint64_t busy_slots = 0;        // summed over those calls: requests with tokens in each
    uint64_t verify_steps = 0;      // per request, the steps that verified a draft
    uint64_t prompt_tokens = 0;     // prompt tokens decoded (not those served from a cache)
    uint64_t generated_tokens = 0;  // tokens sampled
    // A step's time, shared between its prompt and its generation tokens by their numbers.
    double prompt_seconds = 0.0;
    double generation_seconds = 0.0;
    uint64_t longest_sequence = 0;  // the most cells (prompt and generation) one request held
};

// What the KV cache and the prefix cache hold, for health and metrics.
struct CacheStats {
    int64_t kv_cells = 0;       // in all
    int64_t kv_cells_used = 0;  // held by running requests and idle slots' prompt caches
    int64_t kv_cells_reserved = 0;  // promised to running requests (prompt + max_tokens)
    uint64_t prompt_tokens = 0;     // prompt tokens of every started request
    uint64_t cached_tokens = 0;     // of which served from a cache
    uint64_t requests_hit = 0;      // requests that reused a cached prefix
    uint64_t reused_tokens = 0;     // of cached_tokens, those reused past a divergence
    uint64_t requests_departed = 0;  // requests whose prompt left a cached sequence before its end
    PrefixCacheStats host;
    DiskTierStats disk;
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
    bool cache_prompt = true;  // reuse the prompt's longest cached prefix (a slot's, or the host cache's)
    bool speculative = true;   // drafts may speed it up (when the engine speculates)
    std::string prediction;    // text the output will largely repeat: n-gram drafts come from it too
    // The prediction tokenized once for all the choices that share it (instead of `prediction`).
    std::shared_ptr<TokenIds> prediction_tokens;
    int32_t logprobs = -1;  // -1 = off; 0 = the sampled token's; N = and the top N alternatives
    // The log-probabilities after the sampler chain (top-k, top-p, min-p, temperature), over the
    // tokens it left, instead of the model's own (llama-server's post_sampling_probs).
    bool post_sampling_probs = false;
    bool return_progress = false;  // the prompt's progress reported as it is processed (PromptProgress)
    // The slot that runs it (llama-server's id_slot), waiting for it while it is busy; -1: the
    // slot whose cache serves most of the prompt.
    int32_t slot = -1;
    bool add_special = true;    // BOS etc. as the model wants
    bool parse_special = true;  // "<start_of_turn>" in a prompt is the control token
    // Control tokens written out as text (a chat format's markers, for its output parser);
    // the others come out as nothing, as llama.cpp renders them.
    std::vector<int32_t> preserved_tokens;
    // Reasoning models (see reasoning.h): the thinking markers, whether the prompt opened the
    // thinking, and its budget in tokens (-1: none), after which the engine closes it.
    std::string reasoning_start;
    std::string reasoning_end;
    bool reasoning_open = false;
    int32_t reasoning_budget = -1;
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

    // Compiles a grammar as submit would (InvalidRequest when it is refused), so that a caller
    // can do it off its event loop; submit then finds it compiled.
    void check_grammar(const std::string & grammar, const std::string & root = "root");

    const Model & model() const { return *model_; }
    const EngineOptions & options() const { return options_; }
    int32_t n_ctx_per_request() const { return n_ctx_seq_; }
    CacheStats cache_stats() const;
    SpeculationStats speculation_stats() const;
    DecodeStats decode_stats() const;
    // The speculation in effect: options().spec, or "off" for a model whose KV cannot be cut
    // back (recurrent or hybrid: rejected drafts could not be removed).
    const std::string & speculation() const { return spec_; }
    // The reuse past a divergence in effect: the shortest chunk (0: off, also where the KV
    // cannot move: a sliding window without swa_full, a recurrent state, M-RoPE), and whether a
    // chunk may follow new tokens (one KV pool) or only the cached prefix.
    size_t cache_reuse() const { return reuse_chunk_; }
    bool cache_reuse_after_new_tokens() const { return reuse_gaps_ && reuse_chunk_ > 0; }
    size_t queue_depth() const;
    int32_t busy_slots() const { return busy_slots_.load(); }
    const std::vector<MemoryUse> & memory_use() const { return memory_use_; }

    // llama-server's /slots?action=save|restore|erase (slot_files.cpp): a slot's cached prompt
    // to a snapshot file and back, run on the scheduler thread between steps while the caller
    // waits. A restored file goes to the prefix cache (slots are chosen by prefix), where the
    // next prompt it starts is served from it. InvalidRequest for a busy or unknown slot, a file
    // that is not a snapshot of this model and KV settings, or one that cannot be written.
    struct SlotFile {
        int32_t tokens = 0;
        uint64_t bytes = 0;
        double ms = 0.0;
    };
    SlotFile save_slot(int32_t slot, const std::string & path);
    SlotFile restore_slot(int32_t slot, const std::string & path);
    int32_t erase_slot(int32_t slot);  // the tokens dropped from the slot's cache

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
        // Work for the scheduler thread between steps (on_scheduler); dropped unrun at close,
        // which fails its caller's wait.
        std::deque<std::function<void()>> tasks;
        std::atomic<bool> stopping{false};  // written under mu; read by the decode abort check

        void withdraw(uint64_t stream_id);
    };

    void run();
    void step();
    template <class F>
    auto on_scheduler(F work) -> decltype(work());
    Slot & idle_slot(int32_t slot);
    // Takes queued requests into free slots (under the queue lock: cheap work only).
    void admit_locked(std::vector<std::pair<Slot *, std::unique_ptr<Request>>> & admitted);
    Slot * pick_slot(const Request & request, const std::vector<Slot *> & taken);
    // Cells a request may grow to (prompt and completion), for the shared KV budget.
    int64_t cells_needed(const Request & request) const;
    // Frees idle slots' prompt caches, least recently used first, until the shared pool
    // holds every running and `taken` slot's promised cells; false if it cannot.
    bool make_room(const std::vector<Slot *> & taken);
    // Puts the request's longest cached prefix (its slot's own, or the host cache's) in
    // place, and plans the snapshots its prefill will take.
    // (`request` stays with the caller if this throws before the slot takes it.)
    void start_request(Slot & slot, std::unique_ptr<Request> & request);
    void plan_snapshots(Slot & slot);
    // The cached prefix and the chunks past it that `slot` can serve `prompt` with.
    ReusePlan reuse_plan(const Slot & slot, const std::vector<llama_token> & prompt) const;
    // Where `prompt` left the slot's cache or a host snapshot, whichever it shares more with.
    CacheDeparture departure(const Slot & slot, const std::vector<llama_token> & prompt) const;
    void take_snapshots();
    void resume_followers();
    void publish_cache_use();
    // Chooses the step's tokens: one per decoding slot (and drafts), then prompt chunks.
    void plan_step();
    // Fills batch_ with the planned tokens of the prompt slots, or of the decoding ones.
    bool fill_pass(bool prompts);
    // Grants drafted tokens to the `decoding` slots of a step without prompt tokens (see
    // plan_drafts), at most `room`, and fills them in.
    void add_drafts(int32_t decoding, int32_t room);
    void decode_and_sample();
    void shut_down();
    void finish_slot(Slot & slot, const std::string & reason, const std::string & error = "",
                     bool invalid_request = false);
    std::unique_ptr<Grammar> compile_grammar(const std::string & grammar, const std::string & root);
    // Made by the first grammar: its tables take tens of MB for a 262k vocabulary, resident
    // for the engine's life, which a server that never constrains output should not pay.
    const std::shared_ptr<const GrammarVocab> & grammar_vocab();
    // The exception barrier of one slot: whatever `work` throws ends that request alone.
    template <typename Work>
    bool guarded(Slot & slot, const char * what, Work && work);
    // `why` alone for a request's own fault (it names the parameter); else `what: why`.
    void fail(Slot & slot, const char * what, const char * why, bool invalid_request = false) noexcept;
    // Lets llama_decode stop between graph nodes when nobody wants the step any more.
    static bool abort_decode(void * engine);

    EngineOptions options_;
    std::unique_ptr<Model> model_;
    std::once_flag grammar_vocab_made_;
    std::shared_ptr<const GrammarVocab> grammar_vocab_;
    std::unique_ptr<GrammarCache> grammar_cache_;
    llama_context * ctx_ = nullptr;
    ggml_threadpool_t threadpool_ = nullptr;
    int32_t n_swa_ = 0;  // the model's attention window (0: none)
    int32_t n_ctx_seq_ = 0;  // cells one request may use
    bool generates_ = true;  // causal attention: an encoder (BERT) only embeds or reranks
    size_t reuse_chunk_ = 0;      // options_.cache_reuse where positions can shift, else 0
    bool reuse_gaps_ = false;     // slots park chunks in a second sequence (one KV pool)
    PrefixCache prefix_cache_;
    std::vector<uint64_t> slot_used_at_;  // admission number of each slot's last request
    uint64_t admissions_ = 0;
    std::vector<int64_t> reserved_;  // cells promised to each slot's running request
    std::atomic<int64_t> kv_cells_used_{0};
    std::atomic<int64_t> kv_cells_reserved_{0};
    std::atomic<uint64_t> prompt_tokens_{0};
    std::atomic<uint64_t> cached_tokens_{0};
    std::atomic<uint64_t> requests_hit_{0};
    std::atomic<uint64_t> reused_tokens_{0};
    std::atomic<uint64_t> requests_departed_{0};
    std::vector<MemoryUse> memory_use_;  // fixed once the context exists
    std::vector<Slot> slots_;
    llama_batch batch_{};
    uint64_t fingerprint_ = 0;  // of the model and KV settings: what a snapshot file is bound to
    std::vector<Slot *> in_batch_;  // the slots with tokens in batch_ (scheduler thread only)
    std::vector<Slot *> prefilled_;  // of which those with prompt tokens in it
    std::string spec_;  // see speculation()
    std::unique_ptr<DraftModel> draft_model_;
    StepCost step_cost_;
    Acceptance by_source_[kDraftSources];  // how each kind of draft fares, all slots together
    std::vector<int32_t> step_tokens_;  // planned tokens of each slot this step (scheduler thread only)
    std::atomic<uint64_t> drafted_{0};
    std::atomic<uint64_t> accepted_{0};
    int32_t step_prompt_tokens_ = 0;  // of batch_ (scheduler thread only)
    mutable std::mutex decode_stats_mu_;  // the scheduler writes once a step, scrapes read
    DecodeStats decode_stats_;

    std::shared_ptr<Waiting> waiting_ = std::make_shared<Waiting>();
    std::atomic<int32_t> busy_slots_{0};
    std::atomic<uint64_t> next_id_{1};
    std::thread scheduler_;
};

}  // namespace llamaserve
