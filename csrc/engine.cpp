#include "engine.h"

#include <algorithm>
#include <chrono>
#include <exception>

#include "errors.h"
#include "grammar.h"
#include "grammar_cache.h"
#include "kv_fingerprint.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama-ext.h"
#include "ngram_draft.h"
#include "text_decoder.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamaserve {

namespace {

// Loading frees most of what it allocated on the way (the file's metadata, the scratch of the
// graph reservation), and glibc keeps freed pages resident until told: a server would hold
// them for nothing from its start on.
void return_freed_memory() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

// Without a threadpool of its own, ggml starts and joins its worker threads for every
// decode step; a persistent pool (as llama.cpp's tools use) keeps them, polling briefly.
ggml_threadpool_t new_cpu_threadpool(int32_t n_threads) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return nullptr;
    auto * make = reinterpret_cast<decltype(ggml_threadpool_new) *>(
        ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(cpu), "ggml_threadpool_new"));
    if (!make) return nullptr;
    auto params = ggml_threadpool_params_default(n_threads);
    return make(&params);
}

void free_cpu_threadpool(ggml_threadpool_t pool) {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    auto * release = reinterpret_cast<decltype(ggml_threadpool_free) *>(
        ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(cpu), "ggml_threadpool_free"));
    if (release) release(pool);
}

ggml_type kv_cache_type(const char * name, const std::string & type) {
    static const std::pair<const char *, ggml_type> kTypes[] = {
        {"f32", GGML_TYPE_F32},   {"f16", GGML_TYPE_F16},   {"bf16", GGML_TYPE_BF16},
        {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0}, {"q4_1", GGML_TYPE_Q4_1},
        {"iq4_nl", GGML_TYPE_IQ4_NL}, {"q5_0", GGML_TYPE_Q5_0}, {"q5_1", GGML_TYPE_Q5_1},
    };
    for (const auto & [label, value] : kTypes) {
        if (type == label) return value;
    }
    throw InvalidRequest(std::string(name) + ": unknown KV cache type '" + type +
                         "' (f32, f16, bf16, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1)");
}

llama_flash_attn_type flash_attn_type(const std::string & mode) {
    if (mode == "auto") return LLAMA_FLASH_ATTN_TYPE_AUTO;
    if (mode == "on") return LLAMA_FLASH_ATTN_TYPE_ENABLED;
    if (mode == "off") return LLAMA_FLASH_ATTN_TYPE_DISABLED;
    throw InvalidRequest("flash_attn: must be auto, on or off");
}

// Prompt tokens after which a step takes no further prompt (see build_batch). Measured on the
// chat load (8 clients, ~19 new tokens a turn): TTFT p50 of later turns 0.76-0.90 s with no
// limit, 0.55 s at 24, 0.31-0.44 s at one prompt a step, aggregate tok/s within noise.
constexpr int32_t kStepPrefillTarget = 16;

// Prefixes shorter than this are not worth a snapshot (or a wait for one).
constexpr size_t kMinSnapshotTokens = 128;
// A snapshot or a wait must save at least this many tokens of prefill.
constexpr size_t kMinSnapshotGain = 64;

// Bytes of prompt text a cache departure quotes (usage, so a client finds the line).
constexpr size_t kDepartureExcerptBytes = 48;

// A request that never reached a slot.
void end_unstarted(Request & request) {
    StreamStats stats;
    stats.prompt_tokens = static_cast<int32_t>(request.prompt.size());
    stats.finish_reason = "cancelled";
    request.stream->finish(std::move(stats));
}

}  // namespace

