"""Stage 1, shared contexts: seed entities (spaCy) -> one-hop expansion (Wikidata SPARQL,
in-process Oxigraph, or the corpus co-occurrence graph) -> dense passage retrieval -> merged
top passages with provenance."""
