"""The text a retriever sees: one passage format and one query format for every stage.

The context index, the training labels (and so training), the gold-label ceiling, retrieval
evaluation and RAG retrieval all encode passages through :func:`passage_text`, so a model is
trained on the same text it is evaluated and used on. Not to be confused with the generator's
prompt (``scarlet_ray.prompt``), which is what the LLM reads.
"""

from __future__ import annotations


def passage_text(title: str, text: str) -> str:
    """A passage as the bi-encoder encodes it: the title on its own line, then the text.

    (For BERT-style tokenizers the newline is plain whitespace, so this tokenizes exactly like
    BEIR's ``"title text"``.)
    """
    return f"{title}\n{text}" if title else text


def query_text(instruction: str, query: str) -> str:
    """A query as the bi-encoder encodes it: the instruction prefix, then the query.

    Today's convention: the prefix is glued on as given (training uses the sample's task
    instruction or ``training.query_instruction``; evaluation ``training.query_instruction``).
    """
    return instruction + query
