#include "grammar_cache.h"

namespace llamaserve {

std::shared_ptr<const GrammarRules> GrammarCache::get(const std::string & text, const std::string & root,
                                                      const llama_vocab * vocab, const GrammarLimits & limits) {
    // Rules' names cannot hold a newline, so root + '\n' + text names one grammar.
    std::string key = root + '\n' + text;
    {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (it->first == key) {
                entries_.splice(entries_.begin(), entries_, it);
                return it->second;
            }
        }
    }
    // Compiled outside the lock: another grammar need not wait (two threads may compile one twice).
    auto rules = std::make_shared<const GrammarRules>(text, root, vocab, limits);
    std::lock_guard<std::mutex> lock(mu_);
    entries_.emplace_front(std::move(key), rules);
    if (entries_.size() > capacity_) entries_.pop_back();
    return rules;
}

}  // namespace llamaserve
