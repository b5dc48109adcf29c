// Buffers for prefix snapshots' bytes, kept when a snapshot is dropped for the next one to
// fill. A long conversation's snapshot is ~100 MB, and copying it into memory the process has
// never touched costs a page fault per 4 KB: measured in a 2-core VM, 0.23-0.34 s for a 90-112 MB
// snapshot against ~10 ms for the copy itself, on the scheduler thread, ahead of the first token.
// An agent loop drops one snapshot for each one it takes (a turn's snapshot replaces the
// previous turn's, see PrefixCache), so one kept buffer serves the next turn of any conversation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace llamaserve {

struct PrefixSnapshot;

class SnapshotBuffers : public std::enable_shared_from_this<SnapshotBuffers> {
public:
    // Keeps buffers of at most `max_bytes` in all.
    explicit SnapshotBuffers(size_t max_bytes) : max_bytes_(max_bytes) {}

    // `size` bytes: the smallest kept buffer that holds them, else a new one with room to
    // grow (each turn's snapshot is a little longer than the last).
    std::vector<uint8_t> take(size_t size);
    // Shares a new snapshot; its buffer comes back here when the last holder drops it.
    std::shared_ptr<const PrefixSnapshot> share(PrefixSnapshot && snapshot);

    size_t kept_bytes() const;

private:
    void give(std::vector<uint8_t> && buffer);

    mutable std::mutex mu_;  // snapshots may be dropped on the disk writer's thread
    size_t max_bytes_;
    size_t kept_ = 0;
    std::vector<std::vector<uint8_t>> free_;
};

}  // namespace llamaserve