Engine::Engine(const std::string & model_path, const EngineOptions & options)
    : options_(options), prefix_cache_(options.cache_ram) {
    if (options_.n_parallel < 1) throw InvalidRequest("n_parallel: must be at least 1");
    if (options_.n_ctx < 8) throw InvalidRequest("n_ctx: must be at least 8");
    if (options_.n_kv < 0) throw InvalidRequest("n_kv: must not be negative");
    if (options_.n_kv == 0) {
        const int64_t cells = static_cast<int64_t>(options_.n_ctx) * options_.n_parallel;
        if (cells > INT32_MAX) throw InvalidRequest("n_ctx * n_parallel: more KV cells than llama.cpp can hold");
        options_.n_kv = static_cast<int32_t>(cells);
    }
    if (!options_.kv_unified && options_.n_kv / options_.n_parallel < 8) {
        throw InvalidRequest("n_kv: must be at least 8 cells per slot");
    }
    const ggml_type type_k = kv_cache_type("type_k", options_.type_k);
    const ggml_type type_v = kv_cache_type("type_v", options_.type_v);
    const llama_flash_attn_type flash_attn = flash_attn_type(options_.flash_attn);
    if (options_.n_batch < options_.n_parallel) {
        throw InvalidRequest("n_batch: must be at least n_parallel");
    }
    if (options_.max_queue < 0) throw InvalidRequest("max_queue: must not be negative");
    if (options_.spec != "off" && options_.spec != "ngram" && options_.spec != "draft") {
        throw InvalidRequest("spec: must be off, ngram or draft");
    }
    if ((options_.spec == "draft") != !options_.draft_model.empty()) {
        throw InvalidRequest("spec: 'draft' and a draft_model go together");
    }
    if (options_.spec_draft_max < 1 || options_.spec_draft_max > kMaxStepDrafts) {
        throw InvalidRequest("spec_draft_max: must be between 1 and " + std::to_string(kMaxStepDrafts));
    }
    if (options_.grammar_budget_ms < 0) throw InvalidRequest("grammar_budget_ms: must not be negative");
    if (!options_.cache_dir.empty() && options_.cache_disk == 0) {
        throw InvalidRequest("cache_disk: must be positive with a cache_dir");
    }
    if (options_.cache_reuse != 0 && options_.cache_reuse < kMinReuseChunk) {
        throw InvalidRequest("cache_reuse: must be 0 (off) or at least " + std::to_string(kMinReuseChunk) + " tokens");
    }
    if (options_.n_threads <= 0) {
        options_.n_threads = std::max(1u, std::thread::hardware_concurrency());
    }
    install_log_capture();
    ModelLoadOptions load;
    load.n_gpu_layers = options_.n_gpu_layers;
    model_ = std::make_unique<Model>(model_path, load);
    grammar_cache_ = std::make_unique<GrammarCache>();
    // Rejected drafts are cut off the KV: a recurrent state cannot be cut back.
    const bool can_cut_back = !llama_model_is_recurrent(model_->get()) && !llama_model_is_hybrid(model_->get());
    spec_ = can_cut_back ? options_.spec : "off";
    // Reused chunks move: a window cache has dropped the cells they attend to, a recurrent
    // state has no positions to move.
    const bool window = !options_.swa_full && llama_model_n_swa(model_->get()) > 0;
    const size_t reuse_chunk = can_cut_back && !window ? static_cast<size_t>(options_.cache_reuse) : 0;
    // One KV pool: each slot parks its chunks in a second sequence id of the same stream.
    reuse_gaps_ = reuse_chunk > 0 && options_.kv_unified &&
                  2 * static_cast<size_t>(options_.n_parallel) <= llama_max_parallel_sequences();

    auto params = llama_context_default_params();
    // One pool of cells (kv_unified) that requests take by need, or an equal share per slot.
    params.n_ctx = static_cast<uint32_t>(options_.n_kv);
    params.type_k = type_k;
    params.type_v = type_v;
    params.flash_attn_type = flash_attn;
    params.swa_full = options_.swa_full;
    params.n_batch = options_.n_batch;
    params.n_ubatch = std::min(options_.n_batch, 512);
    params.n_seq_max = options_.n_parallel * (reuse_gaps_ ? 2 : 1);
    // A step asks for one row of logits per slot, and one per drafted token: reserving
    // rows for a whole batch would cost n_batch x n_vocab floats (half a gigabyte for
    // Gemma's vocabulary).
    params.n_outputs_max = params.n_seq_max + (spec_ == "off" ? 0 : kMaxStepDrafts);  // llama.cpp reserves a row per sequence
    params.n_threads = options_.n_threads;
    params.n_threads_batch = options_.n_threads;
    params.kv_unified = options_.kv_unified;
    params.no_perf = true;
    const KvIdentity identity{model_path, options_.type_k, options_.type_v, options_.flash_attn,
                              options_.swa_full, options_.kv_unified ? 1u : params.n_seq_max};
    fingerprint_ = kv_fingerprint(identity);
    if (!options_.cache_dir.empty()) {
        // Before the context: a folder that cannot be used fails the load with nothing to free.
        prefix_cache_.attach_disk(std::make_unique<DiskPrefixTier>(options_.cache_dir, options_.cache_disk,
                                                                   fingerprint_));
    }
    ctx_ = llama_init_from_model(model_->get(), params);
    if (!ctx_) throw ModelLoadError("cannot create a context for " + model_path);
    threadpool_ = new_cpu_threadpool(options_.n_threads);
    if (threadpool_) llama_attach_threadpool(ctx_, threadpool_, threadpool_);

    generates_ = llama_get_causal_attn(ctx_);
    n_swa_ = options_.swa_full ? 0 : llama_model_n_swa(model_->get());
    const int32_t n_ctx_context = static_cast<int32_t>(llama_n_ctx(ctx_));  // llama.cpp pads it
    n_ctx_seq_ = std::min(options_.n_ctx, options_.kv_unified ? n_ctx_context : n_ctx_context / options_.n_parallel);
    prefix_cache_.allow_partial(n_swa_ == 0 && can_cut_back);
    reuse_chunk_ = llama_memory_can_shift(llama_get_memory(ctx_)) ? reuse_chunk : 0;
    if (spec_ == "draft") {
        draft_model_ = std::make_unique<DraftModel>(options_.draft_model, *model_, options_.n_parallel, n_ctx_seq_,
                                                    options_.n_batch, options_.n_gpu_layers,
                                                    options_.n_threads, threadpool_);
    }
    for (const auto & [buft, use] : llama_get_memory_breakdown(ctx_)) {
        memory_use_.push_back({ggml_backend_buft_name(buft), use.model, use.context, use.compute});
    }
    llama_set_abort_callback(ctx_, &Engine::abort_decode, this);
    batch_ = llama_batch_init(options_.n_batch, 0, 1);
    in_batch_.reserve(options_.n_parallel);
    slots_.reserve(options_.n_parallel);
    for (int32_t i = 0; i < options_.n_parallel; ++i) {
        slots_.emplace_back(i, reuse_gaps_ && reuse_chunk_ > 0 ? options_.n_parallel + i : -1);
    }
    slot_used_at_.assign(options_.n_parallel, 0);
    reserved_.assign(options_.n_parallel, 0);
    step_tokens_.assign(options_.n_parallel, 0);
    return_freed_memory();
    scheduler_ = std::thread([this] { run(); });
}


