"""The prompts of `llamaserve bench spec`'s workloads: requests whose output repeats the prompt
(an edit of code, a summary that quotes its source) or does not (free writing), each fresh for
every run (random identifiers, names and numbers inside) and written out as ChatML text.
Apart from the load itself so that the command line lists the workloads without loading it."""
from __future__ import annotations

import random
from collections.abc import Callable

SYSTEM = "You are a careful assistant. Follow the instructions exactly."

_NOUNS = ("order", "sensor", "invoice", "patient", "shipment", "ticket", "account", "sample",
          "reading", "listing", "booking", "payment", "device", "review", "trial", "batch")
_FIELDS = ("score", "rating", "weight", "confidence", "priority", "margin", "quality", "signal")
_FLAGS = ("archived", "disabled", "flagged", "deleted", "hidden", "expired", "blocked", "stale")
_FIRST = ("Amara", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiroshi", "Ines",
          "Jonas", "Keiko", "Lars", "Maren", "Nikhil", "Olga", "Pavel", "Rosa", "Soren", "Talia",
          "Umar", "Vera", "Wendell", "Ximena", "Yusuf", "Zofia")
_LAST = ("Okafor", "Lindqvist", "Moreau", "Castellano", "Haddad", "Novak", "Brennan", "Iwasaki",
         "Kowalski", "Ferreira", "Adeyemi", "Halvorsen", "Markovic", "Delacroix", "Sandoval")
_TOWNS = ("Eastbrook", "Port Calder", "Millhaven", "Ravensford", "Kestrel Bay", "Oakmere",
          "Ashby Cross", "Northwick", "Silverdale", "Thornbury", "Wexmoor", "Glenhollow")
_PRODUCTS = ("water filters", "bicycle frames", "solar panels", "ceramic tiles", "hearing aids",
             "seed potatoes", "wool blankets", "printer cartridges", "garden hoses", "oat milk")
_CHARACTERS = ("retired clockmaker", "young cartographer", "nervous beekeeper", "travelling violinist",
               "stubborn ferry captain", "curious lighthouse cat", "exiled astronomer", "night-shift baker",
               "apprentice glassblower", "forgetful wizard", "marathon runner", "museum guard")
_GOALS = ("finds a map that redraws itself every night", "must deliver a letter before the first snow",
          "hears a song nobody else can hear", "inherits a house with one locked room",
          "is asked to judge a contest of impossible inventions", "loses their shadow at a fair",
          "discovers the town clock has been running backwards", "has to return a stolen comet")
_PLACES = ("a floating market", "a city built on stilts", "a desert observatory", "an island of bells",
           "a mountain monastery", "a train that never stops", "a village under the ice", "a canal town")


