"""The factor language: grammar, tokenizer, parser round trip and rejection, sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from probe_disentangle.worlds import FactorLanguage, ParseError, Tokenizer

NAMES = ("animal", "colour", "size", "number", "action", "tense", "polarity", "place")


@pytest.fixture(scope="module")
def lang() -> FactorLanguage:
    return FactorLanguage()


def _factors(lang: FactorLanguage, **values: str) -> list[int]:
    """A factor row from value names, e.g. number='plural'; unspecified factors take level 0."""
    row = [0] * lang.num_factors
    for name, value in values.items():
        row[lang.factor_names.index(name)] = lang.value_names[name].index(value)
    return row


def test_factors_vocab_and_length(lang: FactorLanguage) -> None:
    assert lang.factor_names == NAMES
    assert lang.num_factors >= 6
    assert lang.factor_sizes == (5, 5, 3, 2, 5, 3, 2, 5)
    assert lang.vocab_size <= 100
    assert lang.max_length <= 16
    tokens = lang.render(lang.all_factors())
    lengths = (tokens != lang.tokenizer.pad_id).sum(axis=1)
    assert lengths.max() == lang.max_length  # the longest sentence fills the row exactly
    assert (tokens[:, 0] == lang.tokenizer.bos_id).all()
    assert (tokens[np.arange(len(tokens)), lengths - 1] == lang.tokenizer.eos_id).all()


def test_example_sentences(lang: FactorLanguage) -> None:
    present = _factors(lang, size="small", tense="present")
    assert lang.sentence(present) == "a small red cat runs in the park today ."
    plural_neg_past = _factors(
        lang, animal="mouse", colour="white", size="big", number="plural", action="swim",
        tense="past", polarity="negative", place="river",
    )  # fmt: skip
    assert lang.sentence(plural_neg_past) == "some big white mice did not swim by the river yesterday ."
    future = _factors(lang, number="plural", tense="future", polarity="negative", place="tree")
    assert lang.sentence(future) == "some tiny red cats will not run under the tree tomorrow ."
    present_neg = _factors(lang, number="plural", tense="present", polarity="negative")
    assert lang.sentence(present_neg) == "some tiny red cats do not run in the park today ."


def test_parse_round_trip_full_factorial(lang: FactorLanguage) -> None:
    factors = lang.all_factors()
    sentences = lang.sentences(factors)
    assert len(set(sentences)) == len(factors)  # one sentence per combination
    parsed = [lang.parse(s, strict=True) for s in sentences]
    np.testing.assert_array_equal([[p[n] for n in NAMES] for p in parsed], factors)


def test_parse_token_ids(lang: FactorLanguage) -> None:
    factors, tokens = lang.sample(200, 0)
    for row, ids in zip(factors, tokens, strict=True):
        expected = lang.factor_dict(row)
        assert lang.parse(ids) == expected
        assert lang.parse(torch.from_numpy(ids)) == expected
        assert lang.parse(ids.tolist()) == expected
    # whatever a model writes after <eos> is ignored; no <bos> is fine
    ids = lang.tokenizer.encode(lang.sentence(factors[0])) + [lang.tokenizer.token_id("cat")] * 3
    assert lang.parse(ids) == lang.factor_dict(factors[0])
    assert lang.parse(ids[1:]) == lang.factor_dict(factors[0])


def test_parse_rejects_broken_agreement(lang: FactorLanguage) -> None:
    swaps = {"runs": "run", "jumps": "jump", "sleeps": "sleep", "swims": "swim", "sings": "sing"}
    swaps["does"] = "do"
    swaps |= {v: k for k, v in swaps.items()}
    rng = np.random.default_rng(0)
    factors = lang.sample_factors(300, rng)
    present = factors[factors[:, NAMES.index("tense")] == 1]
    assert len(present) > 50
    for row in present:
        words = lang.words(row)
        broken = list(words)
        broken[4] = swaps[words[4]]  # the word that carries agreement: the verb or 'does'/'do'
        assert lang.parse(" ".join(broken)) is None
        with pytest.raises(ParseError, match="does not agree"):
            lang.parse(" ".join(broken), strict=True)


@pytest.mark.parametrize(
    ("sentence", "message"),
    [
        ("a small red cats runs in the park today .", "determiner 'a' is singular but noun 'cats' is plural"),
        ("a small red cat ran in the park tomorrow .", "is past but the adverb 'tomorrow' is future"),
        ("a small red cat will run in the park today .", "is future but the adverb 'today' is present"),
        ("a small red cat runs by the park today .", "preposition 'by' does not go with 'park'"),
        ("a small red cat does run in the park today .", "must be followed by 'not'"),
        ("a small red cat did not ran in the park yesterday .", "must be in base form"),
        ("a small red zebra runs in the park today .", "unknown word 'zebra'"),
        ("a red small cat runs in the park today .", "expected a size adjective at word 1"),
        ("a small red cat runs in the park today", "sentence ends early"),
        ("a small red cat runs in the park today . .", "unexpected words after the end"),
        ("", "sentence ends early"),
    ],
)
def test_parse_rejects_ungrammatical(lang: FactorLanguage, sentence: str, message: str) -> None:
    assert lang.parse(sentence) is None
    with pytest.raises(ParseError, match=message):
        lang.parse(sentence, strict=True)


def test_parse_rejects_bad_token_ids(lang: FactorLanguage) -> None:
    assert lang.parse([lang.tokenizer.bos_id, 999]) is None
    with pytest.raises(ParseError, match="out of range"):
        lang.parse([999], strict=True)


def test_every_factor_changes_the_sentence(lang: FactorLanguage) -> None:
    rng = np.random.default_rng(3)
    for row in lang.sample_factors(30, rng):
        base = lang.sentence(row)
        for j, size in enumerate(lang.factor_sizes):
            for v in range(size):
                if v != row[j]:
                    other = row.copy()
                    other[j] = v
                    assert lang.sentence(other) != base, (NAMES[j], base)


def test_number_and_tense_shape_several_tokens(lang: FactorLanguage) -> None:
    sing = lang.words(_factors(lang, tense="present"))
    plur = lang.words(_factors(lang, tense="present", number="plural"))
    changed = [i for i, (a, b) in enumerate(zip(sing, plur, strict=True)) if a != b]
    assert changed == [0, 3, 4]  # determiner, noun, verb
    past = lang.words(_factors(lang, tense="past"))
    future = lang.words(_factors(lang, tense="future"))
    assert past[4] == "ran" and past[-2] == "yesterday"
    assert future[4:6] == ["will", "run"] and future[-2] == "tomorrow"


def test_sampling_is_uniform_and_independent(lang: FactorLanguage) -> None:
    sentences, factors = lang.sample_sentences(20_000, np.random.RandomState(0))
    assert len(sentences) == 20_000
    assert lang.parse(sentences[123]) == lang.factor_dict(factors[123])
    for j, size in enumerate(lang.factor_sizes):
        counts = np.bincount(factors[:, j], minlength=size)
        assert chisquare(counts).pvalue > 1e-4, (NAMES[j], counts)
    for i, j in itertools.combinations(range(lang.num_factors), 2):
        table = np.zeros((lang.factor_sizes[i], lang.factor_sizes[j]))
        np.add.at(table, (factors[:, i], factors[:, j]), 1)
        assert chi2_contingency(table).pvalue > 1e-4, (NAMES[i], NAMES[j])


def test_tokenizer() -> None:
    tok = FactorLanguage().tokenizer
    assert tok.vocab[:3] == ["<pad>", "<bos>", "<eos>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    ids = tok.encode("a big red dog runs in the park today .")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "a big red dog runs in the park today ."
    assert tok.decode(ids, skip_special=False).startswith("<bos> a")
    assert tok.encode("red dog", add_special=False) == [tok.token_id("red"), tok.token_id("dog")]
    with pytest.raises(ValueError, match="unknown word 'zebra'"):
        tok.encode("a zebra")
    assert Tokenizer.from_json(tok.to_json()).vocab == tok.vocab
    batch = tok.encode_batch(["a dog", "some dogs ran"], length=8)
    assert batch.shape == (2, 8) and batch[0, 4] == tok.pad_id
    with pytest.raises(ValueError, match="more than length"):
        tok.encode_batch(["a big red dog"], length=3)
    with pytest.raises(ValueError, match="special tokens"):
        Tokenizer(["a", "b"])
    with pytest.raises(ValueError, match="duplicate"):
        Tokenizer(["<pad>", "<bos>", "<eos>", "a", "a"])