Engine::~Engine() {
    close();
    llama_batch_free(batch_);
    if (ctx_) llama_free(ctx_);
    if (threadpool_) free_cpu_threadpool(threadpool_);
}

void Engine::close() {
    {
        std::lock_guard<std::mutex> lock(waiting_->mu);
        waiting_->stopping = true;
    }
    waiting_->cv.notify_all();
    if (scheduler_.joinable()) scheduler_.join();
    prefix_cache_.close();  // the snapshots still queued for the disk are written
}

size_t Engine::queue_depth() const {
    std::lock_guard<std::mutex> lock(waiting_->mu);
    return waiting_->queue.size();
}

void Engine::Waiting::withdraw(uint64_t stream_id) {
    // All under the lock: once close() has emptied the queue, no withdraw is still at work.
    std::lock_guard<std::mutex> lock(mu);
    auto it = std::find_if(queue.begin(), queue.end(),
                           [&](const auto & r) { return r->stream->id() == stream_id; });
    if (it == queue.end()) return;  // running (the scheduler sees the flag) or done
    end_unstarted(**it);
    queue.erase(it);
}

std::shared_ptr<TokenStream> Engine::submit(const std::string & prompt,
                                            const SamplingParams & sampling,
                                            const GenerationOptions & options,
                                            std::shared_ptr<AsyncNotifier> notifier) {
    if (prompt.empty()) throw InvalidRequest("prompt: must not be empty");
    auto tokens = model_->tokenize(prompt, options.add_special, options.parse_special);
    return submit_tokens(std::move(tokens), sampling, options, std::move(notifier));
}

std::shared_ptr<TokenStream> Engine::submit_tokens(std::vector<llama_token> prompt,
                                                   const SamplingParams & sampling,
                                                   const GenerationOptions & options,
                                                   std::shared_ptr<AsyncNotifier> notifier) {
    // An encoder's every token is an output: the decode loop's few output rows would not hold them.
    if (!generates_) {
        throw InvalidRequest("this model does not generate text: it is an encoder (embeddings or reranking only)");
    }
    if (prompt.empty()) throw InvalidRequest("prompt: must not be empty");
    for (llama_token t : prompt) {
        if (!model_->valid_token(t)) throw InvalidRequest("prompt: unknown token id " + std::to_string(t));
    }
    if (static_cast<int64_t>(prompt.size()) >= n_ctx_seq_) {
        throw ContextLengthExceeded("prompt has " + std::to_string(prompt.size()) +
                                    " tokens but the context holds " + std::to_string(n_ctx_seq_) +
                                    " (prompt and completion together)");
    }
    if (options.slot < -1 || options.slot >= static_cast<int32_t>(slots_.size())) {
        throw InvalidRequest("id_slot: no slot " + std::to_string(options.slot) + " (the slots are 0 to " +
                             std::to_string(slots_.size() - 1) + ", or -1 for any)");
    }
    if (options.logprobs < -1 || options.logprobs > kMaxTopLogprobs) {
        throw InvalidRequest("logprobs: must be between 0 and " + std::to_string(kMaxTopLogprobs));
    }
    if (options.max_tokens == 0 || options.max_tokens < -1) {
        throw InvalidRequest("max_tokens: must be at least 1 (or -1 for no limit)");
    }

    if (options.reasoning_budget < -1) {
        throw InvalidRequest("reasoning_budget: must be at least 0 (or -1 for no limit)");
    }
    for (int32_t token : options.preserved_tokens) {
        if (!model_->valid_token(token)) throw InvalidRequest("preserved_tokens: unknown token id " + std::to_string(token));
    }

    auto request = std::make_unique<Request>();
    request->preserved.assign(options.preserved_tokens.begin(), options.preserved_tokens.end());
    std::sort(request->preserved.begin(), request->preserved.end());
    request->prompt = std::move(prompt);
    request->sampler = std::make_unique<Sampler>(
        *model_, sampling, options.ignore_eos,
        sampling.grammar.empty() ? nullptr : compile_grammar(sampling.grammar, sampling.grammar_root),
        std::chrono::milliseconds(options_.grammar_budget_ms));
    request->max_tokens = options.max_tokens;
    if (!options.reasoning_end.empty()) {
        // Closing in the model's place: a line break, the marker, and the blank line that
        // templates put before the answer. With a grammar, only a prompt that opened the
        // thinking has any (the grammar shapes the reply from its first token otherwise).
        const bool may_open = sampling.grammar.empty() || options.reasoning_open;
        request->reasoning = Reasoning({may_open ? options.reasoning_start : "", options.reasoning_end,
                                        options.reasoning_open, options.reasoning_budget,
                                        model_->tokenize("\n" + options.reasoning_end + "\n\n", false, true)});
        request->sampler->set_grammar_waiting(request->reasoning.before_answer());
    }
    request->stop = options.stop;
    request->logprobs = options.logprobs;
    if (options.post_sampling_probs && options.logprobs >= 0) request->sampler->keep_final_probs(options.logprobs);
    request->post_sampling_probs = options.post_sampling_probs;
    request->return_progress = options.return_progress;
    request->slot = options.slot;
    request->cache_prompt = options.cache_prompt;
    request->speculative = options.speculative;
    if (options.prediction_tokens) {
        request->prediction = options.prediction_tokens;  // shared, not copied, by every choice
    } else if (!options.prediction.empty()) {
        request->prediction = std::make_shared<const TokenIds>(TokenIds{model_->tokenize(options.prediction, false, false)});
    }
    request->stream = std::make_shared<TokenStream>(next_id_++, std::move(notifier));
    auto stream = request->stream;
    stream->on_cancel([waiting = std::weak_ptr<Waiting>(waiting_), id = stream->id()] {
        if (auto w = waiting.lock()) w->withdraw(id);
    });
    {
        std::lock_guard<std::mutex> lock(waiting_->mu);
        if (waiting_->stopping) throw EngineClosed("the engine is closed");
        const size_t free_slots = options_.n_parallel - busy_slots_.load();
        if (waiting_->queue.size() >= free_slots + static_cast<size_t>(options_.max_queue)) {
            throw QueueFull("all " + std::to_string(options_.n_parallel) + " slots are busy and " +
                            std::to_string(options_.max_queue) + " requests are already waiting");
        }
        waiting_->queue.push_back(std::move(request));
    }
    waiting_->cv.notify_one();
    return stream;
}

