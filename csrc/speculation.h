// How many drafted tokens a decode step should verify: a cost model of the step, fitted on
// this machine as it runs, against each slot's recent acceptance. On a CPU a step costs
// about the same per token at any size, so drafts pay only when most are accepted; on a
// GPU a few more tokens cost nearly nothing, so drafts run long. Many busy slots make a
// step's own tokens cheap already, and drafts then yield to them.
#pragma once
#include <cstdint>
#include <vector>

namespace llamaserve {

// Seconds of a decode step (decode and sampling) whose n tokens all want logits, fitted
// as fixed + per_token * n over recent steps (exponentially weighted least squares).
class StepCost {
public:
    void record(int32_t n_tokens, double seconds);
    double fixed() const { return fixed_; }
    double per_token() const { return per_token_; }

private:
    void refit();

    double w_ = 0, sn_ = 0, st_ = 0, snn_ = 0, snt_ = 0;
    // Before any step: a token costs as much as the step's fixed part (a CPU's shape).
    double fixed_ = 1.0;
    double per_token_ = 1.0;
};

// The chance that a slot's next drafted token is accepted, from its recent drafts and the
// prior chance of the draft on offer (see ngram_draft).
class Acceptance {
public:
    double rate(double prior) const;
    void record(int32_t drafted, int32_t accepted);
    // A step without a draft: old evidence fades, so a slot that stopped drafting tries
    // again once the text may have turned repetitive.
    void idle();

private:
    double accepted_ = 0;
    double tried_ = 0;  // accepted tokens and first rejections (each draft ends at one)
};

// One slot's candidate draft for this step.
struct DraftCandidate {
    double acceptance = 0;  // Acceptance::rate()
    int32_t available = 0;  // drafted tokens on offer (or the most a draft model may make)
    int32_t granted = 0;    // out: how many of them this step verifies
};

// Grants drafted tokens while each raises the step's expected tokens per second: the j-th
// token of a slot's draft is emitted with probability acceptance^j, and costs per_token.
// `emitted` tokens come from the step without drafts, which carries `tokens` in all;
// at most `room` drafted tokens in all.
void plan_drafts(const StepCost & cost, int32_t emitted, int32_t tokens, int32_t room,
                 std::vector<DraftCandidate> & candidates);

}  // namespace llamaserve
