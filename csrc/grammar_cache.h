// Compiled grammars by their text: the n choices of a request, or clients that send the same
// schema again, compile it once (and a caller may compile one ahead, off its event loop).
#pragma once
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "grammar_rules.h"

namespace llamaserve {

class GrammarCache {
public:
    explicit GrammarCache(size_t capacity = 32) : capacity_(capacity) {}

    // The compiled rules of `text` (InvalidRequest when it is no grammar, or over a limit).
    std::shared_ptr<const GrammarRules> get(const std::string & text, const std::string & root,
                                            const llama_vocab * vocab, const GrammarLimits & limits);

private:
    using Entry = std::pair<std::string, std::shared_ptr<const GrammarRules>>;  // root + '\n' + text
    const size_t capacity_;
    std::mutex mu_;
    std::list<Entry> entries_;  // most recently used first
};

}  // namespace llamaserve