const std::shared_ptr<const GrammarVocab> & Engine::grammar_vocab() {
    std::call_once(grammar_vocab_made_, [&] { grammar_vocab_ = std::make_shared<const GrammarVocab>(*model_); });
    return grammar_vocab_;
}

std::unique_ptr<Grammar> Engine::compile_grammar(const std::string & grammar, const std::string & root) {
    return std::make_unique<Grammar>(grammar_cache_->get(grammar, root, model_->vocab(), GrammarLimits{}),
                                     grammar_vocab());
}

void Engine::check_grammar(const std::string & grammar, const std::string & root) {
    compile_grammar(grammar, root);
}

Slot * Engine::pick_slot(const Request & request, const std::vector<Slot *> & taken) {
    // The free slot whose cache serves most of this prompt; else an empty one, else the
    // one used longest ago, so that the caches most likely to be asked for again live on.
    Slot * best = nullptr;
    std::tuple<size_t, bool, uint64_t> best_score{};
    for (auto & slot : slots_) {
        if (slot.busy() || std::find(taken.begin(), taken.end(), &slot) != taken.end()) continue;
        if (request.slot >= 0 && slot.seq() != request.slot) continue;  // it asked for another one
        size_t reuse = 0;
        if (request.cache_prompt) {
            const auto plan = reuse_plan(slot, request.prompt);
            reuse = plan.prefix + plan.reused();
        }
        const std::tuple<size_t, bool, uint64_t> score{reuse, !slot.has_cache(), ~slot_used_at_[slot.seq()]};
        if (!best || score > best_score) {
            best = &slot;
            best_score = score;
        }
    }
    return best;
}

int64_t Engine::cells_needed(const Request & request) const {
    const int64_t prompt = static_cast<int64_t>(request.prompt.size());
    const int64_t completion = request.max_tokens < 0 ? n_ctx_seq_ : request.max_tokens;
    return std::min<int64_t>(n_ctx_seq_, prompt + completion);
}

bool Engine::make_room(const std::vector<Slot *> & taken) {
    // Only a shared pool has room to make: a slot's own share is always its own.
    if (!options_.kv_unified) return true;
    auto free_cells = [&] {
        int64_t used = 0;
        for (auto & slot : slots_) {
            const bool running = slot.busy() || std::find(taken.begin(), taken.end(), &slot) != taken.end();
            used += running ? reserved_[slot.seq()] : static_cast<int64_t>(slot.n_cached());
        }
        return options_.n_kv - used;
    };
    while (free_cells() < 0) {
        Slot * oldest = nullptr;
        for (auto & slot : slots_) {
            if (slot.busy() || !slot.has_cache() ||
                std::find(taken.begin(), taken.end(), &slot) != taken.end()) continue;
            if (!oldest || slot_used_at_[slot.seq()] < slot_used_at_[oldest->seq()]) oldest = &slot;
        }
        if (!oldest) return false;
        oldest->drop_cache(ctx_);
    }
    return true;
}

