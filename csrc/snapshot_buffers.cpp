#include "snapshot_buffers.h"

#include "prefix_cache.h"

namespace llamaserve {

std::vector<uint8_t> SnapshotBuffers::take(size_t size) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto best = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it) {
            if (it->capacity() >= size && (best == free_.end() || it->capacity() < best->capacity())) best = it;
        }
        if (best != free_.end()) {
            std::vector<uint8_t> buffer = std::move(*best);
            free_.erase(best);
            kept_ -= buffer.size();
            buffer.resize(size);  // within its capacity: only a longer one writes its new bytes
            return buffer;
        }
        // Every kept buffer is too short: conversations only grow, so they would stay unused.
        free_.clear();
        kept_ = 0;
    }
    std::vector<uint8_t> buffer;
    buffer.reserve(size + size / 2);  // reserved, not touched: no pages until a later turn uses them
    buffer.resize(size);
    return buffer;
}

std::shared_ptr<const PrefixSnapshot> SnapshotBuffers::share(PrefixSnapshot && snapshot) {
    // The deleter owns the (non-const) object it deletes: moving its buffer out is sound.
    return std::shared_ptr<const PrefixSnapshot>(
        new PrefixSnapshot(std::move(snapshot)),
        [buffers = shared_from_this()](const PrefixSnapshot * dropped) {
            auto * owned = const_cast<PrefixSnapshot *>(dropped);
            buffers->give(std::move(owned->state));
            delete owned;
        });
}

void SnapshotBuffers::give(std::vector<uint8_t> && buffer) {
    std::lock_guard<std::mutex> lock(mu_);
    // Counted by size: the pages past it were reserved but (mostly) never touched.
    if (buffer.empty() || kept_ + buffer.size() > max_bytes_) return;  // freed on return
    kept_ += buffer.size();
    free_.push_back(std::move(buffer));
}

size_t SnapshotBuffers::kept_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return kept_;
}

}  // namespace llamaserve
