#include "grammar_rules.h"

#include <algorithm>
#include <cctype>

#include "errors.h"

namespace llamaserve {

namespace {

// Counts saturate here: a width this large is refused anyway.
constexpr uint64_t kSaturated = 1ull << 40;
uint64_t add(uint64_t a, uint64_t b) { return std::min(kSaturated, a + b); }
uint64_t mul(uint64_t a, uint64_t b) {
    if (a == 0 || b == 0) return 0;
    return a > kSaturated / b ? kSaturated : a * b;
}

// What llama.cpp's parser would build, estimated from the text before it runs: the deepest
// nesting of parentheses (it recurses on each) and the elements once repetitions are spelled
// out (`"a long literal"{2000}` copies the literal 2000 times).
struct TextShape {
    size_t nesting = 0;
    uint64_t elements = 0;
};

TextShape shape_of(const std::string & text) {
    TextShape shape;
    size_t depth = 0;
    uint64_t last = 1;  // elements of the item a repetition would copy
    const size_t n = text.size();
    for (size_t i = 0; i < n; ++i) {
        const char c = text[i];
        if (c == '"' || c == '[') {
            const char close = c == '"' ? '"' : ']';
            const size_t start = i;
            for (++i; i < n && text[i] != close; ++i) {
                if (text[i] == '\\') ++i;
            }
            last = std::max<uint64_t>(1, i - start);
            shape.elements += last;
        } else if (c == '#') {
            while (i < n && text[i] != '\n' && text[i] != '\r') ++i;
        } else if (c == '(') {
            shape.nesting = std::max(shape.nesting, ++depth);
            last = 1;
        } else if (c == ')') {
            if (depth > 0) --depth;
            last = 1;  // the group becomes one rule reference
        } else if (c == '{') {
            // {m}, {m,} or {m,n}: about max(m, n) copies (llama.cpp caps both at 2000).
            uint64_t most = 0;
            for (++i; i < n && text[i] != '}'; ++i) {
                if (!std::isdigit(static_cast<unsigned char>(text[i]))) continue;
                uint64_t value = 0;
                while (i < n && std::isdigit(static_cast<unsigned char>(text[i])) && value < kSaturated) {
                    value = value * 10 + (text[i++] - '0');
                }
                --i;
                most = std::max(most, std::min<uint64_t>(value, 2001));
            }
            shape.elements = add(shape.elements, mul(last, most + 1));
        } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '<' || c == '|') {
            while (i + 1 < n && (std::isalnum(static_cast<unsigned char>(text[i + 1])) || text[i + 1] == '-')) ++i;
            ++shape.elements;  // a rule reference, `.`, a token or an alternative
            last = 1;
        }
    }
    return shape;
}

// Spaces, newlines and comments, as llama.cpp's parser skips them between rules.
const char * skip_space(const char * pos) {
    while (*pos) {
        if (*pos == '#') {
            while (*pos && *pos != '\n' && *pos != '\r') ++pos;
        } else if (*pos == ' ' || *pos == '\t' || *pos == '\n' || *pos == '\r') {
            ++pos;
        } else {
            break;
        }
    }
    return pos;
}

std::string short_text(const std::string & s) {
    return s.size() <= 80 ? s : s.substr(0, 77) + "...";
}

}  // namespace