void Engine::admit_locked(std::vector<std::pair<Slot *, std::unique_ptr<Request>>> & admitted) {
    // Oldest first; a request waiting for its own busy slot (id_slot) lets those behind it by.
    auto & queue = waiting_->queue;
    std::vector<Slot *> taken;
    for (auto it = queue.begin(); it != queue.end();) {
        Request & request = **it;
        if (request.stream->cancelled()) {
            // Cancelled just now: its cancel is about to look for it in the queue.
            end_unstarted(request);
            it = queue.erase(it);
            continue;
        }
        Slot * slot = pick_slot(request, taken);
        if (!slot && request.slot >= 0) {
            ++it;
            continue;
        }
        if (!slot) return;
        // Promise it the cells it may grow to (the prefix its slot holds for it among them).
        reserved_[slot->seq()] = cells_needed(request);
        taken.push_back(slot);
        if (!make_room(taken)) {
            // The pool is promised to running requests: this one waits for their cells.
            reserved_[slot->seq()] = 0;
            return;
        }
        admitted.emplace_back(slot, std::move(*it));
        it = queue.erase(it);
        ++busy_slots_;
    }
}

ReusePlan Engine::reuse_plan(const Slot & slot, const std::vector<llama_token> & prompt) const {
    ReusePlan plan;
    plan.prefix = slot.usable_prefix(prompt, llama_get_memory(ctx_), n_swa_);
    if (reuse_chunk_ > 0 && plan.prefix < slot.n_cached()) {
        plan = plan_reuse(slot.cached_tokens(), prompt, plan.prefix, reuse_chunk_, reuse_gaps_);
    }
    return plan;
}

CacheDeparture Engine::departure(const Slot & slot, const std::vector<llama_token> & prompt) const {
    const auto & cached = slot.cached_tokens();
    size_t shared = common_prefix(cached, prompt);
    bool diverges = shared < cached.size() && shared < prompt.size();
    if (prefix_cache_.enabled()) {
        const auto host = prefix_cache_.longest_shared_entry(prompt);
        if (host.n > shared) {
            shared = host.n;
            diverges = host.diverges;
        }
    }
    CacheDeparture out;
    if (!diverges) return out;
    out.at = static_cast<int32_t>(shared);
    std::string bytes;
    for (size_t i = shared; i < prompt.size() && bytes.size() < kDepartureExcerptBytes; ++i) {
        bytes += model_->token_text(prompt[i]);
    }
    if (bytes.size() > kDepartureExcerptBytes) bytes.resize(kDepartureExcerptBytes);
    append_valid_utf8(bytes, out.text, false);  // a character cut at the end is left out
    return out;
}

void Engine::start_request(Slot & slot, std::unique_ptr<Request> & request) {
    ReusePlan plan;
    CacheDeparture departed;
    if (request->cache_prompt) {
        plan = reuse_plan(slot, request->prompt);
        departed = departure(slot, request->prompt);
    }
    slot_used_at_[slot.seq()] = ++admissions_;
    request->started_at = std::chrono::steady_clock::now();
    slot.start(std::move(request), ctx_, plan);
    if (departed.at >= 0) ++requests_departed_;
    slot.set_departure(std::move(departed));
    if (slot.caching() && prefix_cache_.enabled()) {
        const auto match = prefix_cache_.find(slot.prompt(), slot.served_from_cache());
        if (match.snapshot && slot.restore(ctx_, *match.snapshot, match.reuse)) prefix_cache_.count_hit(match);
        plan_snapshots(slot);
    }
    prompt_tokens_ += slot.prompt().size();
    cached_tokens_ += slot.served_from_cache();
    reused_tokens_ += slot.reused_tokens();
    if (slot.served_from_cache() > 0) ++requests_hit_;
    slot.report_progress();  // before any of it is processed: the cached part only
}

void Engine::plan_snapshots(Slot & slot) {
    const auto & prompt = slot.prompt();
    const size_t have = slot.n_fed();
    const size_t last = prompt.size() - 1;  // the last prompt token is decoded for its logits
    // Where this prompt leaves another one (a shared system prompt, few-shot block, tool
    // list): a snapshot there serves every later prompt that shares it. When a running
    // request is still prefilling towards that point, wait for its snapshot instead of
    // prefilling the same tokens beside it.
    Slot * leader = nullptr;
    size_t leader_shares = 0;
    size_t shared = std::min(prefix_cache_.longest_shared(prompt), last);
    for (auto & other : slots_) {
        if (&other == &slot) continue;
        const auto & theirs = other.busy() ? other.prompt() : other.cached_tokens();
        const size_t common = common_prefix(theirs, prompt, last);
        shared = std::max(shared, common);
        if (other.busy() && other.caching() && !other.following() && other.n_fed() < common &&
            common > leader_shares) {
            leader = &other;
            leader_shares = common;
        }
    }
    // A slot with parked chunks keeps them (a leader's snapshot would replace them).
    if (leader && !slot.has_parked() && leader_shares >= kMinSnapshotTokens && leader_shares >= have + kMinSnapshotGain) {
        leader->add_checkpoint(leader_shares);
        slot.follow(*leader, leader_shares);
    } else if (shared >= kMinSnapshotTokens && shared >= have + kMinSnapshotGain &&
               !prefix_cache_.holds(prompt, shared)) {
        slot.add_checkpoint(shared);
    }
    // The whole prompt but its last token: the next turn of this conversation, or the same
    // prompt again, starts from there.
    if (last >= kMinSnapshotTokens && last >= have + kMinSnapshotGain) slot.add_checkpoint(last);
}

