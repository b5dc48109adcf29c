// How many drafted tokens a decode step should verify: the cost of a step of each size,
// measured on this machine as it runs, against each slot's record of accepted runs. On a
// CPU a few more tokens cost nearly as much as a step of their own while long batches
// amortize; on a GPU a few more cost nearly nothing; with many busy slots a step's own
// tokens are cheap already. The planner verifies whatever prefix of the likeliest drafted
// tokens makes the step's expected tokens per second highest, so drafts run long where
// that pays and yield where it does not.
#pragma once
#include <cstdint>
#include <vector>

namespace llamaserve {

// Seconds of a decode step (decode and sampling) of n tokens that all want logits.
class StepCost {
public:
    static constexpr int32_t kMaxTokens = 128;  // sizes measured one by one; larger ones extrapolated

    // A step without prompt tokens.
    void record_decode(int32_t n_tokens, double seconds);
    // A step with prompt tokens: its seconds per token say what long batches cost before a
    // long decode step has been measured.
    void record_prefill(int32_t n_tokens, double seconds);
    double seconds(int32_t n_tokens) const;

private:
    double measured_[kMaxTokens + 1] = {};  // exponentially weighted mean per size (0: none yet)
    double per_prompt_token_ = 0;
};

// A record of how far drafts were accepted: the chance that the j-th drafted token is
// accepted once the ones before it were. Acceptance comes in runs (a copied passage is
// copied on), so each depth has its own rate. The engine keeps one record per kind of
// draft (see DraftSource), all slots together, and each slot its own on top of it.
class Acceptance {
public:
    static constexpr int32_t kDepths = 64;

    // Rates at the first `depth` depths, `prior` standing in for evidence this record does
    // not have (a depth never tried takes the rate of the one before it).
    void rates(const std::vector<double> & prior, int32_t depth, std::vector<double> & out) const;
    void record(int32_t drafted, int32_t accepted);
    // A step without a draft: old evidence fades, so a slot whose drafts failed tries again
    // once its text may have turned repetitive.
    void idle();

private:
    double tried_[kDepths] = {};
    double accepted_[kDepths] = {};
};

// Where a draft came from, for the engine's per-kind acceptance (ngram_draft's result).
enum DraftSource : int32_t {
    kFromDraftModel = 0,
    kFromNgram1 = 1,  // ... kFromNgram1 + n - 1 for an n-gram match, n up to kNgramMax
    kFromPrediction = 5,
    kDraftSources = 6,
};
// Before any evidence: how likely each kind's drafted tokens are to be accepted, at each of
// the first `depth` depths. The first token is the uncertain one; once it is accepted a
// copied passage tends to go on being copied.
void initial_rates(DraftSource source, int32_t depth, std::vector<double> & out);

// The chance that a draft's first j+1 tokens are all accepted, from per-depth rates.
void survival_from_rates(const std::vector<double> & rates, std::vector<double> & out);

// One slot's candidate draft for this step.
struct DraftCandidate {
    std::vector<double> survival;  // chance that its first j+1 drafted tokens are accepted
    int32_t granted = 0;           // out: how many of them this step verifies
};

// Grants drafted tokens to a step that emits `emitted` tokens from `tokens` in all without
// them, at most `room`: the likeliest tokens first, as many as maximize expected tokens
// per second of the step. With `pass_per_draft`, each slot's drafted tokens cost a pass
// of their own: llama.cpp splits a batch over per-sequence caches into ubatches of equally
// many tokens per sequence, so one slot's longer run is decoded after the others'.
// `making` is what drafting itself costs per token (a draft model's decode; 0 for n-grams).
void plan_drafts(const StepCost & cost, int32_t emitted, int32_t tokens, int32_t room, bool pass_per_draft,
                 double making, std::vector<DraftCandidate> & candidates);

}  // namespace llamaserve
