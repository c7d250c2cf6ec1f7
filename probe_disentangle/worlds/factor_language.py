"""A tiny English-like language generated from independent categorical factors.

Every sentence has the form::

    <det> <size> <colour> <noun> <verb phrase> <prep> the <place> <time adverb> .

    a small red cat runs in the park today .
    some big white mice did not swim by the river yesterday .
    a tiny green fox will not sing on the hill tomorrow .

Eight factors: ``animal`` (5), ``colour`` (5), ``size`` (3), ``number`` (2), ``action`` (5),
``tense`` (3), ``polarity`` (2), ``place`` (5): 22,500 sentences. Several factors shape more
than one token, some of them far apart: ``number`` picks the determiner ("a"/"some"), the
noun form ("mouse"/"mice") and the verb agreement ("runs"/"run", "does"/"do"); ``tense``
picks the verb form ("runs"/"ran"/"will run") and the time adverb at the end;
``polarity`` adds "not" and do-support; ``place`` picks both the preposition and the noun.
A model that writes this language fluently must carry these factors in its hidden state
from where they are first expressed to where they are next needed. The grammar is
unambiguous, so ``parse`` reads the factors back from any sentence it generates and
rejects sentences that break agreement or mix tenses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from probe_disentangle.worlds.base import RandomState, World

__all__ = ["FACTOR_VALUES", "FactorLanguage", "ParseError", "Tokenizer"]

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS)

# Factor -> the names of its values, in level order.
FACTOR_VALUES: dict[str, tuple[str, ...]] = {
    "animal": ("cat", "dog", "fox", "bird", "mouse"),
    "colour": ("red", "blue", "green", "black", "white"),
    "size": ("tiny", "small", "big"),
    "number": ("singular", "plural"),
    "action": ("run", "jump", "sleep", "swim", "sing"),
    "tense": ("past", "present", "future"),
    "polarity": ("affirmative", "negative"),
    "place": ("park", "house", "river", "hill", "tree"),
}

_DETERMINERS = ("a", "some")  # by number
_NOUNS = {  # animal -> (singular, plural)
    "cat": ("cat", "cats"),
    "dog": ("dog", "dogs"),
    "fox": ("fox", "foxes"),
    "bird": ("bird", "birds"),
    "mouse": ("mouse", "mice"),
}
_VERBS = {  # action -> (base, third person singular present, past)
    "run": ("run", "runs", "ran"),
    "jump": ("jump", "jumps", "jumped"),
    "sleep": ("sleep", "sleeps", "slept"),
    "swim": ("swim", "swims", "swam"),
    "sing": ("sing", "sings", "sang"),
}
_PLACES = {  # place -> preposition
    "park": "in",
    "house": "in",
    "river": "by",
    "hill": "on",
    "tree": "under",
}
_ADVERBS = ("yesterday", "today", "tomorrow")  # by tense
_PRESENT_DO = ("does", "do")  # by number
_PAST_DO = "did"
_FUTURE = "will"
_NOT = "not"


PLAN_END = ":"


def _plan_tag(value: str) -> str:
    return "#" + value


def _build_vocab(plan: bool = False) -> list[str]:
    words: list[str] = list(SPECIAL_TOKENS)
    words += list(_DETERMINERS)
    words += list(FACTOR_VALUES["size"]) + list(FACTOR_VALUES["colour"])
    words += [form for forms in _NOUNS.values() for form in forms]
    words += [_PRESENT_DO[0], _PRESENT_DO[1], _PAST_DO, _FUTURE, _NOT]
    words += [form for forms in _VERBS.values() for form in forms]
    words += sorted(set(_PLACES.values())) + ["the"] + list(_PLACES)
    words += list(_ADVERBS) + ["."]
    if plan:
        words += [_plan_tag(v) for values in FACTOR_VALUES.values() for v in values] + [PLAN_END]
    return words


class ParseError(ValueError):
    """A sentence that is not in the factor language: unknown word, bad order or agreement."""


class Tokenizer:
    """Word-level tokenizer over a fixed vocabulary with ``<pad>``, ``<bos>``, ``<eos>``.

    ``vocab`` is a plain list of words (JSON-serialisable); a word's id is its position.
    """

    def __init__(self, vocab: Sequence[str]) -> None:
        vocab = list(vocab)
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"vocab must contain the special tokens {list(SPECIAL_TOKENS)}; missing {missing}")
        if len(set(vocab)) != len(vocab):
            dupes = sorted({w for w in vocab if vocab.count(w) > 1})
            raise ValueError(f"vocab has duplicate words: {dupes}")
        self.vocab: list[str] = vocab
        self._ids = {w: i for i, w in enumerate(vocab)}
        self.pad_id = self._ids[PAD]
        self.bos_id = self._ids[BOS]
        self.eos_id = self._ids[EOS]

    def __len__(self) -> int:
        return len(self.vocab)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    @property
    def vocab_size(self) -> int:
        """Number of tokens, specials included."""
        return len(self.vocab)

    def token_id(self, word: str) -> int:
        """Id of one word; ValueError naming the word when it is not in the vocabulary."""
        try:
            return self._ids[word]
        except KeyError:
            raise ValueError(f"unknown word {word!r}: not in the {len(self.vocab)}-word vocabulary") from None

    def encode(self, text: str, *, add_special: bool = True) -> list[int]:
        """Split on whitespace and map words to ids, wrapped in ``<bos>``/``<eos>`` by default."""
        ids = [self.token_id(w) for w in text.split()]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def encode_batch(self, texts: Iterable[str], length: int | None = None) -> np.ndarray:
        """Encode with specials and right-pad with ``<pad>`` to ``length`` (default: the longest)."""
        rows = [self.encode(t) for t in texts]
        longest = max((len(r) for r in rows), default=0)
        length = longest if length is None else length
        if longest > length:
            raise ValueError(f"a sentence has {longest} tokens, more than length={length}")
        out = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor, *, skip_special: bool = True) -> str:
        """Map ids back to a space-separated string; specials are dropped unless asked for."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().tolist()
        elif isinstance(ids, np.ndarray):
            ids = ids.tolist()
        words = []
        for i in ids:
            if not 0 <= int(i) < len(self.vocab):
                raise ValueError(f"token id {i} out of range [0, {len(self.vocab) - 1}]")
            word = self.vocab[int(i)]
            if skip_special and word in SPECIAL_TOKENS:
                continue
            words.append(word)
        return " ".join(words)

    def to_json(self) -> str:
        """The vocabulary as a JSON list."""
        return json.dumps(self.vocab)

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """Inverse of ``to_json``."""
        return cls(json.loads(text))