GrammarRules::GrammarRules(const std::string & text, const std::string & root, const llama_vocab * vocab,
                           const GrammarLimits & limits)
    : limits_(limits) {
    if (text.size() > limits.max_bytes) {
        throw InvalidRequest("grammar: longer than " + std::to_string(limits.max_bytes) + " bytes");
    }
    const TextShape shape = shape_of(text);
    if (shape.nesting > limits.max_nesting) {
        throw InvalidRequest("grammar: parentheses nested deeper than " + std::to_string(limits.max_nesting));
    }
    if (shape.elements > limits.max_elements) {
        throw InvalidRequest("grammar: too large: more than " + std::to_string(limits.max_elements) +
                             " elements once repetitions are spelled out");
    }
    // Rule by rule rather than llama_grammar_parser::parse, which prints the whole text to
    // stderr on an error: the error goes to the client instead.
    llama_grammar_parser parser(vocab);
    try {
        const char * pos = skip_space(text.c_str());
        while (*pos) pos = parser.parse_rule(pos);
    } catch (const std::exception & e) {
        throw InvalidRequest("grammar: could not be parsed: " + short_text(e.what()));
    }
    const auto defined = [&](uint32_t id) { return id < parser.rules.size() && !parser.rules[id].empty(); };
    for (const auto & [name, id] : parser.symbol_ids) {
        if (!defined(id)) throw InvalidRequest("grammar: rule '" + short_text(name) + "' is not defined");
    }
    const auto found = parser.symbol_ids.find(root);
    if (found == parser.symbol_ids.end() || found->second >= parser.rules.size()) {
        throw InvalidRequest("grammar: no rule named '" + short_text(root) + "'");
    }
    root_ = found->second;
    flatten(parser);
    analyse(parser);
    if (width_ > limits.max_width || step_cost_ > limits.max_step_cost) {
        const bool wide = width_ > limits.max_width;
        const uint64_t measured = wide ? width_ : step_cost_;
        throw InvalidRequest("grammar: too ambiguous: " +
                             (measured >= kSaturated ? std::string("countless") : std::to_string(measured)) +
                             (wide ? " alternatives can be open at one point (at most " + std::to_string(limits.max_width)
                                   : " stacks can follow one character (at most " + std::to_string(limits.max_step_cost)) +
                             "); factor common prefixes out of alternations, and avoid long runs of optional items");
    }
}

uint32_t GrammarRules::next(uint32_t pos) const {
    if (!is_char(elements_[pos])) return pos + 1;
    ++pos;
    while (elements_[pos].type == LLAMA_GRETYPE_CHAR_ALT || elements_[pos].type == LLAMA_GRETYPE_CHAR_RNG_UPPER) ++pos;
    return pos;
}

void GrammarRules::flatten(const llama_grammar_parser & parser) {
    const size_t n_rules = parser.rules.size();
    std::vector<uint32_t> offset(n_rules);
    size_t total = 0;
    for (const auto & rule : parser.rules) total += rule.size();
    if (total > limits_.max_elements) {
        throw InvalidRequest("grammar: too large: more than " + std::to_string(limits_.max_elements) +
                             " elements once repetitions are spelled out");
    }
    elements_.reserve(total);
    alternatives_.resize(n_rules);
    for (size_t r = 0; r < n_rules; ++r) {
        offset[r] = static_cast<uint32_t>(elements_.size());
        alternatives_[r].push_back(offset[r]);
        for (const auto & e : parser.rules[r]) {
            elements_.push_back(e);
            if (e.type == LLAMA_GRETYPE_ALT) alternatives_[r].push_back(static_cast<uint32_t>(elements_.size()));
        }
        if (elements_.empty() || elements_.back().type != LLAMA_GRETYPE_END) elements_.push_back({LLAMA_GRETYPE_END, 0});
    }
}

