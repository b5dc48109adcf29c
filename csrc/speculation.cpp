#include "speculation.h"

#include <algorithm>

namespace llamaserve {

namespace {

constexpr double kCostWeight = 0.2;      // a new measurement's weight in its size's mean
constexpr double kAcceptDecay = 0.8;     // a draft's weight halves after ~3 drafts
constexpr double kIdleDecay = 0.97;      // evidence halves after ~23 steps without drafts
constexpr double kPriorWeight = 2.0;     // the prior counts as two drafts' evidence per depth

void blend(double & mean, double value) {
    mean = mean == 0 ? value : (1 - kCostWeight) * mean + kCostWeight * value;
}

}  // namespace

void StepCost::record_decode(int32_t n_tokens, double seconds) {
    if (n_tokens <= 0 || n_tokens > kMaxTokens || !(seconds > 0)) return;
    blend(measured_[n_tokens], seconds);
}

void StepCost::record_prefill(int32_t n_tokens, double seconds) {
    if (n_tokens < 32 || !(seconds > 0)) return;  // short ones are mostly the fixed cost
    blend(per_prompt_token_, seconds / n_tokens);
}

double StepCost::seconds(int32_t n) const {
    n = std::max<int32_t>(1, n);
    // The nearest measured sizes below and above, interpolated.
    int32_t lo = std::min(n, kMaxTokens);
    while (lo > 0 && measured_[lo] == 0) --lo;
    int32_t hi = n;
    while (hi <= kMaxTokens && measured_[hi] == 0) ++hi;
    if (lo == n && n <= kMaxTokens) return measured_[n];
    if (lo > 0 && hi <= kMaxTokens) {
        return measured_[lo] + (measured_[hi] - measured_[lo]) * (n - lo) / double(hi - lo);
    }
    // Beyond what was measured: each further token costs what one more cost on average over
    // the measured sizes, and never less than a prompt token (a drafted one also wants its
    // row of logits, most of a step for a large vocabulary). One size measured: as if a
    // token cost what the step's fixed part does, so that larger steps get tried (and then
    // measured). Nothing measured: a unit a token.
    if (lo > 0) {
        int32_t first = 1;
        while (measured_[first] == 0) ++first;
        double per_token = lo > first ? (measured_[lo] - measured_[first]) / (lo - first) : measured_[lo] / (lo + 1);
        per_token = std::max(per_token, per_prompt_token_);
        return measured_[lo] + per_token * (n - lo);
    }
    if (hi <= kMaxTokens) return measured_[hi] * (n + 1) / (hi + 1);
    return 1.0 + n;
}

void Acceptance::rates(const std::vector<double> & prior, int32_t depth, std::vector<double> & out) const {
    out.clear();
    double rate = prior.empty() ? 0.5 : prior[0];
    for (int32_t j = 0; j < depth; ++j) {
        if (j < static_cast<int32_t>(prior.size())) rate = prior[j];
        if (j < kDepths) rate = (accepted_[j] + rate * kPriorWeight) / (tried_[j] + kPriorWeight);
        out.push_back(rate);
    }
}

void initial_rates(DraftSource source, int32_t depth, std::vector<double> & out) {
    static constexpr double kByLength[] = {0.4, 0.6, 0.7, 0.8};  // n-grams of 1 to 4 tokens
    constexpr double kRunRate = 0.95;  // a drafted token once the ones before it were accepted
    double first = kByLength[std::clamp<int32_t>(source - kFromNgram1, 0, 3)];
    if (source == kFromDraftModel) first = 0.7;
    if (source == kFromPrediction) first = 0.9;
    out.assign(std::max(0, depth), kRunRate);
    if (!out.empty()) out[0] = first;
}

void survival_from_rates(const std::vector<double> & rates, std::vector<double> & out) {
    out.clear();
    double alive = 1.0;
    for (double r : rates) {
        alive *= r;
        out.push_back(alive);
    }
}

void Acceptance::record(int32_t drafted, int32_t accepted) {
    for (int32_t j = 0; j < kDepths; ++j) {
        tried_[j] *= kAcceptDecay;
        accepted_[j] *= kAcceptDecay;
        if (j < drafted && j <= accepted) {  // depth j was reached, and tried
            tried_[j] += 1;
            if (j < accepted) accepted_[j] += 1;
        }
    }
}

void Acceptance::idle() {
    for (int32_t j = 0; j < kDepths; ++j) {
        tried_[j] *= kIdleDecay;
        accepted_[j] *= kIdleDecay;
    }
}

void plan_drafts(const StepCost & cost, int32_t emitted, int32_t tokens, int32_t room, bool pass_per_draft,
                 double making, std::vector<DraftCandidate> & candidates) {
    // Take tokens likeliest first (each slot's in order: its j-th only after its (j-1)-th)
    // and keep the prefix of that sequence with the best expected rate.
    std::vector<int32_t> next(candidates.size(), 0);
    std::vector<size_t> order;
    double expected = emitted;
    double seconds = cost.seconds(tokens);
    double best_rate = expected / seconds;
    int32_t drafted = 0;
    size_t best_count = 0;
    for (int32_t k = 0; k < room; ++k) {
        size_t pick = candidates.size();
        for (size_t i = 0; i < candidates.size(); ++i) {
            if (next[i] >= static_cast<int32_t>(candidates[i].survival.size())) continue;
            if (pick == candidates.size() || candidates[i].survival[next[i]] > candidates[pick].survival[next[pick]]) {
                pick = i;
            }
        }
        if (pick == candidates.size()) break;
        const int32_t j = next[pick]++;
        expected += candidates[pick].survival[j];
        order.push_back(pick);
        ++drafted;
        if (pass_per_draft) {
            seconds += cost.seconds(j + 1) - (j > 0 ? cost.seconds(j) : 0.0) + making;
        } else {
            seconds = cost.seconds(tokens + drafted) + making * drafted;
        }
        const double rate = expected / seconds;
        if (rate > best_rate) {
            best_rate = rate;
            best_count = order.size();
        }
    }
    for (auto & c : candidates) c.granted = 0;
    for (size_t k = 0; k < best_count; ++k) ++candidates[order[k]].granted;
}

}  // namespace llamaserve
