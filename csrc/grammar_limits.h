// Bounds on grammars and on grammar work (see Grammar), apart from the grammar's own headers
// so that the sampler, the engine and the bindings need none of llama.cpp's internal ones.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace llamaserve {

// Bounds on a grammar, measured with llama.cpp's sampler and ours (see README, "Grammars").
struct GrammarLimits {
    size_t max_bytes = 256 * 1024;  // GBNF text
    size_t max_nesting = 64;        // parentheses inside each other (llama.cpp parses them recursively)
    size_t max_elements = 200000;   // rules' elements, repetitions expanded
    // Alternatives open at once: the stacks one position of the grammar can continue with
    // (an alternation of N literals, a run of N optional items).
    size_t max_width = 512;
    // Stacks one character can lead to from one position, before duplicates merge: N for an
    // alternation of N literals, N*N/2 for a run of N optional items. A new step costs about this.
    uint64_t max_step_cost = 4096;
    uint64_t max_work = 1'000'000;  // steps that building the grammar's first state may take
};

// What one piece of grammar work may spend: time (a scheduler step's share; past it the
// request fails) or units of work (compiling: the same verdict on any machine). 0: no limit.
class GrammarBudget {
public:
    using Clock = std::chrono::steady_clock;
    explicit GrammarBudget(std::chrono::milliseconds time, uint64_t max_work = 0);
    // Counts one unit of work; now and then looks at the clock.
    void tick() {
        if (++ticks_ >= next_check_) check();
    }

private:
    void check();
    std::chrono::milliseconds time_;
    Clock::time_point deadline_;
    uint64_t max_work_;
    uint64_t ticks_ = 0;
    uint64_t next_check_ = 0;
};

}  // namespace llamaserve