void Engine::take_snapshots() {
    for (auto & slot : slots_) {
        while (slot.busy() && slot.at_checkpoint()) {
            guarded(slot, "caching a prefix", [&] {
                const size_t size = llama_state_seq_get_size(ctx_, slot.seq());
                if (prefix_cache_.would_keep(size)) {
                    auto & buffers = prefix_cache_.buffers();
                    prefix_cache_.insert(buffers.share(slot.snapshot(ctx_, buffers.take(size))));
                }
                slot.passed_checkpoint();
            });
        }
    }
}

void Engine::resume_followers() {
    for (auto & slot : slots_) {
        if (!slot.busy() || !slot.following() || !slot.leader_done()) continue;
        slot.stop_following();
        guarded(slot, "restoring a prefix", [&] {
            const size_t before = slot.n_fed();
            const auto match = prefix_cache_.find(slot.prompt(), before);
            if (match.snapshot && slot.restore(ctx_, *match.snapshot, match.reuse)) {
                prefix_cache_.count_hit(match);
                cached_tokens_ += slot.n_fed() - before;
                if (before == 0) ++requests_hit_;
            }
        });
    }
}

CacheStats Engine::cache_stats() const {
    CacheStats stats;
    stats.kv_cells = static_cast<int64_t>(llama_n_ctx(ctx_));
    stats.kv_cells_used = kv_cells_used_.load();
    stats.kv_cells_reserved = kv_cells_reserved_.load();
    stats.prompt_tokens = prompt_tokens_.load();
    stats.cached_tokens = cached_tokens_.load();
    stats.requests_hit = requests_hit_.load();
    stats.reused_tokens = reused_tokens_.load();
    stats.requests_departed = requests_departed_.load();
    stats.host = prefix_cache_.stats();
    stats.disk = prefix_cache_.disk_stats();
    return stats;
}

SpeculationStats Engine::speculation_stats() const {
    return {drafted_.load(), accepted_.load()};
}

DecodeStats Engine::decode_stats() const {
    std::lock_guard<std::mutex> lock(decode_stats_mu_);
    return decode_stats_;
}

void Engine::finish_slot(Slot & slot, const std::string & reason, const std::string & error,
                         bool invalid_request) {
    // Free the slot's place first: whoever sees the stream finish may submit at once.
    reserved_[slot.seq()] = 0;
    --busy_slots_;
    slot.finish(reason, ctx_, error, invalid_request);
}

template <typename Work>
bool Engine::guarded(Slot & slot, const char * what, Work && work) {
    try {
        work();
        return true;
    } catch (const InvalidRequest & e) {  // the request's own fault: a grammar over its budget
        fail(slot, what, e.what(), true);
    } catch (const std::exception & e) {
        fail(slot, what, e.what());
    } catch (...) {
        fail(slot, what, "unknown exception");
    }
    return false;
}

void Engine::fail(Slot & slot, const char * what, const char * why, bool invalid_request) noexcept {
    // Slot::finish lets the request go before anything that may throw, so a failure
    // here (out of memory) still leaves the slot free.
    if (!slot.busy()) return;
    try {
        std::string message;
        // why may quote a token's bytes
        append_valid_utf8(invalid_request ? std::string(why) : std::string(what) + ": " + why, message, true);
        finish_slot(slot, "error", message, invalid_request);
    } catch (...) {
    }
}

bool Engine::abort_decode(void * data) {
    // ggml asks between graph nodes, on the thread that called llama_decode. A step that
    // also carries other requests' tokens runs to its end: aborting would lose theirs.
    const auto * engine = static_cast<const Engine *>(data);
    if (engine->waiting_->stopping.load(std::memory_order_relaxed)) return true;
    return !engine->in_batch_.empty() && std::all_of(engine->in_batch_.begin(), engine->in_batch_.end(),
                       [](Slot * slot) { return slot->stream().cancelled(); });
}

void Engine::run() {
    while (!waiting_->stopping) {
        try {
            step();
        } catch (const std::exception & e) {
            // The shared part failed (llama_decode itself): the requests of this step end.
            for (Slot * slot : in_batch_) fail(*slot, "decoding", e.what());
        } catch (...) {
            for (Slot * slot : in_batch_) fail(*slot, "decoding", "unknown exception");
        }
    }
    shut_down();
}

void Engine::step() {
    in_batch_.clear();
    std::vector<std::pair<Slot *, std::unique_ptr<Request>>> admitted;
    std::deque<std::function<void()>> tasks;
    {
        std::unique_lock<std::mutex> lock(waiting_->mu);
        waiting_->cv.wait(lock, [&] {
            return waiting_->stopping || !waiting_->queue.empty() || !waiting_->tasks.empty() ||
                   busy_slots_.load() > 0;
        });
        if (waiting_->stopping) {
            waiting_->tasks.clear();  // their callers' waits fail: the engine is closed
            return;
        }
        tasks.swap(waiting_->tasks);
        admit_locked(admitted);
    }
    for (auto & task : tasks) task();  // before the admitted requests start: their slots are still idle
    // Restoring a prefix copies its KV: outside the lock, so submitters never wait on it.
    for (auto & [slot, request] : admitted) {
        Slot & s = *slot;
        if (!guarded(s, "starting", [&] { start_request(s, request); }) && request) {
            --busy_slots_;
            reserved_[s.seq()] = 0;
            end_unstarted(*request);
        }
    }
    for (auto & slot : slots_) {
        if (slot.busy() && slot.stream().cancelled()) {
            guarded(slot, "cancelling", [&] { finish_slot(slot, "cancelled"); });
        }
    }
    take_snapshots();
    resume_followers();
    for (auto & slot : slots_) {
        if (slot.busy() && slot.has_parked()) guarded(slot, "reusing cached chunks", [&] { slot.unpark_due(ctx_); });
    }
    plan_step();
    publish_cache_use();
    // The prompt chunks go first, in a decode of their own: a first token then never waits
    // for the running streams' next tokens (with a cache per sequence llama.cpp splits such a
    // batch into these two passes anyway). A prompt that ends in the first pass has its
    // first token decoded in the second, with the others'.
    if (fill_pass(true)) decode_and_sample();
    if (fill_pass(false)) decode_and_sample();
}

