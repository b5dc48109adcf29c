// Turns generated token bytes into text that is safe to emit: never a split UTF-8
// character, never a byte of (or after) a stop string.
#pragma once
#include <string>
#include <vector>

namespace llamaserve {

class TextDecoder {
public:
    explicit TextDecoder(std::vector<std::string> stops = {});

    struct Step {
        std::string text;     // ready to emit now
        bool stopped = false; // a stop string matched; nothing after it may be emitted
    };

    // Feed the bytes of one token.
    Step push(const std::string & bytes);
    // End of generation: whatever was held back (partial stop prefix, broken UTF-8) goes out.
    std::string flush();

private:
    std::vector<std::string> stops_;
    std::string pending_bytes_; // an incomplete UTF-8 sequence at the end
    std::string held_;          // complete text that may be the start of a stop string
};

// Appends the valid UTF-8 prefix of `in` to `out`, replacing invalid bytes with U+FFFD.
// Returns the number of bytes consumed; an incomplete sequence at the end is left
// unconsumed unless `final` is set.
size_t append_valid_utf8(const std::string & in, std::string & out, bool final);

}  // namespace llamaserve
