// What the bytes of a sequence's KV state depend on, as one number: a snapshot on disk is read
// only by an engine with the same fingerprint, so that a stale or foreign file is never used.
#pragma once
#include <cstdint>
#include <string>

namespace llamaserve {

struct KvIdentity {
    std::string model_path;
    std::string type_k;      // KV cache types: the cells' bytes
    std::string type_v;
    std::string flash_attn;  // V is stored transposed without flash attention
    bool swa_full = false;   // which cells of a sliding-window layer a state holds
    uint32_t n_stream = 1;   // KV streams (1 with kv_unified, else one per sequence): the state's layout
};

// The fingerprint of `identity`, with the model file's size, modification time and a hash of its
// first MiB (the GGUF header: architecture, hyperparameters, tensor types and offsets), and
// llama.cpp's sequence-state format version. Not in it, on purpose: the context size (a state
// holds cells by position; a context too small for one refuses it, and the prompt is prefilled),
// the GPU layers (the state is copied to and from the device the same way). A model file
// rewritten in place changes its time; one copied elsewhere with its time kept is the same file.
// ModelLoadError if the model file cannot be read.
uint64_t kv_fingerprint(const KvIdentity & identity);

}  // namespace llamaserve