void Engine::publish_cache_use() {
    int64_t used = 0;
    int64_t reserved = 0;
    for (auto & slot : slots_) {
        used += static_cast<int64_t>(slot.n_cached());
        reserved += reserved_[slot.seq()];
    }
    kv_cells_used_ = used;
    kv_cells_reserved_ = reserved;
}

void Engine::plan_step() {
    // Every decoding slot gets its one token, then prompt chunks share what is left,
    // so a long prompt never stalls the streams already running. Prompts are fed oldest
    // request first, and once a step carries kStepPrefillTarget prompt tokens no further
    // prompt joins it: many short prompts (the next turns of many chats) then get their first
    // tokens one step after another, not all after one long step.
    int32_t budget = options_.n_batch;
    std::vector<Slot *> prompts;
    std::fill(step_tokens_.begin(), step_tokens_.end(), 0);
    for (auto & slot : slots_) {
        if (!slot.busy()) continue;
        if (!slot.prefilling()) {
            step_tokens_[slot.seq()] = 1;
            --budget;
        } else if (slot.prefill_ready() > 0) {
            prompts.push_back(&slot);
        }
    }
    std::sort(prompts.begin(), prompts.end(), [&](const Slot * a, const Slot * b) {
        return slot_used_at_[a->seq()] < slot_used_at_[b->seq()];
    });
    int32_t prompt_tokens = 0;
    bool first_token_due = false;
    for (Slot * slot : prompts) {
        if (budget <= 0 || prompt_tokens >= kStepPrefillTarget) break;
        const int32_t n = static_cast<int32_t>(std::min<size_t>(slot->prefill_ready(), budget));
        const bool ends_prompt = slot->n_fed() + n == slot->prompt().size();
        // A prompt's last chunk (often its last token alone, after a snapshot point) gets its
        // first token after the step's prompt pass: another prompt's chunk that does not end
        // there too waits for the next step instead of holding that first token back.
        if (first_token_due && !ends_prompt) break;
        first_token_due = first_token_due || ends_prompt;
        step_tokens_[slot->seq()] = n;
        budget -= n;
        prompt_tokens += n;
    }
    const int32_t decoding = options_.n_batch - budget - prompt_tokens;
    // A step with prompt tokens drafts nothing: their first token comes sooner, and a prompt
    // is a pass of its own already (see plan_drafts).
    if (spec_ != "off" && decoding > 0 && prompt_tokens == 0) {
        add_drafts(decoding, std::min(budget, kMaxStepDrafts));
    }
}

bool Engine::fill_pass(bool prompts) {
    // The tokens go into the batch in slot order: llama.cpp splits a batch over per-sequence
    // caches into passes of consecutive sequences, and slots out of order cost extra passes.
    batch_.n_tokens = 0;
    step_prompt_tokens_ = 0;
    in_batch_.clear();
    prefilled_.clear();
    for (auto & slot : slots_) {
        const int32_t n = step_tokens_[slot.seq()];
        if (n == 0 || !slot.busy() || slot.prefilling() != prompts) continue;
        const int32_t before = batch_.n_tokens;
        if (!guarded(slot, "batching", [&] { slot.add_to_batch(batch_, n); })) {
            batch_.n_tokens = before;  // no tokens of an ended request
        } else if (batch_.n_tokens > before) {
            in_batch_.push_back(&slot);
            if (prompts) {
                step_prompt_tokens_ += batch_.n_tokens - before;
                prefilled_.push_back(&slot);
            }
        }
    }
    return !in_batch_.empty();
}

