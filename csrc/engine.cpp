#include "engine.h"

#include <algorithm>
#include <exception>

#include "errors.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama-ext.h"
#include "text_decoder.h"

namespace llamaserve {

namespace {

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

// A request that never reached a slot.
void end_unstarted(Request & request) {
    StreamStats stats;
    stats.prompt_tokens = static_cast<int32_t>(request.prompt.size());
    stats.finish_reason = "cancelled";
    request.stream->finish(std::move(stats));
}

}  // namespace

Engine::Engine(const std::string & model_path, const EngineOptions & options)
    : options_(options) {
    if (options_.n_parallel < 1) throw InvalidRequest("n_parallel: must be at least 1");
    if (options_.n_ctx < 8) throw InvalidRequest("n_ctx: must be at least 8");
    if (options_.n_batch < options_.n_parallel) {
        throw InvalidRequest("n_batch: must be at least n_parallel");
    }
    if (options_.max_queue < 0) throw InvalidRequest("max_queue: must not be negative");
    if (options_.n_threads <= 0) {
        options_.n_threads = std::max(1u, std::thread::hardware_concurrency());
    }
    install_log_capture();
    ModelLoadOptions load;
    load.n_gpu_layers = options_.n_gpu_layers;
    model_ = std::make_unique<Model>(model_path, load);

    auto params = llama_context_default_params();
    // Every slot may use its whole window, so the cache never runs out mid-decode.
    params.n_ctx = static_cast<uint32_t>(options_.n_ctx) * options_.n_parallel;
    params.n_batch = options_.n_batch;
    params.n_ubatch = std::min(options_.n_batch, 512);
    params.n_seq_max = options_.n_parallel;
    // A step asks for at most one row of logits per slot: reserving rows for a whole
    // batch would cost n_batch x n_vocab floats (half a gigabyte for Gemma's vocabulary).
    params.n_outputs_max = options_.n_parallel;
    params.n_threads = options_.n_threads;
    params.n_threads_batch = options_.n_threads;
    params.kv_unified = options_.kv_unified;
    params.no_perf = true;
    ctx_ = llama_init_from_model(model_->get(), params);
    if (!ctx_) throw ModelLoadError("cannot create a context for " + model_path);
    threadpool_ = new_cpu_threadpool(options_.n_threads);
    if (threadpool_) llama_attach_threadpool(ctx_, threadpool_, threadpool_);

    n_swa_ = llama_model_n_swa(model_->get());
    for (const auto & [buft, use] : llama_get_memory_breakdown(ctx_)) {
        memory_use_.push_back({ggml_backend_buft_name(buft), use.model, use.context, use.compute});
    }
    llama_set_abort_callback(ctx_, &Engine::abort_decode, this);
    batch_ = llama_batch_init(options_.n_batch, 0, 1);
    in_batch_.reserve(options_.n_parallel);
    slots_.reserve(options_.n_parallel);
    for (int32_t i = 0; i < options_.n_parallel; ++i) slots_.emplace_back(i);
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
    if (prompt.empty()) throw InvalidRequest("prompt: must not be empty");
    for (llama_token t : prompt) {
        if (!model_->valid_token(t)) throw InvalidRequest("prompt: unknown token id " + std::to_string(t));
    }
    if (static_cast<int64_t>(prompt.size()) >= options_.n_ctx) {
        throw ContextLengthExceeded("prompt has " + std::to_string(prompt.size()) +
                                    " tokens but the context holds " + std::to_string(options_.n_ctx) +
                                    " (prompt and completion together)");
    }
    if (options.logprobs < -1 || options.logprobs > kMaxTopLogprobs) {
        throw InvalidRequest("logprobs: must be between 0 and " + std::to_string(kMaxTopLogprobs));
    }
    if (options.max_tokens == 0 || options.max_tokens < -1) {
        throw InvalidRequest("max_tokens: must be at least 1 (or -1 for no limit)");
    }

    auto request = std::make_unique<Request>();
    request->prompt = std::move(prompt);
    request->sampler = std::make_unique<Sampler>(*model_, sampling, options.ignore_eos);
    request->max_tokens = options.max_tokens;
    request->stop = options.stop;
    request->logprobs = options.logprobs;
    request->cache_prompt = options.cache_prompt;
    request->stream = std::make_shared<TokenStream>(next_id_++, std::move(notifier));
    auto stream = request->stream;
    stream->on_cancel([waiting = std::weak_ptr<Waiting>(waiting_), id = stream->id()] {
        if (auto w = waiting.lock()) w->withdraw(id);
    });
    {
        std::lock_guard<std::mutex> lock(waiting_->mu);
        if (waiting_->stopping) throw EngineError("the engine is closed");
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

Slot * Engine::pick_slot(const Request & request) {
    // The free slot whose cache serves most of this prompt; else an empty one, so the
    // other slots' caches live on.
    Slot * best = nullptr;
    size_t best_score = 0;
    for (auto & slot : slots_) {
        if (slot.busy()) continue;
        const size_t reuse = request.cache_prompt ? slot.reusable_prefix(request.prompt) : 0;
        const size_t score = 2 * reuse + (slot.has_cache() ? 0 : 1);
        if (!best || score > best_score) {
            best = &slot;
            best_score = score;
        }
    }
    return best;
}

void Engine::admit_locked() {
    auto & queue = waiting_->queue;
    while (!queue.empty()) {
        if (queue.front()->stream->cancelled()) {
            // Cancelled just now: its cancel is about to look for it in the queue.
            end_unstarted(*queue.front());
            queue.pop_front();
            continue;
        }
        Slot * slot = pick_slot(*queue.front());
        if (!slot) return;
        std::unique_ptr<Request> request = std::move(queue.front());
        queue.pop_front();
        ++busy_slots_;
        guarded(*slot, "starting", [&] { slot->start(std::move(request), ctx_, n_swa_); });
    }
}

void Engine::finish_slot(Slot & slot, const std::string & reason, const std::string & error) {
    // Free the slot's place first: whoever sees the stream finish may submit at once.
    --busy_slots_;
    slot.finish(reason, ctx_, error);
}

template <typename Work>
bool Engine::guarded(Slot & slot, const char * what, Work && work) {
    try {
        work();
        return true;
    } catch (const std::exception & e) {
        fail(slot, what, e.what());
    } catch (...) {
        fail(slot, what, "unknown exception");
    }
    return false;
}

void Engine::fail(Slot & slot, const char * what, const char * why) noexcept {
    // Slot::finish lets the request go before anything that may throw, so a failure
    // here (out of memory) still leaves the slot free.
    if (!slot.busy()) return;
    try {
        std::string message;
        append_valid_utf8(std::string(what) + ": " + why, message, true);  // why may quote a token's bytes
        finish_slot(slot, "error", message);
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
    {
        std::unique_lock<std::mutex> lock(waiting_->mu);
        waiting_->cv.wait(lock, [&] {
            return waiting_->stopping || !waiting_->queue.empty() || busy_slots_.load() > 0;
        });
        if (waiting_->stopping) return;
        admit_locked();
    }
    for (auto & slot : slots_) {
        if (slot.busy() && slot.stream().cancelled()) {
            guarded(slot, "cancelling", [&] { finish_slot(slot, "cancelled"); });
        }
    }
    build_batch();
    if (!in_batch_.empty()) decode_and_sample();
}

void Engine::build_batch() {
    // Every decoding slot gets its one token, then prompt chunks share what is left,
    // so a long prompt never stalls the streams already running. The tokens go into
    // the batch in slot order: llama.cpp splits a batch over per-sequence caches into
    // passes of consecutive sequences, and slots out of order cost extra passes.
    int32_t budget = options_.n_batch;
    for (auto & slot : slots_) {
        if (slot.busy() && !slot.prefilling()) --budget;
    }
    batch_.n_tokens = 0;
    for (auto & slot : slots_) {
        if (!slot.busy()) continue;
        int32_t n = 1;
        if (slot.prefilling()) {
            n = std::min(slot.prompt_left(), budget);
            budget -= n;
        }
        const int32_t before = batch_.n_tokens;
        if (!guarded(slot, "batching", [&] { slot.add_to_batch(batch_, n); })) {
            batch_.n_tokens = before;  // no tokens of an ended request
        } else if (batch_.n_tokens > before) {
            in_batch_.push_back(&slot);
        }
    }
}

void Engine::decode_and_sample() {
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
    const int32_t n_vocab = model_->metadata().n_vocab;
    for (Slot * slot : in_batch_) {
        if (slot->batch_index() < 0) continue;  // a prompt chunk before the last
        guarded(*slot, "sampling", [&] {
            const llama_token token = slot->sample(ctx_, n_vocab);
            if (const char * reason = slot->accept(token, *model_, options_.n_ctx)) {
                finish_slot(*slot, reason);
            }
        });
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
