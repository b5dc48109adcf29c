// One prefix snapshot as one file (the disk tier's unit). Layout, in this machine's byte order:
//   header (48 bytes): magic "LSKVSNAP", format version, fingerprint of the model and KV settings,
//                      number of tokens, size of the state, checksum of tokens and state
//   tokens (int32 each), then the state (llama_state_seq_get_data's bytes)
// The header and tokens come first so that a folder is indexed by reading a few KB of each file;
// the checksum covers everything after the header and is checked when the state is read back.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "prefix_cache.h"

namespace llamaserve {

// Our own format's version: a file of another version is never read.
constexpr uint32_t kSnapshotFileVersion = 1;

// What a folder listing keeps of a file: its tokens, to match prompts without reading states.
struct SnapshotFileIndex {
    std::vector<llama_token> tokens;
    uint64_t bytes = 0;  // the file's size
};

enum class SnapshotRead { ok, missing, damaged };

// Writes `snapshot` as `path`: to a temporary name beside it, flushed to the disk (fsync), then
// renamed over `path` and the folder flushed, so that a crash leaves either the whole file or
// none (a reader never sees half of one). False (and no file) on any error.
bool write_snapshot_file(const std::string & path, uint64_t fingerprint, const PrefixSnapshot & snapshot);

// The header and tokens of `path`: `damaged` for a file that is not a snapshot of
// `fingerprint` in this format, or whose size disagrees with its header.
SnapshotRead read_snapshot_index(const std::string & path, uint64_t fingerprint, SnapshotFileIndex & out);

// The whole snapshot, its checksum verified (`damaged` if it does not match).
SnapshotRead read_snapshot_file(const std::string & path, uint64_t fingerprint, PrefixSnapshot & out);

}  // namespace llamaserve
