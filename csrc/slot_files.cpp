// llama-server's slot files (/slots?action=save|restore|erase): a slot's cached prompt written as
// a prefix snapshot file (snapshot_file.h: bound to the model and KV settings, checksummed) and
// read back into an idle slot, on the scheduler thread, which alone touches the context.
#include <chrono>
#include <future>

#include "engine.h"
#include "errors.h"
#include "snapshot_file.h"

namespace llamaserve {

template <class F>
auto Engine::on_scheduler(F work) -> decltype(work()) {
    // Shared with the queue: dropped unrun at close, the task breaks its promise, and the wait
    // below fails instead of hanging.
    auto task = std::make_shared<std::packaged_task<decltype(work())()>>(std::move(work));
    auto done = task->get_future();
    {
        std::lock_guard<std::mutex> lock(waiting_->mu);
        if (waiting_->stopping) throw EngineClosed("the engine is closed");
        waiting_->tasks.emplace_back([task] { (*task)(); });
    }
    waiting_->cv.notify_all();
    try {
        return done.get();
    } catch (const std::future_error &) {
        throw EngineError("the engine closed before the slot file was handled");
    }
}

Slot & Engine::idle_slot(int32_t slot) {
    if (slot < 0 || slot >= static_cast<int32_t>(slots_.size())) {
        throw InvalidRequest("id_slot: no slot " + std::to_string(slot) + " (the slots are 0 to " +
                             std::to_string(slots_.size() - 1) + ")");
    }
    Slot & s = slots_[static_cast<size_t>(slot)];
    if (s.busy()) throw InvalidRequest("id_slot: slot " + std::to_string(slot) + " is busy");
    return s;
}

namespace {
double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

Engine::SlotFile Engine::save_slot(int32_t slot, const std::string & path) {
    return on_scheduler([&, slot] {
        const auto start = std::chrono::steady_clock::now();
        Slot & s = idle_slot(slot);
        PrefixSnapshot snapshot;
        if (s.n_cached() > 0) {
            snapshot = s.snapshot(ctx_, std::vector<uint8_t>(llama_state_seq_get_size(ctx_, s.seq())));
        }
        if (!write_snapshot_file(path, fingerprint_, snapshot)) {
            throw InvalidRequest("filename: cannot write " + path);
        }
        return SlotFile{static_cast<int32_t>(snapshot.tokens.size()), snapshot.state.size(), ms_since(start)};
    });
}

Engine::SlotFile Engine::restore_slot(int32_t slot, const std::string & path) {
    return on_scheduler([&, slot] {
        const auto start = std::chrono::steady_clock::now();
        Slot & s = idle_slot(slot);
        PrefixSnapshot snapshot;
        switch (read_snapshot_file(path, fingerprint_, snapshot)) {
            case SnapshotRead::ok:
                break;
            case SnapshotRead::missing:
                throw InvalidRequest("filename: no such slot file");
            case SnapshotRead::damaged:
                throw InvalidRequest("filename: not a slot file of this model and KV settings (or damaged)");
        }
        if (static_cast<int32_t>(snapshot.tokens.size()) > n_ctx_seq_) {
            throw InvalidRequest("filename: its " + std::to_string(snapshot.tokens.size()) +
                                 " tokens do not fit a slot of " + std::to_string(n_ctx_seq_));
        }
        if (!snapshot.tokens.empty() && !s.restore(ctx_, snapshot, snapshot.tokens.size())) {
            s.drop_cache(ctx_);
            throw InvalidRequest("filename: llama.cpp refused its state");
        }
        if (snapshot.tokens.empty()) s.drop_cache(ctx_);
        return SlotFile{static_cast<int32_t>(snapshot.tokens.size()), snapshot.state.size(), ms_since(start)};
    });
}

int32_t Engine::erase_slot(int32_t slot) {
    return on_scheduler([&, slot] {
        Slot & s = idle_slot(slot);
        const auto erased = static_cast<int32_t>(s.n_cached());
        s.drop_cache(ctx_);
        return erased;
    });
}

}  // namespace llamaserve
