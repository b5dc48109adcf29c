// A reasoning model's thinking within one reply: where the reply stands (undecided, thinking,
// closing, answering), how many tokens the thinking took, and once its budget is spent, the
// closing marker the engine writes in the model's place so that it goes on to the answer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"

namespace llamaserve {

struct ReasoningSettings {
    std::string start;  // the opening marker; "" with `open` false: the request has no reasoning
    std::string end;    // the closing marker
    bool open = false;  // the prompt opened the thinking: the reply starts inside it
    int32_t budget = -1;  // most thinking tokens (0: close at once); -1: no limit
    std::vector<llama_token> closing;  // what the engine writes when the budget is spent
};

class Reasoning {
public:
    Reasoning() = default;
    explicit Reasoning(ReasoningSettings settings);

    // The token the engine emits next in the model's place (the closing marker), or
    // LLAMA_TOKEN_NULL when the model chooses.
    llama_token forced() const;
    // After each emitted token, with its text (control tokens spelled out).
    void observe(const std::string & text);
    // The reply is (or may still be) thinking: a grammar for the answer waits.
    bool before_answer() const { return phase_ != Phase::Answer; }
    int32_t tokens() const { return tokens_; }

private:
    enum class Phase { Undecided, Thinking, Closing, Answer };

    ReasoningSettings settings_;
    Phase phase_ = Phase::Answer;
    int32_t tokens_ = 0;    // thinking tokens so far (the markers included)
    int32_t pending_ = 0;   // tokens while undecided: thinking if the opener follows
    size_t forced_ = 0;     // closing tokens written so far
    std::string seen_;      // undecided: the reply so far; thinking: its last characters
};

}  // namespace llamaserve
