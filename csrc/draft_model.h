// Speculation with a second, smaller model of the same vocabulary: it keeps its own KV
// per slot, caught up with the slot's tokens, and proposes greedy continuations.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ggml.h"
#include "llama.h"
#include "model_info.h"

namespace llamaserve {

class DraftModel {
public:
    // Throws ModelLoadError when the file cannot be loaded, and InvalidRequest when its
    // vocabulary is not the target's (drafted ids would mean other tokens).
    DraftModel(const std::string & path, const Model & target, int32_t n_parallel, int32_t n_ctx_seq,
               int32_t n_batch, int32_t n_gpu_layers, int32_t n_threads, ggml_threadpool_t threadpool);
    ~DraftModel();
    DraftModel(const DraftModel &) = delete;
    DraftModel & operator=(const DraftModel &) = delete;

    // One slot's ask: its tokens so far (prompt, output, the token about to be decoded)
    // and how many to draft; `draft` receives them (fewer while it still catches up).
    struct Ask {
        int32_t seq = 0;
        const std::vector<llama_token> * history = nullptr;
        int32_t wanted = 0;
        std::vector<llama_token> * draft = nullptr;
    };
    // Drafts for all asking slots together: one catch-up decode, then one per token.
    void propose(std::vector<Ask> & asks);
    // The slot's request is over: its draft KV goes with it.
    void forget(int32_t seq);
    // Recent seconds of the draft model's work per drafted token (what planning adds to
    // the target's cost of verifying it).
    double seconds_per_token() const { return seconds_per_token_; }

private:
    // Feeds what each slot's draft KV lacks (returns the tokens fed); `ready` stays false
    // for slots still catching up.
    int32_t catch_up(std::vector<Ask> & asks, std::vector<bool> & ready);
    llama_token greedy(int32_t batch_index) const;

    std::unique_ptr<Model> model_;
    llama_context * ctx_ = nullptr;
    llama_batch batch_{};
    int32_t n_batch_ = 0;
    int32_t n_vocab_ = 0;
    std::vector<std::vector<llama_token>> cached_;  // per slot: the tokens its draft KV holds
    double seconds_per_token_ = 0;
};

}  // namespace llamaserve