void GrammarRules::analyse(const llama_grammar_parser & parser) {
    const size_t n_rules = alternatives_.size();
    // Each alternative's element starts, the rule it belongs to, and whether it has a terminal.
    struct Alternative {
        uint32_t rule;
        std::vector<uint32_t> items;
        bool terminal = false;
    };
    std::vector<Alternative> alts;
    std::vector<std::vector<uint32_t>> used_in(n_rules);  // rule -> alternatives (per reference)
    for (uint32_t r = 0; r < n_rules; ++r) {
        for (uint32_t start : alternatives_[r]) {
            Alternative alt{r, {}, false};
            for (uint32_t pos = start; !is_end(elements_[pos]); pos = next(pos)) {
                alt.items.push_back(pos);
                if (elements_[pos].type == LLAMA_GRETYPE_RULE_REF) {
                    used_in[elements_[pos].value].push_back(static_cast<uint32_t>(alts.size()));
                } else {
                    alt.terminal = true;
                }
            }
            alts.push_back(std::move(alt));
        }
    }
    // Rules that can match nothing: a worklist over the references still to become nullable.
    std::vector<bool> nullable(n_rules, false);
    std::vector<size_t> missing(alts.size());
    std::vector<uint32_t> work;
    for (size_t a = 0; a < alts.size(); ++a) {
        missing[a] = alts[a].items.size();
        if (missing[a] == 0 && !nullable[alts[a].rule]) {
            nullable[alts[a].rule] = true;
            work.push_back(alts[a].rule);
        }
    }
    while (!work.empty()) {
        const uint32_t r = work.back();
        work.pop_back();
        for (uint32_t a : used_in[r]) {
            if (--missing[a] == 0 && !alts[a].terminal && !nullable[alts[a].rule]) {
                nullable[alts[a].rule] = true;
                work.push_back(alts[a].rule);
            }
        }
    }
    // A rule's leftmost references (those after nothing but nullable ones): a cycle among them is
    // left recursion. Depth-first without recursion, so that a long chain cannot overflow the stack.
    std::vector<std::vector<uint32_t>> leftmost(n_rules);
    for (const auto & alt : alts) {
        for (uint32_t pos : alt.items) {
            if (elements_[pos].type != LLAMA_GRETYPE_RULE_REF) break;
            leftmost[alt.rule].push_back(elements_[pos].value);
            if (!nullable[elements_[pos].value]) break;
        }
    }
    std::vector<uint8_t> color(n_rules, 0);  // 0 new, 1 on the path, 2 done
    std::vector<uint32_t> post_order;
    std::vector<std::pair<uint32_t, size_t>> path;
    for (uint32_t start = 0; start < n_rules; ++start) {
        if (color[start]) continue;
        path.push_back({start, 0});
        color[start] = 1;
        while (!path.empty()) {
            auto & [r, i] = path.back();
            if (i == leftmost[r].size()) {
                color[r] = 2;
                post_order.push_back(r);
                path.pop_back();
                continue;
            }
            const uint32_t s = leftmost[r][i++];
            if (color[s] == 1) {
                std::string name;
                for (const auto & [n, id] : parser.symbol_ids) {
                    if (id == s) name = n;
                }
                throw InvalidRequest("grammar: rule '" + short_text(name) + "' is left-recursive");
            }
            if (color[s] == 0) {
                color[s] = 1;
                path.push_back({s, 0});
            }
        }
    }
    // Paths from a position to a character (or token) to match next, without matching anything
    // first, each terminal weighted: `into[r]` from the start of rule r, `empty[r]` the paths
    // through r matching nothing. Leftmost references come first in post-order, and nothing
    // else is needed for them.
    std::vector<std::vector<uint32_t>> alts_of(n_rules);
    for (uint32_t a = 0; a < alts.size(); ++a) alts_of[alts[a].rule].push_back(a);
    std::vector<uint64_t> empty(n_rules, 0);
    const auto into_rules = [&](const auto & weight, std::vector<uint64_t> & into, bool count_empty) {
        into.assign(n_rules, 0);
        for (uint32_t r : post_order) {
            for (uint32_t a : alts_of[r]) {
                uint64_t to_char = 0, through = 1;
                for (uint32_t pos : alts[a].items) {
                    if (elements_[pos].type != LLAMA_GRETYPE_RULE_REF) {
                        to_char = add(to_char, mul(through, weight(pos)));
                        through = 0;
                        break;
                    }
                    const uint32_t s = elements_[pos].value;
                    to_char = add(to_char, mul(through, into[s]));
                    through = mul(through, empty[s]);
                    if (through == 0) break;
                }
                into[r] = add(into[r], to_char);
                if (count_empty) empty[r] = add(empty[r], through);
            }
        }
    };
    // The same from every position, going back from the end of each alternative.
    const auto from_positions = [&](const auto & weight, const std::vector<uint64_t> & into, const auto & visit) {
        for (const auto & alt : alts) {
            uint64_t to_char = 0, through = 1;
            for (size_t k = alt.items.size(); k-- > 0;) {
                const uint32_t pos = alt.items[k];
                const auto & e = elements_[pos];
                if (e.type == LLAMA_GRETYPE_RULE_REF) {
                    to_char = add(into[e.value], mul(empty[e.value], to_char));
                    through = mul(empty[e.value], through);
                } else {
                    to_char = weight(pos);
                    through = 0;
                }
                visit(pos, to_char, through);
            }
        }
    };
    // What each position opens before matching anything: within its rule (`to_char`), and the
    // paths that leave the rule empty-handed (`through`), which open the caller's continuation.
    const auto one = [](uint32_t) -> uint64_t { return 1; };
    std::vector<uint64_t> first;
    into_rules(one, first, true);
    std::vector<uint64_t> to_char(elements_.size(), 0), through(elements_.size(), 1);  // an end: leave
    from_positions(one, first, [&](uint32_t pos, uint64_t c, uint64_t t) {
        to_char[pos] = c;
        through[pos] = t;
    });
    // Leaving rule R opens the continuation of the call that entered it: the widest such,
    // `leave[R]`, found by raising it along calls in tail position until nothing changes
    // (capped: a continuation that grows with recursion is refused as too ambiguous).
    const uint64_t cap = std::max<uint64_t>(limits_.max_width, limits_.max_step_cost) + 1;
    std::vector<uint64_t> leave(n_rules, 0);
    leave[root_] = 1;  // the empty stack: the grammar is complete
    struct Call {
        uint32_t callee;
        uint64_t opens;  // stacks the rest of the caller's alternative opens
        bool tail;       // the rest can match nothing: the caller's own continuation follows
    };
    std::vector<std::vector<Call>> calls_in(n_rules);
    for (const auto & alt : alts) {
        for (size_t k = 0; k < alt.items.size(); ++k) {
            const auto & e = elements_[alt.items[k]];
            if (e.type != LLAMA_GRETYPE_RULE_REF) continue;
            const uint32_t rest = k + 1 < alt.items.size() ? alt.items[k + 1] : next(alt.items[k]);
            calls_in[alt.rule].push_back({e.value, to_char[rest], through[rest] > 0});
            leave[e.value] = std::max(leave[e.value], std::min(cap, to_char[rest]));
        }
    }
    std::vector<uint32_t> pending(post_order.rbegin(), post_order.rend());
    while (!pending.empty()) {
        const uint32_t r = pending.back();
        pending.pop_back();
        for (const auto & call : calls_in[r]) {
            const uint64_t opens = std::min(cap, add(call.opens, call.tail ? leave[r] : 0));
            if (opens > leave[call.callee]) {
                leave[call.callee] = opens;
                pending.push_back(call.callee);
            }
        }
    }
    std::vector<uint32_t> rule_of(elements_.size(), 0);
    for (const auto & alt : alts) {
        for (uint32_t pos : alt.items) rule_of[pos] = alt.rule;
        const uint32_t end = alt.items.empty() ? alternatives_[alt.rule][0] : next(alt.items.back());
        rule_of[end] = alt.rule;
    }
    const auto width_at = [&](uint32_t pos) {
        return add(to_char[pos], through[pos] > 0 ? leave[rule_of[pos]] : 0);
    };
    width_ = add(first[root_], empty[root_] > 0 ? 1 : 0);
    for (const auto & alt : alts) {
        for (uint32_t pos : alt.items) width_ = std::max(width_, width_at(pos));
    }
    // Step cost: matching one character from a position, every stack it opens matches and
    // opens what follows its terminal (a run of N optional items: about N*N/2).
    const auto after = [&](uint32_t pos) { return width_at(next(pos)); };
    std::vector<uint64_t> first_cost;
    into_rules(after, first_cost, false);
    step_cost_ = first_cost[root_];
    from_positions(after, first_cost, [&](uint32_t, uint64_t cost, uint64_t) {
        step_cost_ = std::max(step_cost_, cost);
    });
}

}  // namespace llamaserve
