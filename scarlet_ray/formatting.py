"""The text a retriever sees: one passage format and one query format for every stage.

The context index, the training labels (and so training), the gold-label ceiling, retrieval
evaluation and RAG retrieval all encode passages through :func:`passage_text` and queries through
:func:`query_text`, so a model is trained on the same form of text it is evaluated and used on.
Not to be confused with the generator's prompt (``scarlet_ray.prompt``), which is what the LLM
reads.

The query convention is the released SCARLet code's: ``instruction [SEP] query``. Which
instruction is a setting per use (:func:`query_instruction`): training takes each example's task
instruction unless ``training.query_instruction`` names one text; evaluation takes the set's task
instruction unless ``evaluation.query_instruction`` (or the set's own) names a retrieval
instruction, as the released code does for BGE.
"""

from __future__ import annotations

# BERT-family tokenizers (BGE, Contriever, MiniLM) read "[SEP]" in text as their separator token,
# so the instruction and the query are two segments to the encoder, as in the released code
QUERY_SEP = "[SEP]"


def passage_text(title: str, text: str) -> str:
    """A passage as the bi-encoder encodes it: the title on its own line, then the text.

    (For BERT-style tokenizers the newline is plain whitespace, so this tokenizes exactly like
    BEIR's ``"title text"``.)
    """
    return f"{title}\n{text}" if title else text


def query_text(instruction: str, query: str) -> str:
    """A query as the bi-encoder encodes it: ``instruction [SEP] query``; a query without an
    instruction is the query alone (no dangling separator)."""
    instruction = instruction.strip()
    return f"{instruction} {QUERY_SEP} {query}" if instruction else query


def query_instruction(configured: str | None, task_instruction: str | None) -> str:
    """The instruction a use puts before ``[SEP]``: the configured text where the config names
    one (``""`` means none), else the task's own instruction."""
    if configured is not None:
        return configured
    return task_instruction or ""
