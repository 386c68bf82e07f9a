"""Strict parsing of LLM outputs and the cheap rule checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scarlet_ray.records import Passage
from scarlet_ray.synthesis.cache import cache_key, call_params
from scarlet_ray.synthesis.checks import normalize, rule_check
from scarlet_ray.synthesis.llm import response_format
from scarlet_ray.synthesis.prompts import (
    ParseError,
    check_messages,
    noise_schema,
    parse_check,
    parse_noise,
    parse_synthesis,
    sample_schema,
    synthesis_messages,
)
from scarlet_ray.synthesis.tasks import BUILTIN_TASKS, Task

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


# keywords OpenAI's strict mode refuses (structured outputs: "supported schemas")
STRICT_UNSUPPORTED = {"minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                      "multipleOf", "patternProperties", "unevaluatedProperties", "minItems",
                      "maxItems", "uniqueItems", "minProperties", "maxProperties"}


def strict_mode_problems(schema: dict, where: str = "$") -> list[str]:
    """What OpenAI's strict mode would refuse in ``schema`` (empty: it takes it)."""
    problems = [f"{where}: {k}" for k in sorted(STRICT_UNSUPPORTED & set(schema))]
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(props):
            problems.append(f"{where}: every property must be required")
        for name, sub in props.items():
            problems += strict_mode_problems(sub, f"{where}.{name}")
    return problems


def test_sample_schema_is_strict_and_labels_become_an_enum():
    nq, fever = sample_schema(BUILTIN_TASKS["nq"]), sample_schema(BUILTIN_TASKS["fever"])
    assert nq == {"title": "sample", "type": "object",
                  "properties": {"input": {"type": "string"}, "output": {"type": "string"}},
                  "required": ["input", "output"], "additionalProperties": False}
    assert fever["properties"]["output"] == {"type": "string", "enum": ["SUPPORTS", "REFUTES"]}
    assert fever["properties"]["input"] == {"type": "string"}
    custom = Task("stance", "d", "i", "x", "PRO", "accuracy", labels=("PRO", "CON", "NEUTRAL"))
    assert sample_schema(custom)["properties"]["output"]["enum"] == ["PRO", "CON", "NEUTRAL"]
    noise = noise_schema()
    assert noise["required"] == ["title", "text"] and noise["additionalProperties"] is False
    for schema in (nq, fever, sample_schema(custom), noise):
        assert strict_mode_problems(schema) == []
        json.dumps(schema)  # goes on the wire as is
    # the checker itself catches what strict mode refuses
    assert strict_mode_problems({"type": "object", "properties": {"a": {"type": "string",
                                 "minLength": 1}}, "required": []}) == [
        "$: additionalProperties must be false", "$: every property must be required",
        "$.a: minLength"]
    rf = response_format(fever)
    assert rf == {"type": "json_schema",
                  "json_schema": {"name": "sample", "schema": fever, "strict": True}}
    assert response_format({"title": "a b/c", "type": "object"})["json_schema"]["name"] == "a_b_c"


def test_cache_key_changes_with_the_schema_and_not_without_one():
    ident = {"backend": "local", "model": "m"}
    msgs = [{"role": "user", "content": "hi"}]
    plain = cache_key(ident, msgs, call_params(0.5, 8, 0))
    # the key every cache written before schemas existed holds for this call
    assert plain == "bc67d55b2d5764fa589f0aa4a5c282f3adf141a10baf3877519da0056f733945"
    assert cache_key(ident, msgs, call_params(0.5, 8, 0, None)) == plain
    nq = cache_key(ident, msgs, call_params(0.5, 8, 0, sample_schema(BUILTIN_TASKS["nq"])))
    fever = cache_key(ident, msgs, call_params(0.5, 8, 0, sample_schema(BUILTIN_TASKS["fever"])))
    assert len({plain, nq, fever}) == 3
    # the same schema with its keys in another order is the same call
    reordered = dict(reversed(list(sample_schema(BUILTIN_TASKS["nq"]).items())))
    assert cache_key(ident, msgs, call_params(0.5, 8, 0, reordered)) == nq


def test_check_verdict_schema_parses_as_the_bare_answer():
    from scarlet_ray.synthesis.prompts import check_schema

    sch = check_schema()
    assert sch["properties"]["verdict"]["enum"] == ["[YES]", "[NO]"]
    assert sch["required"] == ["verdict"] and sch["additionalProperties"] is False
    assert parse_check('{"verdict":"[YES]"}') is True
    assert parse_check('{"verdict": "[NO]"}') is False
