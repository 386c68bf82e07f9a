"""Strict parsing of LLM outputs and the cheap rule checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scarlet_ray.records import Passage
from scarlet_ray.synthesis.checks import normalize, rule_check
from scarlet_ray.synthesis.prompts import (
    ParseError,
    check_messages,
    parse_check,
    parse_noise,
    parse_synthesis,
    synthesis_messages,
)
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS

P = [Passage(id="p0", title="Radiohead", text="Radiohead released OK Computer in 1997."),
     Passage(id="p1", title="Blur", text="Blur released Parklife in 1994.")]


def test_synthesis_prompt_carries_task_rules_and_passages():
    msgs = synthesis_messages(BUILTIN_TASKS["fever"], P)
    user = msgs[1]["content"]
    assert "SUPPORTS, REFUTES" in user and "Title: Blur\nText: Blur released" in user
    assert '{"input": "...", "output": "..."}' in user
    assert "copied verbatim" in synthesis_messages(BUILTIN_TASKS["nq"], P)[1]["content"]
    assert "[YES] or [NO]" in check_messages(BUILTIN_TASKS["nq"], P, "q", "a")[1]["content"]


@pytest.mark.parametrize("text,expected", [
    ('{"input": "When?", "output": "1997"}', ("When?", "1997")),
    ('```json\n{"input": " When? ", "output": "1997"}\n```', ("When?", "1997")),
])
def test_parse_synthesis_accepts_the_format(text, expected):
    assert parse_synthesis(text) == expected


@pytest.mark.parametrize("text,reason", [
    ("", "malformed:empty"),
    ("Sure! Input: When? Output: 1997", "malformed:not_json"),
    ('Here: {"input": "When?", "output": "1997"}', "malformed:not_json"),
    ('["When?", "1997"]', "malformed:not_object"),
    ('{"input": "When?", "answer": "1997"}', "malformed:keys"),
    ('{"input": "When?", "output": "1997", "extra": 1}', "malformed:keys"),
    ('{"input": "When?", "output": 1997}', "malformed:types"),
    ('{"input": "When?", "output": "  "}', "malformed:empty_field"),
    ('{"input": "X", "output": "X", "output": "Y"}', "malformed:duplicate_key"),
])
def test_parse_synthesis_rejects_with_reason(text, reason):
    with pytest.raises(ParseError) as ei:
        parse_synthesis(text)
    assert ei.value.reason == reason


def test_parse_check_and_noise():
    assert parse_check("[YES]") is True and parse_check("Verdict: [no]") is False
    for bad in ("yes", "[YES] [NO]", ""):
        with pytest.raises(ParseError, match="check:unparseable"):
            parse_check(bad)
    assert parse_noise('{"title": "T", "text": "body"}') == ("T", "body")
    with pytest.raises(ParseError, match="noise:keys"):
        parse_noise('{"title": "T"}')


def test_rule_checks():
    fever, nq, eli5 = BUILTIN_TASKS["fever"], BUILTIN_TASKS["nq"], BUILTIN_TASKS["eli5"]
    assert rule_check(fever, P, "supports.") == (None, "SUPPORTS")
    assert rule_check(fever, P, "NOT ENOUGH INFO")[0] == "rule:label_not_allowed"
    assert rule_check(nq, P, "OK Computer!")[0] is None
    assert rule_check(nq, P, "the Radiohead")[0] is None
    assert rule_check(nq, P, "Oasis")[0] == "rule:answer_not_in_context"
    assert rule_check(nq, P, "Radio")[0] == "rule:answer_not_in_context"  # whole words only
    assert rule_check(eli5, P, "Anything goes for long form")[0] is None
    assert rule_check(nq, P, "Radiohead", "radiohead.")[0] == "rule:output_repeats_input"
    assert rule_check(nq, P, "Radiohead", "Which band released OK Computer?")[0] is None


@given(st.text(max_size=40))
def test_normalize_is_idempotent_and_whitespace_free_at_ends(s):
    n = normalize(s)
    assert normalize(n) == n
    assert n == n.strip() and "  " not in n
