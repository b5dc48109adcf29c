#include "grammar.h"

#include <algorithm>
#include <limits>
#include <unordered_set>

#include "errors.h"

namespace llamaserve {

namespace {

// The tables of one request's grammar start afresh (from its current state) past these sizes,
// checked between tokens; within one token they may not grow past kMaxNodes.
constexpr size_t kCompactNodes = 100'000;
constexpr size_t kCompactSteps = 200'000;
constexpr size_t kMaxNodes = 1'000'000;
// Fewer candidates than this are checked one by one; more, by a walk over the vocabulary.
constexpr size_t kFewCandidates = 64;

// Whether `chr` fits the character class at `pos`, as llama.cpp's grammar decides.
bool match_char(const llama_grammar_element * pos, uint32_t chr) {
    const bool positive = pos->type == LLAMA_GRETYPE_CHAR || pos->type == LLAMA_GRETYPE_CHAR_ANY;
    bool found = false;
    do {
        if (pos[1].type == LLAMA_GRETYPE_CHAR_RNG_UPPER) {
            found = found || (pos->value <= chr && chr <= pos[1].value);
            pos += 2;
        } else {
            found = found || pos->type == LLAMA_GRETYPE_CHAR_ANY || pos->value == chr;
            pos += 1;
        }
    } while (pos->type == LLAMA_GRETYPE_CHAR_ALT);
    return found == positive;
}

// Whether some character that `partial` begins could fit the class at `pos`.
bool match_partial(const llama_grammar_element * pos, PartialUtf8 partial) {
    const bool positive = pos->type == LLAMA_GRETYPE_CHAR || pos->type == LLAMA_GRETYPE_CHAR_ANY;
    const int32_t n = partial.n_remain;
    if (n < 0 || (n == 1 && partial.value < 2)) return false;  // invalid, or an overlong 7-bit character
    uint32_t low = partial.value << (n * 6);
    const uint32_t high = low | ((1u << (n * 6)) - 1);
    if (low == 0 && n == 2) low = 1u << 11;
    if (low == 0 && n == 3) low = 1u << 16;
    do {
        if (pos->type == LLAMA_GRETYPE_CHAR_ANY) return true;
        if (pos[1].type == LLAMA_GRETYPE_CHAR_RNG_UPPER) {
            if (pos->value <= high && low <= pos[1].value) return positive;
            pos += 2;
        } else {
            if (low <= pos->value && pos->value <= high) return positive;
            pos += 1;
        }
    } while (pos->type == LLAMA_GRETYPE_CHAR_ALT);
    return !positive;
}

bool match_token(const llama_grammar_element & e, llama_token token) {
    const bool same = e.value == static_cast<uint32_t>(token);
    return e.type == LLAMA_GRETYPE_TOKEN ? same : !same;
}

uint64_t hash_of(const std::vector<int32_t> & stacks) {
    uint64_t h = 1469598103934665603ull;
    for (int32_t s : stacks) h = (h ^ static_cast<uint32_t>(s)) * 1099511628211ull;
    return h;
}

[[noreturn]] void too_ambiguous(size_t most) {
    throw InvalidRequest("grammar: too ambiguous: more than " + std::to_string(most) +
                         " alternatives are open at once");
}

size_t slot_of(uint64_t key, size_t mask) {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

}  // namespace

int32_t Grammar::Steps::find(uint64_t key) const {
    if (slots.empty()) return -1;
    const size_t mask = slots.size() - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (slots[i].first == key) return slots[i].second;
        if (slots[i].first == 0) return -1;
    }
}

void Grammar::Steps::insert(uint64_t key, int32_t value) {
    if ((used + 1) * 2 > slots.size()) {
        std::vector<std::pair<uint64_t, int32_t>> old(std::max<size_t>(1024, slots.size() * 2), {0, 0});
        old.swap(slots);
        used = 0;
        for (const auto & [k, v] : old) {
            if (k != 0) insert(k, v);
        }
    }
    const size_t mask = slots.size() - 1;
    size_t i = slot_of(key, mask);
    while (slots[i].first != 0 && slots[i].first != key) i = (i + 1) & mask;
    if (slots[i].first == 0) ++used;
    slots[i] = {key, value};
}

void Grammar::Steps::clear() {
    slots.clear();
    used = 0;
}

GrammarBudget::GrammarBudget(std::chrono::milliseconds time, uint64_t max_work)
    : time_(time), deadline_(time.count() > 0 ? Clock::now() + time : Clock::time_point::max()),
      max_work_(max_work) {
    check();
}

void GrammarBudget::check() {
    constexpr uint64_t kClockEvery = 1024;  // a clock read costs about as much as a few steps
    if (max_work_ > 0 && ticks_ >= max_work_) {
        throw InvalidRequest("grammar: too complex: its first state takes more than " + std::to_string(max_work_) +
                             " steps to build");
    }
    if (time_.count() > 0 && Clock::now() > deadline_) {
        throw InvalidRequest("grammar: matching it took longer than " + std::to_string(time_.count()) +
                             " ms for one token; simplify the grammar");
    }
    next_check_ = ticks_ + kClockEvery;
    if (max_work_ > 0) next_check_ = std::min(next_check_, max_work_);
}

Grammar::Grammar(std::shared_ptr<const GrammarRules> rules, std::shared_ptr<const GrammarVocab> vocab)
    : rules_(std::move(rules)), vocab_(std::move(vocab)) {
    nodes_.push_back({std::numeric_limits<uint32_t>::max(), -1});  // the empty stack
    states_.emplace_back();                                         // the dead state
    GrammarBudget budget(std::chrono::milliseconds(0), rules_->limits().max_work);
    State start;
    for (uint32_t alt : rules_->alternatives(rules_->root())) {
        const auto & c = closure(GrammarRules::is_end(*rules_->element(alt)) ? 0 : node(alt, 0), budget);
        start.insert(start.end(), c.begin(), c.end());
    }
    state_ = intern(start);
}

int32_t Grammar::node(uint32_t pos, int32_t parent) {
    const uint64_t key = (static_cast<uint64_t>(parent) << 32) | pos;
    const auto [it, added] = node_ids_.try_emplace(key, static_cast<int32_t>(nodes_.size()));
    if (added) {
        if (nodes_.size() >= kMaxNodes) {
            node_ids_.erase(it);
            throw InvalidRequest("grammar: too complex: its stacks outgrew " + std::to_string(kMaxNodes) + " entries");
        }
        nodes_.push_back({pos, parent});
    }
    return it->second;
}

int32_t Grammar::after_top(int32_t stack) {
    const Node top = nodes_[stack];
    const uint32_t after = rules_->next(top.pos);
    return GrammarRules::is_end(*rules_->element(after)) ? top.parent : node(after, top.parent);
}

const std::vector<int32_t> & Grammar::closure(int32_t stack, GrammarBudget & budget) {
    if (static_cast<size_t>(stack) < closed_.size() && closed_[stack]) return closures_[stack];
    const size_t most = rules_->limits().max_width;
    std::vector<int32_t> out;
    std::vector<int32_t> todo{stack};
    std::unordered_set<int32_t> seen;
    while (!todo.empty()) {
        const int32_t n = todo.back();
        todo.pop_back();
        if (!seen.insert(n).second) continue;
        budget.tick();
        const Node top = nodes_[n];
        if (n == 0 || rules_->element(top.pos)->type != LLAMA_GRETYPE_RULE_REF) {
            out.push_back(n);
            if (out.size() > most) too_ambiguous(most);
            continue;
        }
        // Enter the rule: each alternative on top of what follows the reference.
        const int32_t rest = GrammarRules::is_end(*rules_->element(top.pos + 1)) ? top.parent
                                                                                  : node(top.pos + 1, top.parent);
        for (uint32_t alt : rules_->alternatives(rules_->element(top.pos)->value)) {
            todo.push_back(GrammarRules::is_end(*rules_->element(alt)) ? rest : node(alt, rest));
        }
    }
    std::sort(out.begin(), out.end());
    if (closed_.size() < nodes_.size()) {
        closed_.resize(nodes_.size(), false);
        closures_.resize(nodes_.size());
    }
    closures_[stack] = std::move(out);
    closed_[stack] = true;
    return closures_[stack];
}

int32_t Grammar::intern(State & stacks) {
    std::sort(stacks.begin(), stacks.end());
    stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
    if (stacks.empty()) return 0;
    // A state is the union of what its stacks opened: up to a step's cost (GrammarLimits).
    const size_t most = rules_->limits().max_step_cost;
    if (stacks.size() > most) too_ambiguous(most);
    auto & same_hash = state_ids_[hash_of(stacks)];
    for (int32_t id : same_hash) {
        if (states_[id] == stacks) return id;
    }
    const auto id = static_cast<int32_t>(states_.size());
    states_.push_back(stacks);
    same_hash.push_back(id);
    return id;
}

int32_t Grammar::step(int32_t state, uint32_t cp, GrammarBudget & budget) {
    if (state == 0) return 0;
    const uint64_t key = (static_cast<uint64_t>(state) << 32) | cp;
    if (const int32_t known = steps_.find(key); known >= 0) return known;
    State next;
    for (size_t i = 0; i < states_[state].size(); ++i) {
        const int32_t stack = states_[state][i];
        if (stack == 0) continue;  // complete: nothing more to match
        const llama_grammar_element * top = rules_->element(nodes_[stack].pos);
        budget.tick();
        if (!GrammarRules::is_char(*top) || !match_char(top, cp)) continue;  // a token ends on a token
        const auto & c = closure(after_top(stack), budget);
        next.insert(next.end(), c.begin(), c.end());
    }
    const int32_t id = intern(next);
    steps_.insert(key, id);
    return id;
}

int32_t Grammar::walk(int32_t state, const uint32_t * cps, size_t n, GrammarBudget & budget) {
    for (size_t i = 0; i < n && state != 0; ++i) state = step(state, cps[i], budget);
    return state;
}

bool Grammar::ends_well(int32_t state, PartialUtf8 tail) const {
    if (state == 0 || tail.n_remain < 0) return false;
    if (tail.n_remain == 0) return true;
    for (int32_t stack : states_[state]) {
        const llama_grammar_element * top = rules_->element(nodes_[stack].pos);
        if (stack != 0 && GrammarRules::is_char(*top) && match_partial(top, tail)) return true;
    }
    return false;
}

bool Grammar::has_token_tops() const {
    for (int32_t stack : states_[state_]) {
        if (stack != 0 && GrammarRules::is_token(*rules_->element(nodes_[stack].pos))) return true;
    }
    return false;
}

bool Grammar::token_allowed_on_top(llama_token token) const {
    for (int32_t stack : states_[state_]) {
        const auto & top = *rules_->element(nodes_[stack].pos);
        if (stack != 0 && GrammarRules::is_token(top) && match_token(top, token)) return true;
    }
    return false;
}

bool Grammar::allows_text(llama_token token, const uint32_t * cps, size_t n, PartialUtf8 tail,
                          GrammarBudget & budget) {
    if (tail.n_remain < 0) return false;
    // A token element takes a token with whole characters (llama.cpp's rule).
    if (n > 0 && token_allowed_on_top(token)) return true;
    return ends_well(walk(state_, cps, n, budget), tail);
}

bool Grammar::allows(llama_token token, GrammarBudget & budget) {
    switch (vocab_->kind(token)) {
        case GrammarVocab::Kind::EndOfGeneration:
            return states_[state_].front() == 0;  // the empty stack: the grammar is complete
        case GrammarVocab::Kind::Never:
            // An invalid start may finish the character the last token began; nothing, never.
            if (partial_.n_remain <= 0 || vocab_->text_size(token) == 0 || vocab_->text(token)[0] == 0) return false;
            break;
        case GrammarVocab::Kind::Text:
            if (partial_.n_remain <= 0) {
                return allows_text(token, vocab_->cps(token), vocab_->n_cps(token), vocab_->tail(token), budget);
            }
            break;
    }
    const PartialUtf8 tail = decode_utf8(vocab_->text(token), vocab_->text_size(token), partial_, cps_);
    return allows_text(token, cps_.data(), cps_.size(), tail, budget);
}

void Grammar::apply(llama_token_data_array & candidates, GrammarBudget & budget) {
    constexpr float kRefused = -std::numeric_limits<float>::infinity();
    if (candidates.size < kFewCandidates || partial_.n_remain > 0) {
        for (size_t i = 0; i < candidates.size; ++i) {
            if (!allows(candidates.data[i].id, budget)) candidates.data[i].logit = kRefused;
        }
        return;
    }
    // Every text token, in code-point order: a token starts from the states of the prefix it
    // shares with the one before, and a dead prefix refuses all the tokens that share it.
    const GrammarVocab & vocab = *vocab_;
    allowed_.assign(vocab.size(), 0);
    const auto & order = vocab.order();
    const auto & shared = vocab.shared();
    path_.assign(1, state_);
    size_t known = 0;
    for (size_t i = 0; i < order.size(); ++i) {
        const llama_token t = order[i];
        const size_t n = vocab.sorted_n_cps(i);
        const uint32_t * cps = vocab.sorted_cps(i);
        size_t depth = std::min<size_t>(shared[i], known);
        int32_t state = path_[depth];
        path_.resize(depth + 1);
        while (depth < n && state != 0) {
            state = step(state, cps[depth++], budget);
            path_.push_back(state);
        }
        known = depth;
        allowed_[t] = depth == n && ends_well(state, vocab.tail(t));
        budget.tick();
    }
    if (has_token_tops()) {
        for (llama_token t : order) {
            if (vocab.n_cps(t) > 0 && token_allowed_on_top(t)) allowed_[t] = 1;
        }
    }
    const bool complete = states_[state_].front() == 0;
    for (size_t i = 0; i < candidates.size; ++i) {
        const llama_token t = candidates.data[i].id;
        const bool ok = vocab.kind(t) == GrammarVocab::Kind::EndOfGeneration ? complete : allowed_[t] != 0;
        if (!ok) candidates.data[i].logit = kRefused;
    }
}

void Grammar::accept(llama_token token, GrammarBudget & budget) {
    if (vocab_->kind(token) == GrammarVocab::Kind::EndOfGeneration) {
        if (states_[state_].front() == 0) return;
        throw EngineError("grammar: the end of generation came before the grammar was complete");
    }
    const PartialUtf8 tail = decode_utf8(vocab_->text(token), vocab_->text_size(token), partial_, cps_);
    State next;
    for (size_t i = 0; i < states_[state_].size(); ++i) {
        const int32_t stack = states_[state_][i];
        const auto & top = *rules_->element(nodes_[stack].pos);
        if (stack != 0 && GrammarRules::is_token(top) && match_token(top, token)) {
            const auto & c = closure(after_top(stack), budget);
            next.insert(next.end(), c.begin(), c.end());
        }
    }
    if (!cps_.empty()) {
        const int32_t reached = walk(state_, cps_.data(), cps_.size(), budget);
        next.insert(next.end(), states_[reached].begin(), states_[reached].end());
    } else {
        // Only part of a character: the stacks that can take characters wait for the rest.
        for (int32_t stack : states_[state_]) {
            if (stack != 0 && GrammarRules::is_char(*rules_->element(nodes_[stack].pos))) next.push_back(stack);
        }
    }
    const int32_t id = intern(next);
    if (id == 0) throw EngineError("grammar: the sampled token does not fit it");
    state_ = id;
    partial_ = tail;
    if (nodes_.size() > kCompactNodes || steps_.used > kCompactSteps) compact();
}

void Grammar::compact() {
    const std::vector<Node> old = std::move(nodes_);
    const State current = states_[state_];
    nodes_.assign(1, old[0]);
    node_ids_.clear();
    closures_.clear();
    closed_.clear();
    states_.assign(1, State{});
    state_ids_.clear();
    steps_.clear();
    State fresh;
    std::vector<uint32_t> chain;
    for (int32_t stack : current) {
        chain.clear();
        for (int32_t n = stack; n != 0; n = old[n].parent) chain.push_back(old[n].pos);
        int32_t id = 0;
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) id = node(*it, id);
        fresh.push_back(id);
    }
    state_ = intern(fresh);
}

}  // namespace llamaserve
