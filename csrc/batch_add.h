// Appending one token to a llama_batch, for every part of the engine that builds one.
#pragma once
#include "llama.h"

namespace llamaserve {

inline void batch_add(llama_batch & batch, llama_token token, llama_pos pos, llama_seq_id seq, bool logits) {
    const int32_t i = batch.n_tokens++;
    batch.token[i] = token;
    batch.pos[i] = pos;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = seq;
    batch.logits[i] = logits;
}

}  // namespace llamaserve
