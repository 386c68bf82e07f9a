"""Query building, escaping and expansion against an in-process pyoxigraph store built from the
real Wikidata files; the corpus co-occurrence graph on real HotpotQA paragraphs."""

from __future__ import annotations

import pytest
from context_support import NASTY, NEIGHBOUR_LABELS, PROPS
from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib.plugins.sparql import prepareQuery

from scarlet_ray.context.corpus_graph import CorpusGraph, normalize
from scarlet_ray.context.oxigraph_store import OxigraphStore
from scarlet_ray.context.sparql_graph import case_variants, link_query, neighbours_query
from scarlet_ray.datasets.wikidata import TURTLE_PREFIXES, shared_wikidata_files, to_turtle
from scarlet_ray.records import CorpusPassage
from scarlet_ray.sparql import sparql_literal


@pytest.fixture(scope="module")
def wikidata_ttl(shared_data):
    return to_turtle(shared_wikidata_files(shared_data / "wikidata"))


@pytest.fixture(scope="module")
def store(wikidata_ttl):
    s = OxigraphStore(properties=PROPS, max_related=5)
    s.load(None, data=wikidata_ttl)
    s.load(None, data=NEIGHBOUR_LABELS)
    return s


@pytest.mark.slow
def test_turtle_from_real_files(wikidata_ttl):
    assert "wd:Q42 rdfs:label \"Douglas Adams\"@en ." in wikidata_ttl
    assert "wd:Q42 wdt:P31 wd:Q5 ." in wikidata_ttl
    assert "wd:Q1 schema:description" in wikidata_ttl
    assert "@de" not in wikidata_ttl  # languages filtered to English by default
    assert "wd:Q6 " not in wikidata_ttl  # the "missing" entity of the API answer yields nothing


@pytest.mark.slow
def test_link_exact_then_case_insensitive(store):
    assert store.link("Douglas Adams") == "Q42"
    assert store.link("douglas adams") == "Q42"
    assert store.link("DOUGLAS ADAMS") == "Q42"
    assert store.link("Universe") == "Q1"
    assert store.link("Karlsruhe") == "Q1040"  # the API followed a redirect from Q32063953
    assert store.link("Douglas") is None
    assert store.link("") is None
    assert store.link("x" * 400) is None


@pytest.mark.slow
def test_neighbours_label_description_in_property_order(store):
    assert store.neighbours("Q42") == [
        "human: any member of Homo sapiens, unique extant species of the genus Homo",
        "Category:Douglas Adams: Wikimedia category",
    ]
    # P31 (city) before P361 (region); a neighbour without a description is its label alone;
    # neighbours without an English label are skipped.
    assert store.neighbours("Q1040") == ["city: large human settlement",
                                         "Karlsruhe Government Region"]
    assert store.neighbours("Q1") == []
    assert store.expand("douglas adams")[0].startswith("human: ")
    store.max_related = 1
    try:
        assert store.neighbours("Q42") == [
            "human: any member of Homo sapiens, unique extant species of the genus Homo"]
    finally:
        store.max_related = 5


def test_only_wellformed_ids_are_interpolated():
    for bad in ["Q42 } #", "wd:Q42", "Q0", "q42", "Q42\n", "P31"]:
        with pytest.raises(ValueError):
            neighbours_query(bad, PROPS)
    with pytest.raises(ValueError):
        neighbours_query("Q42", ["P31", "P31 } ?x"])
    with pytest.raises(ValueError):
        sparql_literal("x", lang='en" } #')


@pytest.mark.parametrize("labels", [["Douglas Adams"], case_variants("douglas adams")])
def test_queries_are_standard_sparql(labels):
    """An independent SPARQL 1.1 parser (rdflib) accepts them; nothing WDQS-only or
    Oxigraph-only is used."""
    for q in (link_query(labels), neighbours_query("Q42", PROPS)):
        prepareQuery(q)
        assert "SERVICE" not in q and "wikibase:label" not in q


@pytest.mark.slow
@pytest.mark.parametrize("nasty", NASTY)
def test_injection_strings_stay_literals(store, nasty):
    q = link_query([nasty])
    prepareQuery(q)  # valid for a second, independent parser too
    before = len(store)
    assert store.select(q) == []  # no label equals it: no unintended results
    assert store.link(nasty) is None
    assert len(store) == before


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: s.split() == [s] and len(s) <= 250))
def test_literal_round_trip(text):
    """Any single-token string, stored as a label, is found by exactly itself."""
    s = OxigraphStore(properties=PROPS)
    s.load(None, data=TURTLE_PREFIXES + f"wd:Q7 rdfs:label {sparql_literal(text, 'en')} .\n"
                      f"wd:Q8 rdfs:label {sparql_literal(text + 'x', 'en')} .")
    prepareQuery(link_query([text]))
    assert s.link(text) == "Q7"
    assert s.select(link_query([text + "y"])) == []


def test_nasty_label_found_only_by_itself():
    s = OxigraphStore(properties=PROPS)
    turtle = TURTLE_PREFIXES + "".join(
        f"wd:Q{100 + i} rdfs:label {sparql_literal(' '.join(n.split()), 'en')} .\n"
        for i, n in enumerate(NASTY))
    s.load(None, data=turtle)
    for i, n in enumerate(NASTY):
        assert s.link(n) == f"Q{100 + i}", n


@pytest.mark.slow
def test_corpus_graph_on_hotpotqa_paragraphs(shared_data, tmp_path):
    import json

    data = json.loads((shared_data / "hotpotqa" / "hotpotqa_train_corpus.json").read_text())
    passages = [CorpusPassage(id=str(i), title=t, text="".join(s))
                for i, (t, s) in enumerate(list(data.items())[:300])]
    g = CorpusGraph(passages, max_related=3)
    title = passages[0].title
    node = g.link(title.upper())
    assert node == normalize(title)
    # a node's neighbours are titles mentioned with it, with their first sentence
    mentioned = [p for p in passages if len(g.nodes_in[passages.index(p)]) > 1]
    assert mentioned, "some paragraph mentions another title"
    i = passages.index(mentioned[0])
    nb = g.neighbours(normalize(passages[i].title))
    assert 1 <= len(nb) <= 3
    other = next(k for k in g.nodes_in[i] if k != normalize(passages[i].title))
    assert any(x.split(":")[0] == g.label[other] for x in g.neighbours(normalize(
        passages[i].title)) + [g.label[other]])
    assert g.link("no such entity anywhere 123") is None
    assert g.neighbours("not a node") == []
    g.save(tmp_path / "graph.json", "fp1")
    back = CorpusGraph.load(tmp_path / "graph.json", "fp1")
    assert back is not None and back.link(title.upper()) == node
    assert all(back.neighbours(k) == g.neighbours(k) for k in list(g.passages_of)[:50])
    assert CorpusGraph.load(tmp_path / "graph.json", "fp2") is None


@pytest.mark.slow
def test_make_knowledge_oxigraph_from_wikidata_json(shared_data):
    from scarlet_ray.config import ContextConfig
    from scarlet_ray.context.knowledge import make_knowledge

    files = [str(f) for f in shared_wikidata_files(shared_data / "wikidata")]
    kg = make_knowledge(ContextConfig(knowledge="oxigraph", rdf_files=files))
    assert isinstance(kg, OxigraphStore) and kg.link("douglas adams") == "Q42"
    with pytest.raises(ValueError, match="rdf_files"):
        make_knowledge(ContextConfig(knowledge="oxigraph"))
    assert make_knowledge(ContextConfig(knowledge="none")) is None