def chatml(user: str, system: str = SYSTEM) -> str:
    """The conversation as SmolLM2-Instruct's template writes it, ready for the assistant."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def edit_prompt(rng: random.Random) -> str:
    """Repeat two functions of Python with one parameter renamed (a ~455-token prompt): nearly
    every output token is in the prompt, the case n-gram drafts are for."""
    noun, fld, flag = rng.choice(_NOUNS), rng.choice(_FIELDS), rng.choice(_FLAGS)
    limit, default, bucket = rng.randint(5, 95), round(rng.uniform(0.1, 0.9), 2), rng.randint(3, 12)
    window, penalty = rng.randint(2, 30), round(rng.uniform(0.5, 0.99), 2)
    code = f'''def filter_{noun}s(records: list[dict], threshold: float, *, key: str = "{fld}") -> list[dict]:
    """Return at most {limit} {noun}s whose {fld} is at least threshold, best first.

    Records without a {fld} are skipped, and so are the ones marked as {flag}.
    """
    kept = []
    for record in records:
        value = record.get(key)
        if value is None or record.get("{flag}", False):
            continue
        if value >= threshold:
            kept.append(record)
    kept.sort(key=lambda r: (r[key], r.get("id", 0)), reverse=True)
    return kept[:{limit}]


def summarize_{noun}s(records: list[dict], threshold: float = {default}, buckets: int = {bucket}) -> dict:
    """Count the {noun}s above threshold per bucket of {fld}, and the mean of the rest.

    A {noun} older than {window} days weighs {penalty} of a recent one.
    """
    counts = [0] * buckets
    below_total, below_weight = 0.0, 0.0
    for record in records:
        value = record.get("{fld}")
        if value is None:
            continue
        weight = {penalty} if record.get("age_days", 0) > {window} else 1.0
        if value >= threshold:
            index = min(buckets - 1, int((value - threshold) / (1.0 - threshold) * buckets))
            counts[index] += 1
        else:
            below_total += value * weight
            below_weight += weight
    mean_below = below_total / below_weight if below_weight else 0.0
    return {{"threshold": threshold, "counts": counts, "mean_below": round(mean_below, 4)}}
'''
    return chatml("Repeat this code exactly, but rename the parameter `threshold` to `min_score`:\n\n"
                  f"```python\n{code}```")


def quote_prompt(rng: random.Random) -> str:
    """Summarize a report quoting its key sentences verbatim (a ~450-token prompt): long runs
    of the output are in the prompt, shorter ones than in an edit."""
    town, product = rng.choice(_TOWNS), rng.choice(_PRODUCTS)
    chair, engineer, auditor = _person(rng), _person(rng), _person(rng)
    year, budget, units = rng.randint(2009, 2031), rng.randint(120, 980), rng.randint(1200, 48000)
    growth, defects, staff = rng.randint(3, 41), round(rng.uniform(0.2, 6.5), 1), rng.randint(14, 260)
    delay, plant, target = rng.randint(2, 19), rng.randint(2, 9), rng.randint(50, 99)
    document = (
        f"The {town} cooperative closed its {year} financial year with sales of {units} {product}, "
        f"{growth} percent more than the year before. The board, chaired by {chair}, said that the "
        f"growth came almost entirely from the new plant on the river road, which opened {delay} weeks "
        f"late after a dispute over the cost of the foundations. The cooperative employs {staff} people, "
        f"most of them part time, and paid out a budget of {budget} thousand for wages and training.\n\n"
        f"The chief engineer, {engineer}, reported that the defect rate fell to {defects} percent in the "
        f"last quarter. She attributed the improvement to a second inspection line and to shorter shifts "
        f"on the assembly floor. \"We stopped asking people to work twelve hours and the mistakes went "
        f"away,\" she told the members at the annual meeting. Plant number {plant} will receive the same "
        f"inspection line in the spring, and the board expects the defect rate there to halve.\n\n"
        f"The external auditor, {auditor}, raised two concerns. First, the cooperative holds stock worth "
        f"more than three months of sales, which ties up cash that could pay down the loan for the new "
        f"plant. Second, the contracts with the two largest buyers end in the same month of {year + 1}, "
        f"so a single bad negotiation could remove half of the revenue at once. The auditor recommended "
        f"that the board stagger the renewals and publish a plan for the stock before the summer.\n\n"
        f"Members voted to keep the dividend unchanged and to set a target of {target} percent of orders "
        f"delivered on time by the end of next year. {chair} closed the meeting by thanking the staff and "
        f"promising a full report on the stock question at the next general assembly. A member from "
        f"{rng.choice(_TOWNS)} asked whether the {product} could be sold abroad; the board answered that "
        f"exports would be studied once the second plant runs at full capacity.")
    return chatml("Summarize the following report in a few paragraphs. Quote its key sentences "
                  f"verbatim, in quotation marks.\n\n{document}")


def free_prompt(rng: random.Random) -> str:
    """Free writing: the output is not in the prompt, so drafts mostly fail; what speculation
    costs when it cannot help."""
    name = rng.choice(_FIRST)
    return chatml(f"Write a long story about a {rng.choice(_CHARACTERS)} called {name}, who "
                  f"{rng.choice(_GOALS)} in {rng.choice(_PLACES)}. Include the number "
                  f"{rng.randint(100, 9999)} and a friend called {_person(rng)}.")


WORKLOADS: dict[str, Callable[[random.Random], str]] = {
    "edit": edit_prompt, "quote": quote_prompt, "free": free_prompt}


def prompt_for(workload: str, seed: int | str, run: int) -> str:
    """The prompt of one run: fresh for every (seed, run), the same again for the same ones, so
    that servers compared side by side can get the same prompts."""
    return WORKLOADS[workload](random.Random(f"{seed}:{workload}:{run}"))