void Engine::add_drafts(int32_t decoding, int32_t room) {
    std::vector<Slot *> drafting;
    std::vector<DraftCandidate> candidates;
    for (auto & slot : slots_) {
        if (!slot.busy() || !slot.speculative()) continue;
        const int32_t most = std::min(options_.spec_draft_max, slot.draft_room(n_ctx_seq_));
        if (most <= 0) continue;
        auto & draft = slot.draft();
        draft.clear();
        int32_t source = kFromDraftModel;
        if (spec_ == "ngram") {
            source = ngram_draft(slot.history(), slot.prediction(), slot.prediction_cursor(), most, draft);
            if (draft.empty()) continue;
        }
        slot.set_draft_source(source);
        drafting.push_back(&slot);
        candidates.emplace_back();
        // This kind of draft's record (all slots), then this slot's own on top of it.
        const int32_t on_offer = spec_ == "ngram" ? static_cast<int32_t>(draft.size()) : most;
        std::vector<double> initial;
        initial_rates(static_cast<DraftSource>(source), on_offer, initial);
        std::vector<double> kind_rates, rates;
        by_source_[source].rates(initial, on_offer, kind_rates);
        slot.acceptance().rates(kind_rates, on_offer, rates);
        survival_from_rates(rates, candidates.back().survival);
    }
    if (drafting.empty()) return;
    // Per-sequence caches decode a step's sequences in equal-length passes (see plan_drafts).
    const bool pass_per_draft = !options_.kv_unified && decoding > 1;
    const double making = draft_model_ ? draft_model_->seconds_per_token() : 0.0;
    plan_drafts(step_cost_, decoding, decoding, room, pass_per_draft, making, candidates);
    if (spec_ == "draft") {
        std::vector<DraftModel::Ask> asks;
        for (size_t i = 0; i < drafting.size(); ++i) {
            if (candidates[i].granted == 0) continue;
            asks.push_back({drafting[i]->seq(), &drafting[i]->history(), candidates[i].granted, &drafting[i]->draft()});
        }
        try {
            if (!asks.empty()) draft_model_->propose(asks);
        } catch (const std::exception &) {
            // Drafts only speed a request up: without them this step decodes as usual.
            for (Slot * slot : drafting) slot->draft().clear();
        }
    }
    for (size_t i = 0; i < drafting.size(); ++i) {
        auto & draft = drafting[i]->draft();
        if (static_cast<int32_t>(draft.size()) > candidates[i].granted) draft.resize(candidates[i].granted);
    }
}

void Engine::decode_and_sample() {
    const auto started = std::chrono::steady_clock::now();
    const int32_t rc = llama_decode(ctx_, batch_);
    if (rc != 0) {
        if (waiting_->stopping) return;  // aborted for close(): shut_down() ends them all
        // Aborted because every request of the step was cancelled, or failed: either way
        // these slots' cells are in an unknown state, and finishing frees them.
        const std::string error = "llama_decode failed with status " + std::to_string(rc);
        for (Slot * slot : in_batch_) {
            const bool cancelled = slot->stream().cancelled();
            guarded(*slot, "decoding", [&] {
                finish_slot(*slot, cancelled ? "cancelled" : "error", cancelled ? "" : error);
            });
        }
        return;
    }
    for (Slot * slot : prefilled_) slot->report_progress();  // before the first token it may bring
    const int32_t n_vocab = model_->metadata().n_vocab;
    uint64_t generated = 0;
    uint64_t verify_steps = 0;
    uint64_t longest = 0;
    // Slots end after the step's figures are recorded, so whoever sees a stream end reads them.
    std::vector<std::pair<Slot *, const char *>> ended;
    for (Slot * slot : in_batch_) {
        longest = std::max<uint64_t>(longest, slot->n_cached());
        if (slot->batch_index() < 0) continue;  // a prompt chunk before the last
        const int32_t drafted = static_cast<int32_t>(slot->draft().size());
        drafted_ += drafted;
        if (drafted > 0) ++verify_steps;
        guarded(*slot, "sampling", [&] {
            const int32_t before = slot->accepted_tokens();
            const int32_t generated_before = slot->generated_tokens();
            const int32_t source = slot->draft_source();
            const char * reason = slot->advance(ctx_, *model_, n_ctx_seq_, n_vocab);
            const int32_t accepted = slot->accepted_tokens() - before;
            accepted_ += accepted;
            generated += slot->generated_tokens() - generated_before;
            if (drafted > 0) by_source_[source].record(drafted, accepted);
            if (reason) ended.emplace_back(slot, reason);
        });
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const bool prompt_pass = step_prompt_tokens_ > 0;
    {
        std::lock_guard<std::mutex> lock(decode_stats_mu_);
        DecodeStats & d = decode_stats_;
        ++d.decodes;
        d.busy_slots += in_batch_.size();
        d.verify_steps += verify_steps;
        d.prompt_tokens += step_prompt_tokens_;
        d.generated_tokens += generated;
        (prompt_pass ? d.prompt_seconds : d.generation_seconds) += seconds;
        d.longest_sequence = std::max(d.longest_sequence, longest);
    }
    for (auto & [slot, reason] : ended) guarded(*slot, "sampling", [&] { finish_slot(*slot, reason); });
    if (prompt_pass) {
        step_cost_.record_prefill(batch_.n_tokens, seconds);
    } else {
        step_cost_.record_decode(batch_.n_tokens, seconds);
    }
}

void Engine::shut_down() {
    // Nobody will decode these any more.
    for (auto & slot : slots_) {
        if (slot.busy()) guarded(slot, "closing", [&] { finish_slot(slot, "cancelled"); });
    }
    std::deque<std::unique_ptr<Request>> left;
    {
        std::lock_guard<std::mutex> lock(waiting_->mu);
        left.swap(waiting_->queue);
    }
    for (auto & request : left) end_unstarted(*request);
}

}  // namespace llamaserve
