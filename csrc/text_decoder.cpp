#include "text_decoder.h"

#include <algorithm>

namespace llamaserve {

namespace {

const char kReplacement[] = "\xEF\xBF\xBD";

// Length of the UTF-8 sequence starting with `lead`, or 0 if it cannot start one.
size_t sequence_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Second-byte ranges that rule out overlong forms, surrogates and code points > U+10FFFF.
bool second_byte_ok(unsigned char lead, unsigned char second) {
    switch (lead) {
        case 0xE0: return second >= 0xA0 && second <= 0xBF;
        case 0xED: return second >= 0x80 && second <= 0x9F;
        case 0xF0: return second >= 0x90 && second <= 0xBF;
        case 0xF4: return second >= 0x80 && second <= 0x8F;
        default: return is_continuation(second);
    }
}

}  // namespace

size_t append_valid_utf8(const std::string & in, std::string & out, bool final) {
    size_t i = 0;
    const size_t n = in.size();
    while (i < n) {
        const auto lead = static_cast<unsigned char>(in[i]);
        const size_t len = sequence_length(lead);
        if (len == 1) {
            out.push_back(in[i++]);
            continue;
        }
        if (len == 0) {
            out += kReplacement;
            ++i;
            continue;
        }
        size_t have = 1;
        bool valid = true;
        while (have < len && i + have < n) {
            const auto c = static_cast<unsigned char>(in[i + have]);
            if (have == 1 ? !second_byte_ok(lead, c) : !is_continuation(c)) {
                valid = false;
                break;
            }
            ++have;
        }
        if (valid && have == len) {
            out.append(in, i, len);
            i += len;
        } else if (valid && !final) {
            break;  // incomplete at the end: wait for the next token's bytes
        } else {
            out += kReplacement;
            i += valid ? have : std::max<size_t>(have, 1);
        }
    }
    return i;
}

TextDecoder::TextDecoder(std::vector<std::string> stops) {
    for (auto & s : stops) {
        if (!s.empty()) stops_.push_back(std::move(s));
    }
}

TextDecoder::Step TextDecoder::push(const std::string & bytes) {
    Step step;
    pending_bytes_ += bytes;
    std::string text = std::move(held_);
    held_.clear();
    const size_t used = append_valid_utf8(pending_bytes_, text, false);
    pending_bytes_.erase(0, used);

    if (stops_.empty()) {
        step.text = std::move(text);
        return step;
    }
    size_t first_stop = std::string::npos;
    for (const auto & stop : stops_) {
        first_stop = std::min(first_stop, text.find(stop));
    }
    if (first_stop != std::string::npos) {
        text.resize(first_stop);
        step.text = std::move(text);
        step.stopped = true;
        pending_bytes_.clear();
        return step;
    }
    // Hold back the longest tail that could still grow into a stop string.
    size_t hold = 0;
    for (const auto & stop : stops_) {
        const size_t max_len = std::min(stop.size() - 1, text.size());
        for (size_t len = max_len; len > hold; --len) {
            if (text.compare(text.size() - len, len, stop, 0, len) == 0) {
                hold = len;
                break;
            }
        }
    }
    held_ = text.substr(text.size() - hold);
    text.resize(text.size() - hold);
    step.text = std::move(text);
    return step;
}

std::string TextDecoder::flush() {
    std::string out = std::move(held_);
    held_.clear();
    append_valid_utf8(pending_bytes_, out, true);
    pending_bytes_.clear();
    return out;
}

}  // namespace llamaserve
