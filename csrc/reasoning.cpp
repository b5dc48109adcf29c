#include "reasoning.h"

#include <utility>

namespace llamaserve {

namespace {

std::string left_trimmed(const std::string & text) {
    const size_t first = text.find_first_not_of(" \t\r\n");
    return first == std::string::npos ? std::string() : text.substr(first);
}

}  // namespace

Reasoning::Reasoning(ReasoningSettings settings) : settings_(std::move(settings)) {
    if (settings_.end.empty()) return;  // no markers: never thinking
    if (settings_.open) {
        phase_ = settings_.budget == 0 && !settings_.closing.empty() ? Phase::Closing : Phase::Thinking;
    } else if (!settings_.start.empty()) {
        phase_ = Phase::Undecided;
    }
}

llama_token Reasoning::forced() const {
    return phase_ == Phase::Closing ? settings_.closing[forced_] : LLAMA_TOKEN_NULL;
}

void Reasoning::observe(const std::string & text) {
    switch (phase_) {
        case Phase::Answer:
            return;
        case Phase::Closing:
            if (++forced_ == settings_.closing.size()) phase_ = Phase::Answer;
            return;
        case Phase::Undecided: {
            // Models think first: the reply either opens with the marker or has no thinking.
            ++pending_;
            seen_ += text;
            const std::string head = left_trimmed(seen_);
            if (head.size() < settings_.start.size()) {
                if (settings_.start.compare(0, head.size(), head) != 0) phase_ = Phase::Answer;
                return;
            }
            if (head.compare(0, settings_.start.size(), settings_.start) != 0) {
                phase_ = Phase::Answer;
                return;
            }
            phase_ = Phase::Thinking;
            tokens_ = pending_;
            seen_ = head.substr(settings_.start.size());
            break;
        }
        case Phase::Thinking:
            ++tokens_;
            seen_ += text;
            break;
    }
    if (seen_.find(settings_.end) != std::string::npos) {  // the model closed it itself
        phase_ = Phase::Answer;
        return;
    }
    if (seen_.size() > 2 * settings_.end.size()) seen_.erase(0, seen_.size() - settings_.end.size());
    if (settings_.budget >= 0 && tokens_ >= settings_.budget) {
        phase_ = settings_.closing.empty() ? Phase::Answer : Phase::Closing;
        forced_ = 0;
    }
}

}  // namespace llamaserve