class FactorLanguage(World):
    """The factor language as a world: render -> token ids ``[n, max_length]``, int64.

    Each row is ``<bos> words... <eos>`` right-padded with ``<pad>`` to ``max_length`` (14).

    ``plan=True`` puts a plan before each sentence, one tag per factor value and a colon
    (``#cat #red #small #singular #run #present #affirmative #park : a small red cat runs ...``),
    as control codes do: a model that writes the sentence must carry every factor from the plan
    through the whole sentence, so its hidden state holds the factors *before* they are
    expressed, which is what makes them steerable. ``parse`` reads the sentence after the colon
    (the plan is ignored); ``parse_plan`` reads the plan. ``max_length`` is then 23.
    """

    def __init__(self, plan: bool = False) -> None:
        self.plan = plan
        self.factor_names = tuple(FACTOR_VALUES)
        self.factor_sizes = tuple(len(v) for v in FACTOR_VALUES.values())
        self.value_names: dict[str, tuple[str, ...]] = dict(FACTOR_VALUES)
        self.tokenizer = Tokenizer(_build_vocab(plan))
        # <bos> + (plan: 8 tags and ':') + the longest sentence (12 words) + <eos>
        self.max_length = 2 + 12 + (len(FACTOR_VALUES) + 1 if plan else 0)
        self._tables = _ParseTables()
        self._token_table: np.ndarray | None = None  # all sentences' ids, built on first render

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (self.max_length,)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, specials included."""
        return self.tokenizer.vocab_size

    # ---------------------------------------------------------------- generation
    def words(self, factors: Sequence[int] | np.ndarray) -> list[str]:
        """The words of the sentence for one factor row ``[F]``."""
        f = self.check_factors(factors)
        if len(f) != 1:
            raise ValueError(f"words() takes one factor row, got {len(f)}")
        return self._words(f[0])

    @staticmethod
    def _words(row: np.ndarray) -> list[str]:
        animal, colour, size, number, action, tense, polarity, place = (int(x) for x in row)
        plural = number == 1
        noun = _NOUNS[FACTOR_VALUES["animal"][animal]][number]
        base, third, past = _VERBS[FACTOR_VALUES["action"][action]]
        negative = polarity == 1
        if tense == 0:  # past
            verb = [_PAST_DO, _NOT, base] if negative else [past]
        elif tense == 1:  # present
            if negative:
                verb = [_PRESENT_DO[number], _NOT, base]
            else:
                verb = [base if plural else third]
        else:  # future
            verb = [_FUTURE, _NOT, base] if negative else [_FUTURE, base]
        place_noun = FACTOR_VALUES["place"][place]
        return [
            _DETERMINERS[number],
            FACTOR_VALUES["size"][size],
            FACTOR_VALUES["colour"][colour],
            noun,
            *verb,
            _PLACES[place_noun],
            "the",
            place_noun,
            _ADVERBS[tense],
            ".",
        ]

    def _plan_words(self, row: np.ndarray) -> list[str]:
        if not self.plan:
            return []
        tags = [_plan_tag(values[int(v)]) for values, v in zip(FACTOR_VALUES.values(), row, strict=True)]
        return [*tags, PLAN_END]

    def sentence(self, factors: Sequence[int] | np.ndarray) -> str:
        """The sentence (with its plan when ``plan=True``) for one factor row ``[F]``."""
        row = self.check_factors(factors)[0]
        return " ".join(self._plan_words(row) + self.words(factors))

    def sentences(self, factors: np.ndarray) -> list[str]:
        """Sentences for factor rows ``[n, F]``."""
        return [" ".join(self._plan_words(row) + self._words(row)) for row in self.check_factors(factors)]

    def _render(self, factors: np.ndarray) -> np.ndarray:
        if self._token_table is None:  # 22,500 x 14 int64 = 2.5 MB; a lookup beats re-encoding
            every = self.all_factors()
            texts = (" ".join(self._plan_words(row) + self._words(row)) for row in every)
            self._token_table = self.tokenizer.encode_batch(texts, self.max_length)
        return self._token_table[self.factors_to_index(factors)]

    def sample_sentences(self, num: int, random_state: RandomState = 0) -> tuple[list[str], np.ndarray]:
        """``num`` random sentences and their true factors ``[num, F]``."""
        factors = self.sample_factors(num, random_state)
        return self.sentences(factors), factors

    def factor_dict(self, factors: Sequence[int] | np.ndarray) -> dict[str, int]:
        """One factor row as ``{factor name: level}``, the form ``parse`` returns."""
        row = self.check_factors(factors)[0]
        return {name: int(v) for name, v in zip(self.factor_names, row, strict=True)}

    # ---------------------------------------------------------------- parsing
    def parse(
        self, text: str | Sequence[int] | np.ndarray | torch.Tensor, *, strict: bool = False
    ) -> dict[str, int] | None:
        """Read the factors back from a sentence (text or token ids): ``{factor: level}``.

        Token ids may carry ``<bos>``, ``<eos>`` and padding; anything after the first
        ``<eos>`` is ignored, so raw model generations can be passed as they are. Returns None
        for text outside the language (unknown word, wrong order, broken number agreement,
        verb tense disagreeing with the time adverb), or with ``strict=True`` raises
        ``ParseError`` saying what was wrong.
        """
        try:
            words = self._to_words(text)
            if self.plan:
                if PLAN_END not in words:
                    raise ParseError(f"no {PLAN_END!r} ends the plan")
                words = words[words.index(PLAN_END) + 1 :]
            return self._parse(words)
        except ParseError:
            if strict:
                raise
            return None

    def parse_plan(self, text: str | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, int] | None:
        """The factors the plan asks for (``plan=True``), or None if the plan is malformed."""
        if not self.plan:
            raise ValueError("this FactorLanguage has no plan; build it with FactorLanguage(plan=True)")
        try:
            words = self._to_words(text)
        except ParseError:
            return None
        if PLAN_END not in words or words.index(PLAN_END) != len(FACTOR_VALUES):
            return None
        out = {}
        for (name, values), tag in zip(FACTOR_VALUES.items(), words[: len(FACTOR_VALUES)], strict=True):
            names = [_plan_tag(v) for v in values]
            if tag not in names:
                return None
            out[name] = names.index(tag)
        return out

    def parse_batch(self, texts: Iterable[str | Sequence[int] | np.ndarray]) -> list[dict[str, int] | None]:
        """``parse`` over many sentences (or rows of a token-id array)."""
        return [self.parse(t) for t in texts]

    def _to_words(self, text: str | Sequence[int] | np.ndarray | torch.Tensor) -> list[str]:
        if isinstance(text, str):
            words = text.split()
        else:
            if isinstance(text, torch.Tensor):
                text = text.detach().cpu().numpy()
            ids = np.asarray(text).tolist()
            if not isinstance(ids, list) or any(isinstance(i, list) for i in ids):
                raise TypeError("parse takes one sentence: a string or a 1-D sequence of token ids")
            vocab = self.tokenizer.vocab
            words = []
            for i in ids:
                if not 0 <= int(i) < len(vocab):
                    raise ParseError(f"token id {i} out of range [0, {len(vocab) - 1}]")
                words.append(vocab[int(i)])
        if EOS in words:
            words = words[: words.index(EOS)]
        if words and words[0] == BOS:
            words = words[1:]
        while words and words[-1] == PAD:
            words.pop()
        for w in words:
            if w not in self.tokenizer:
                raise ParseError(f"unknown word {w!r}")
        return words

    def _parse(self, words: list[str]) -> dict[str, int]:
        t = self._tables
        pos = 0

        def take(table: dict[str, object], what: str) -> object:
            nonlocal pos
            if pos >= len(words):
                raise ParseError(f"sentence ends early: expected {what} at word {pos}")
            word = words[pos]
            if word not in table:
                raise ParseError(f"expected {what} at word {pos}, got {word!r}")
            pos += 1
            return table[word]

        number = take(t.determiners, "a determiner ('a' or 'some')")
        size = take(t.sizes, "a size adjective")
        colour = take(t.colours, "a colour adjective")
        animal, noun_number = take(t.nouns, "an animal noun")
        if noun_number != number:
            raise ParseError(
                f"determiner {words[0]!r} is {FACTOR_VALUES['number'][number]} but noun {words[3]!r} "
                f"is {FACTOR_VALUES['number'][noun_number]}"
            )
        verb_start = pos
        head = take(t.verb_heads, "a verb or auxiliary")
        kind, value = head
        if kind == "aux":  # does/do/did/will [+ not] + base form
            tense, aux_number = value
            polarity = 0
            if pos < len(words) and words[pos] == _NOT:
                pos += 1
                polarity = 1
            elif tense != 2:
                raise ParseError(f"auxiliary {words[verb_start]!r} must be followed by 'not'")
            action, form = take(t.verb_forms, "a verb")
            if form != 0:
                raise ParseError(
                    f"after {' '.join(words[verb_start : pos - 1])!r} the verb must be in base form, "
                    f"got {words[pos - 1]!r}"
                )
            if aux_number is not None and aux_number != number:
                raise ParseError(
                    f"auxiliary {words[verb_start]!r} does not agree with the "
                    f"{FACTOR_VALUES['number'][number]} subject {words[3]!r}"
                )
        else:  # a finite verb: base (present plural), third singular (present singular) or past
            action, form = value
            polarity = 0
            if form == 2:
                tense = 0
            else:
                tense = 1
                if (form == 1) != (number == 0):
                    raise ParseError(
                        f"verb {words[verb_start]!r} does not agree with the "
                        f"{FACTOR_VALUES['number'][number]} subject {words[3]!r}"
                    )
        prep = take(t.preps, "a preposition")
        take(t.the, "'the'")
        place = take(t.places, "a place noun")
        if t.place_preps[place] != prep:
            raise ParseError(
                f"preposition {words[pos - 3]!r} does not go with {words[pos - 1]!r} "
                f"(expected {t.place_preps[place]!r})"
            )
        adverb_tense = take(t.adverbs, "a time adverb")
        if adverb_tense != tense:
            raise ParseError(
                f"verb phrase {' '.join(words[verb_start : pos - 4])!r} is {FACTOR_VALUES['tense'][tense]} "
                f"but the adverb {words[pos - 1]!r} is {FACTOR_VALUES['tense'][adverb_tense]}"
            )
        take(t.stop, "'.'")
        if pos != len(words):
            raise ParseError(f"unexpected words after the end of the sentence: {' '.join(words[pos:])!r}")
        return {
            "animal": animal,
            "colour": colour,
            "size": size,
            "number": number,
            "action": action,
            "tense": tense,
            "polarity": polarity,
            "place": place,
        }


class _ParseTables:
    """Word -> meaning lookups used by the parser, built once from the grammar tables."""

    def __init__(self) -> None:
        self.determiners = {w: i for i, w in enumerate(_DETERMINERS)}
        self.sizes = {w: i for i, w in enumerate(FACTOR_VALUES["size"])}
        self.colours = {w: i for i, w in enumerate(FACTOR_VALUES["colour"])}
        self.nouns = {
            form: (a, n) for a, animal in enumerate(FACTOR_VALUES["animal"]) for n, form in enumerate(_NOUNS[animal])
        }
        # verb forms: word -> (action, form) with form 0 base, 1 third singular, 2 past
        self.verb_forms = {
            form: (a, k) for a, action in enumerate(FACTOR_VALUES["action"]) for k, form in enumerate(_VERBS[action])
        }
        self.verb_heads: dict[str, tuple[str, object]] = {w: ("verb", v) for w, v in self.verb_forms.items()}
        # auxiliaries: word -> (tense, number or None when it does not show number)
        self.verb_heads[_PRESENT_DO[0]] = ("aux", (1, 0))
        self.verb_heads[_PRESENT_DO[1]] = ("aux", (1, 1))
        self.verb_heads[_PAST_DO] = ("aux", (0, None))
        self.verb_heads[_FUTURE] = ("aux", (2, None))
        self.preps = {w: w for w in set(_PLACES.values())}
        self.the = {"the": None}
        self.places = {w: i for i, w in enumerate(FACTOR_VALUES["place"])}
        self.place_preps = {i: _PLACES[w] for i, w in enumerate(FACTOR_VALUES["place"])}
        self.adverbs = {w: i for i, w in enumerate(_ADVERBS)}
        self.stop = {".": None}
