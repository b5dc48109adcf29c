#include "speculation.h"

#include <algorithm>
#include <cmath>

namespace llamaserve {

namespace {

constexpr double kCostDecay = 0.98;      // a step's weight halves after ~35 steps
constexpr double kAcceptDecay = 0.8;     // a draft's weight halves after ~3 drafts
constexpr double kIdleDecay = 0.97;      // evidence halves after ~23 steps without drafts
constexpr double kPriorWeight = 2.0;  // the prior counts as two drafted tokens of evidence

}  // namespace

void StepCost::record(int32_t n_tokens, double seconds) {
    if (n_tokens <= 0 || !(seconds > 0)) return;
    const double n = n_tokens;
    w_ = w_ * kCostDecay + 1;
    sn_ = sn_ * kCostDecay + n;
    st_ = st_ * kCostDecay + seconds;
    snn_ = snn_ * kCostDecay + n * n;
    snt_ = snt_ * kCostDecay + n * seconds;
    refit();
}

void StepCost::refit() {
    const double mean_n = sn_ / w_;
    const double mean_t = st_ / w_;
    const double var_n = snn_ / w_ - mean_n * mean_n;
    if (var_n < 0.25) {
        // Steps of one size only say what that size costs: split it the prior's way.
        per_token_ = mean_t / (mean_n + 1);
        fixed_ = per_token_;
        return;
    }
    const double slope = (snt_ / w_ - mean_n * mean_t) / var_n;
    // Noise can make a fit nonsensical; a token never costs less than 1% of a step.
    per_token_ = std::max(slope, 0.01 * mean_t / mean_n);
    fixed_ = std::max(0.0, mean_t - per_token_ * mean_n);
}

double Acceptance::rate(double prior) const {
    return (accepted_ + prior * kPriorWeight) / (tried_ + kPriorWeight);
}

void Acceptance::record(int32_t drafted, int32_t accepted) {
    accepted_ = accepted_ * kAcceptDecay + accepted;
    tried_ = tried_ * kAcceptDecay + accepted + (accepted < drafted ? 1 : 0);
}

void Acceptance::idle() {
    accepted_ *= kIdleDecay;
    tried_ *= kIdleDecay;
}

void plan_drafts(const StepCost & cost, int32_t emitted, int32_t tokens, int32_t room,
                 std::vector<DraftCandidate> & candidates) {
    double expected = emitted;
    double seconds = cost.fixed() + cost.per_token() * tokens;
    std::vector<double> next_gain(candidates.size());
    for (size_t i = 0; i < candidates.size(); ++i) {
        candidates[i].granted = 0;
        next_gain[i] = candidates[i].acceptance;
    }
    for (int32_t left = room; left > 0; --left) {
        // The token most likely to be accepted next, of any slot.
        size_t best = candidates.size();
        for (size_t i = 0; i < candidates.size(); ++i) {
            if (candidates[i].granted >= candidates[i].available) continue;
            if (best == candidates.size() || next_gain[i] > next_gain[best]) best = i;
        }
        if (best == candidates.size()) return;
        // Worth it when its expected tokens per second beat the step's so far.
        if (next_gain[best] * seconds <= expected * cost.per_token()) return;
        expected += next_gain[best];
        seconds += cost.per_token();
        ++candidates[best].granted;
        next_gain[best] *= candidates[best].acceptance;
    }
}

}  // namespace llamaserve
