"""Cheap quality heuristics on a candidate: length, repetition, assistant boilerplate and
refusals, lexical diversity, and answers that merely restate the question. Soft by default: they
inform review priority and the reviewer, and a run's config can make them hard.

Repetition is looked for in the request as well as the answer (a generator that loops writes
looping requests too); boilerplate and refusals only in the answer (a user may well write "I can't
help with my homework"). Every pattern is a flat regex: alternations of literals and bounded gaps,
no nested quantifiers, so a search is linear in the text's length even on hostile input.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass

from generator.filters.base import prompt_text, response_texts
from generator.filters.text import jaccard, sentences, shingles, words
from generator.schema import Candidate, Score

_A = "['\u2019\u02bc]"  # an apostrophe, typed straight, curly (HH's), or as a modifier letter
_AM = rf"(?:{_A}m| am)"  # after "i"
_AI = (
    r"(?:ai\b|a\.i\.|artificial intelligence|language (?:ai|model)|llm|chat ?bot|"
    r"(?:virtual|digital|ai) assistant|computer program|computer|machine|bot|robot|program)"
)
_AI_AFTER_AM = (
    r"(?:ai|a\.i\.|artificial intelligence|(?:ai )?language model|llm|chat ?bot|"
    r"(?:virtual |digital |ai |helper )?assistant|computer program|computer|program|software|"
    r"machine|bot|robot|helper bot)"
)
# What may follow "I'm (just) an AI" for it to be self-description: punctuation, the end, or a
# word that goes on describing, so "I'm an AI researcher" or "I'm a computer scientist" do not.
_SELF_END = (
    r"(?=[\"\u201d]?(?:[ \t]*(?:[,.;:!?()\n]|$)| (?:and|so|that|with|which|who|trained|created|"
    r"developed|made|built|designed|programmed|by|from|without|here|not|rather|like)\b))"
)
_ADVERB = r"(?: specifically| only| just| actually| simply| really)?"
_CANT = (
    rf"(?: really| just| simply)?(?: cannot| can{_A}t| can not| won{_A}t| will not| must not|"
    rf" am unable|{_A}m unable| am not|{_A}m not| am just not|{_A}m just not)(?: really| actually)?"
)
_NOT_WHAT = (
    r"(?: able| equipped| programmed| designed| capable| allowed| permitted| authorized| "
    r"going| comfortable| in a position)?"
)
_VERB = (
    r"(?:assist|help|aid|provide|fulfill|fulfil|comply|complete|answer|respond|engage|"
    r"participate|support|share|give|offer|generate|create|write|discuss|advise)"
)
# A refusal's object: "help you", "assist with", "provide that", "help." -- not "help but smile".
_OBJECT = (
    r"(?=[ \t]*(?:[.!,;:)]|$)| (?:you|with|in|on|that|this|such|any|your|those|these|anything|"
    r"a response|an answer|(?:(?:medical|legal|financial|professional|specific|personal) )?"
    r"(?:information|assistance|advice))\b)"
)

# The assistant talking about itself instead of doing the task: what follows a leading "i" ...
_SELF_AFTER_I = [
    # "I'm (just) an AI", "I am a computer program", "I'm a machine, so ...", "I'm not human"
    rf"{_AM}(?: really| actually)?(?: just| only| merely| simply| but)? (?:an? |a very )?"
    rf"[\"\u201c]?(?:advanced |large |helpful |simple |little |smart |free |service )?"
    rf"{_AI_AFTER_AM}\b{_SELF_END}",
    rf"{_AM} not (?:a )?human(?: being)?\b",
    # "I'm designed to", "I was programmed to", "I'm not actually programmed to"
    rf"(?:{_AM}| was|{_A}ve been| have been)(?: not)?{_ADVERB} (?:designed|programmed)\b",
    rf"(?:{_AM}| was) (?:built|created) (?:to|for)\b",
    rf"{_AM} (?:only )?(?:intended|meant) to be used\b",
    r" (?:was|am|have been) (?:trained|created|developed|built|made) by (?:openai|anthropic|"
    r"google|meta|microsoft|a team|my (?:creators|developers|programmers))\b",
    # "I don't have personal opinions", "... the ability to", "... access to real-time data"
    rf" (?:do not|don{_A}t|cannot|can{_A}t)(?: actually| really)? (?:have|possess) "
    r"(?:any )?(?:particular )?(?:(?:personal |religious |political )?(?:opinions|experiences|"
    r"feelings|emotions|beliefs|preferences|views)|consciousness|a (?:physical )?body|"
    r"a physical form|the (?:ability|capability|capacity) to|access to (?:real-time|the internet|"
    r"current|live|external|browsing|personal|your|that information|this information|the web)|"
    r"real-time)\b",
]
# ... and the other openings.
_SELF_OTHER = [
    # "As an AI language model, I ...", "as a language AI, I'm designed ..."
    rf"as an? (?:large |helpful |responsible |friendly )?{_AI}\b"
    rf"[^.!?\n]{{0,30}}?\b(?:i|my|me)\b(?:{_A}m| am| have| do| cannot)?(?: \w{{1,20}})?",
    rf"we(?:{_A}re| are)(?: not)?{_ADVERB} (?:designed|programmed)\b",
    rf"my (?:training data|training cut-?off|knowledge cut-?off|programmers|creators|"
    rf"pre-?defined answers|programming (?:does|doesn{_A}t|won{_A}t|will not|prevents|prohibits|"
    rf"is not|isn{_A}t))\b",
    r"(?:against|within|beyond|outside(?: of)?|part of) my (?:programming|training)\b",
]
# Declining the request. A refusal is sometimes the right answer (safety data), which is why a
# run whose filters set ``refusals_allowed`` is not checked for these (nor for self-description).
_REFUSAL_AFTER_I = [
    # "I can't help with", "I'm not equipped to assist", "I won't be able to provide that"
    rf"{_CANT}{_NOT_WHAT}(?: be able)?(?: to)? (?:{_VERB}{_OBJECT}|do (?:that|this|so)\b)",
    rf"{_AM} not (?:allowed|permitted|authorized) to\b",
    rf"{_AM} not comfortable (?:with (?:that|this)|\w{{1,30}}ing)\b",
    r" (?:must|have to) (?:respectfully )?(?:decline|refuse)\b",
]
_REFUSAL_OTHER = [
    rf"sorry,? but (?:as an? {_AI}|i (?:can{_A}t|cannot|won{_A}t)(?=[ \t]*(?:[.!]|$)))",
    rf"(?:that|this|it)(?:{_A}s| is)(?: not|n{_A}t)(?: really)? something i (?:can|could|"
    rf"am able to|{_A}m able to)\b",
    rf"we(?:{_A}re| are) not (?:allowed|permitted|authorized) to\b",
    r"(?:against|outside(?: of)?|beyond|not within) (?:my|our) (?:guidelines|policies|"
    r"content policy|ethical guidelines|capabilities|abilities|expertise|area of expertise|"
    r"rules of engagement|terms of service|user agreement|purpose|scope)\b",
]


def _either(alternatives: list[str]) -> str:
    return "(?:" + "|".join(alternatives) + ")"


# Written in lower case, every alternative opening with a letter, the ones opening with "i"
# factored: ``find_boilerplate`` searches lowered text and checks the word boundary before a
# match itself, so sre skips in C to the next letter that can open a match and tries each
# opening once (a leading \b or IGNORECASE made it several times slower on hostile text).
SELF_DESCRIPTION = re.compile(f"i{_either(_SELF_AFTER_I)}|{_either(_SELF_OTHER)}")
REFUSAL = re.compile(f"i{_either(_REFUSAL_AFTER_I)}|{_either(_REFUSAL_OTHER)}")
_FAMILIES = re.compile(
    f"i(?:(?P<boilerplate>{_either(_SELF_AFTER_I)})|(?P<refusal>{_either(_REFUSAL_AFTER_I)}))"
    f"|(?P<boilerplate_>{_either(_SELF_OTHER)})|(?P<refusal_>{_either(_REFUSAL_OTHER)})"
)
# Both families in one pattern, any case, on raw text: the eval report's refusal section's.
BOILERPLATE = re.compile(rf"\b(?:{SELF_DESCRIPTION.pattern}|{REFUSAL.pattern})", re.IGNORECASE)

_WORD_CHAR = re.compile(r"\w")
NGRAM = 4  # the phrase length repetition is counted in
_TIMES = "\u00d7"  # the multiplication sign of "'a phrase' x9" in a reason


@dataclass(frozen=True)
class Repetition:
    """The most repeated phrase (or sentence) of a text, and how much of the text it is."""

    phrase: str
    count: int
    coverage: float  # share of the text's words inside its occurrences
    # Distinct words over all words between one occurrence and the next (0 when they touch): a
    # loop repeats what lies between too, a list ("How would you rate the beds? ... the food?")
    # does not.
    gap_variety: float = 0.0


def repeated_ngram_ratio(tokens: list[str], size: int = 3) -> float:
    """Share of word n-grams that are repeats of an earlier one (0 = none, near 1 = looping)."""
    grams = [tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c - 1 for c in counts.values()) / len(grams)


def repeated_sentence(text: str, min_words: int = 6) -> Repetition | None:
    """The sentence (of at least ``min_words`` words) said most often, if any is said twice."""
    said: Counter[tuple[str, ...]] = Counter()
    total = 0
    for sentence in sentences(text):
        tokens = tuple(words(sentence))
        total += len(tokens)
        if len(tokens) >= min_words:
            said[tokens] += 1
    if not said:
        return None
    tokens, count = said.most_common(1)[0]
    return Repetition(" ".join(tokens), count, count * len(tokens) / total) if count > 1 else None


def _non_overlapping(positions: list[int], length: int) -> list[int]:
    kept: list[int] = []
    for position in positions:
        if not kept or position >= kept[-1] + length:
            kept.append(position)
    return kept


def _period(gram: tuple[str, ...]) -> int:
    """The shortest unit the n-gram repeats ("the the the the" -> 1, "a b a b" -> 2)."""
    for size in range(1, len(gram)):
        if all(gram[i] == gram[i + size] for i in range(len(gram) - size)):
            return size
    return len(gram)


def _extend(tokens: list[str], positions: list[int], size: int, limit: int = 12) -> list[str]:
    """Grow the phrase right, then left, while every occurrence still agrees (``limit`` words)."""
    first, start, end = positions[0], 0, size
    while end - start < limit and all(
        p + end < len(tokens) and tokens[p + end] == tokens[first + end] for p in positions
    ):
        end += 1
    while end - start < limit and all(
        p + start > 0 and tokens[p + start - 1] == tokens[first + start - 1] for p in positions
    ):
        start -= 1
    return tokens[first + start : first + end]


def _occurrences(tokens: list[str], phrase: list[str]) -> list[int]:
    size = len(phrase)
    return [i for i in range(len(tokens) - size + 1) if tokens[i : i + size] == phrase]


def repeated_phrase(tokens: list[str], size: int = NGRAM) -> Repetition | None:
    """The word n-gram repeated most often, grown to the longest phrase all its occurrences
    share (or cut to the unit it loops on), counted without overlaps. Linear in the words: one
    pass to count, one to find the occurrences, one per word the phrase grows by."""
    if len(tokens) < size * 2:
        return None
    grams = Counter(tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return None
    unit = _period(gram)
    if unit < size:  # "the the the the", "a b a b": report the loop's unit
        phrase = list(gram[:unit])
        positions = _occurrences(tokens, phrase)
    else:  # an n-gram with no shorter period cannot overlap itself
        positions = _occurrences(tokens, list(gram))
        phrase = _extend(tokens, positions, size)
    kept = _non_overlapping(positions, len(phrase))
    gaps = [w for a, b in itertools.pairwise(kept) for w in tokens[a + len(phrase) : b]]
    variety = len(set(gaps)) / len(gaps) if gaps else 0.0
    coverage = len(kept) * len(phrase) / len(tokens)
    return Repetition(" ".join(phrase), len(kept), coverage, variety)


def find_boilerplate(text: str) -> list[tuple[str, str]]:
    """Every self-description ("boilerplate") and refusal phrase in the text, as (family,
    phrase in the text's own case), in order. Linear in the text's length."""
    lowered = text.lower()
    aligned = len(lowered) == len(text)  # a few characters (e.g. "İ") lower to two
    found = []
    reached: dict[str, int] = {}  # per family, where its last phrase found ends
    position = 0
    # The next search starts one character on, not at the match's end: "As an AI, I'm not able
    # to help" holds a refusal inside the self-description. Still linear: a match spans at most
    # a few dozen characters, so each is scanned a bounded number of times.
    while match := _FAMILIES.search(lowered, position):
        start = position = match.start()
        position += 1
        if start and _WORD_CHAR.match(lowered, start - 1):  # inside a word: "mai'm ..."
            continue
        family = (match.lastgroup or "").rstrip("_")
        if match.end() <= reached.get(family, -1):  # inside a phrase of its family already found
            continue
        reached[family] = match.end()
        phrase = text[start : match.end()] if aligned else match.group(0)
        found.append((family, phrase.strip()))
    return found


class QualityFilter:
    name = "quality"
    hard = False
    cost = 1

    def __init__(
        self,
        *,
        min_words: int = 2,
        max_words: int = 4000,
        max_repetition: float = 0.3,
        min_distinct: float = 0.3,
        max_restatement: float = 0.8,
        refusals_allowed: bool = False,
        sentence_repeats: int = 3,
        phrase_repeats: int = 4,
        phrase_coverage: float = 0.4,
        phrase_min_words: int = 30,
        max_gap_variety: float = 0.5,
    ) -> None:
        self.min_words, self.max_words = min_words, max_words
        self.max_repetition, self.min_distinct = max_repetition, min_distinct
        self.max_restatement = max_restatement
        self.refusals_allowed = refusals_allowed
        self.sentence_repeats = sentence_repeats
        self.phrase_repeats, self.phrase_coverage = phrase_repeats, phrase_coverage
        # A phrase said four times in under 30 words is a short list or a chord chart, not a loop.
        self.phrase_min_words = phrase_min_words
        self.max_gap_variety = max_gap_variety

    def repetition(self, text: str, tokens: list[str], where: str) -> list[str]:
        """What repeats in the text, named: a sentence, else a phrase, else the 3-gram share."""
        sentence = repeated_sentence(text)
        if sentence and sentence.count >= self.sentence_repeats:
            return [
                f"repetitive: sentence {sentence.phrase!r} {_TIMES}{sentence.count} in the {where}"
            ]
        phrase = repeated_phrase(tokens) if len(tokens) >= self.phrase_min_words else None
        if (
            phrase
            and phrase.count >= self.phrase_repeats
            and phrase.coverage >= self.phrase_coverage
            and phrase.gap_variety < self.max_gap_variety
        ):
            return [f"repetitive: {phrase.phrase!r} {_TIMES}{phrase.count} in the {where}"]
        share = repeated_ngram_ratio(tokens)
        if share > self.max_repetition:
            return [f"repetitive: {share:.0%} of 3-grams repeat in the {where}"]
        return []

    def boilerplate(self, answer: str) -> list[str]:
        if self.refusals_allowed:
            return []
        found: dict[str, list[str]] = {}
        for family, phrase in find_boilerplate(answer):
            if phrase not in found.setdefault(family, []):
                found[family].append(phrase)
        return [
            f"{family}: " + ", ".join(repr(p) for p in seen[:3]) for family, seen in found.items()
        ]

    def problems(self, candidate: Candidate) -> list[str]:
        request = prompt_text(candidate)
        found = self.repetition(request, words(request), "request")
        question = shingles(request, 2)
        for answer in response_texts(candidate):
            tokens = words(answer)
            if len(tokens) < self.min_words:
                found.append(f"too short ({len(tokens)} words)")
            elif len(tokens) > self.max_words:
                found.append(f"too long ({len(tokens)} words)")
            found += self.repetition(answer, tokens, "answer")
            if len(tokens) >= 50 and len(set(tokens)) / len(tokens) < self.min_distinct:
                found.append(f"low lexical diversity ({len(set(tokens)) / len(tokens):.2f})")
            found += self.boilerplate(answer)
            if question and jaccard(question, shingles(answer, 2)) >= self.max_restatement:
                found.append("restates the question")
        return found

    def score(self, candidates: list[Candidate]) -> list[Score]:
        scores = []
        for candidate in candidates:
            problems = self.problems(candidate)
            reason = "; ".join(problems) if problems else "no quality problem found"
            scores.append(
                Score(
                    filter=self.name, value=float(len(problems)), passed=not problems, reason=reason
                )
            )
        return scores
