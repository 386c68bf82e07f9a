"""Chat LLM backends behind one interface: an OpenAI-compatible endpoint or the local generator.

The openai backend does its own retry loop (the client's is switched off) so that which failures
are retried, how long it waits and how many attempts were made are explicit and tested. The API
key is read from the environment variable the config names and handed only to the client.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from scarlet_ray.redact import redact, register_secret_env, register_url_secrets

log = logging.getLogger(__name__)


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    cached: bool = False
    finish_reason: str | None = None


class LLMError(RuntimeError):
    """A call failed for good (after retries); ``reason`` is a short code for counts."""

    def __init__(self, reason: str, detail: str = "", attempts: int = 1):
        self.reason = reason
        self.attempts = attempts
        super().__init__(f"{reason} after {attempts} attempt(s): {detail}" if detail else reason)


class Usage:
    """Thread-safe token, request and cost counters for the manifest."""

    def __init__(self, price_in_per_1k: float = 0.0, price_out_per_1k: float = 0.0):
        self._lock = threading.Lock()
        self.price_in = price_in_per_1k
        self.price_out = price_out_per_1k
        self.calls = 0
        self.attempts = 0
        self.cache_hits = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, r: ChatResult) -> None:
        with self._lock:
            if r.cached:
                self.cache_hits += 1
                return
            self.calls += 1
            self.attempts += r.attempts
            self.prompt_tokens += r.prompt_tokens
            self.completion_tokens += r.completion_tokens

    def add_failure(self, attempts: int) -> None:
        with self._lock:
            self.failures += 1
            self.attempts += attempts

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens / 1000 * self.price_in + completion_tokens / 1000 * self.price_out

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": self.calls, "attempts": self.attempts,
                    "cache_hits": self.cache_hits, "failed_calls": self.failures,
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "cost_usd": round(self.cost(self.prompt_tokens, self.completion_tokens), 6)}


class ChatLLM(ABC):
    """``chat(messages, temperature, max_tokens, seed, schema) -> ChatResult``; raises LLMError.

    ``schema`` (a JSON schema, or None) asks the backend to constrain its answer to that schema:
    OpenAI's ``response_format`` json_schema (strict), xgrammar on the local backend, vLLM's
    structured outputs. The answer is still only text: callers parse and check it as strictly
    as an unconstrained one (a grammar says nothing of truncation, emptiness or truth).
    """

    backend: str
    model: str
    supports_prefill: bool = False
    window: int | None = None  # tokens for prompt + answer where known (prompts are fitted to it)

    @abstractmethod
    def chat(self, messages: list[dict], *, temperature: float, max_tokens: int,
             seed: int = 0, schema: dict | None = None) -> ChatResult: ...

    def identity(self) -> dict[str, Any]:
        """What makes two backends' answers interchangeable (part of the cache key)."""
        return {"backend": self.backend, "model": self.model}

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The prompt's token ids; backends with a ``window`` must say, to fit prompts to it."""
        raise NotImplementedError(f"{type(self).__name__} does not tokenise prompts")


def schema_name(schema: dict) -> str:
    """The name OpenAI's json_schema wants (``^[a-zA-Z0-9_-]{1,64}$``): the schema's title."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "response"))
    return name[:64]


def response_format(schema: dict) -> dict[str, Any]:
    """OpenAI's structured outputs in strict mode (the schema must satisfy its subset: every
    property required, ``additionalProperties: false``, no minLength/maxLength/pattern)."""
    return {"type": "json_schema",
            "json_schema": {"name": schema_name(schema), "schema": schema, "strict": True}}


class OpenAIChat(ChatLLM):
    """The official ``openai`` client against OpenAI or any compatible server (vLLM, ...)."""

    backend = "openai"
    supports_prefill = False
    RETRY_STATUS = frozenset({408, 409, 429})

    def __init__(self, model: str, *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0,
                 max_retries: int = 5, backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 concurrency: int = 4, send_seed: bool = False):
        import openai

        # whatever writes or logs later masks the key and the URL's credentials
        register_secret_env(api_key_env)
        register_url_secrets(base_url)
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise ValueError(f"synthesis.api_key_env: environment variable {api_key_env} is "
                                 "not set (the OpenAI API needs a key; local servers take "
                                 "synthesis.base_url)")
            key = "EMPTY"  # OpenAI-compatible local servers without auth
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.send_seed = send_seed
        self._sem = threading.BoundedSemaphore(concurrency)
        self._openai = openai
        self._client = openai.OpenAI(api_key=key, base_url=base_url, timeout=timeout_s,
                                     max_retries=0)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= self.backoff_max_s:
            return retry_after
        base = min(self.backoff_max_s, self.backoff_s * (2 ** attempt))
        return base * (0.5 + random.random() / 2)  # jitter so parallel workers spread out

    def chat(self, messages: list[dict], *, temperature: float, max_tokens: int,
             seed: int = 0, schema: dict | None = None) -> ChatResult:
        oa = self._openai
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages,
                                  "temperature": temperature, "max_tokens": max_tokens}
        if self.send_seed:
            kwargs["seed"] = seed
        if schema is not None:
            kwargs["response_format"] = response_format(schema)
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                with self._sem:
                    resp = self._client.chat.completions.create(**kwargs)
                choice = resp.choices[0] if resp.choices else None
                if choice is None:
                    raise LLMError("bad_response", "no choices", attempt + 1)
                u = resp.usage
                return ChatResult(text=choice.message.content or "",
                                  prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
                                  completion_tokens=getattr(u, "completion_tokens", 0) or 0,
                                  attempts=attempt + 1, finish_reason=choice.finish_reason)
            except oa.APITimeoutError:
                reason, retryable, detail = "timeout", True, f"no answer in {self.timeout_s}s"
            except oa.APIConnectionError as exc:
                reason, retryable, detail = "connection", True, type(exc).__name__
            except oa.APIStatusError as exc:
                code = exc.status_code
                # redact before cutting: a cut through an echoed key or URL would leave a piece
                # that no longer looks like one
                reason, detail = f"http_{code}", redact(str(exc))[:200]
                retryable = code in self.RETRY_STATUS or code >= 500
                try:
                    ra = exc.response.headers.get("retry-after")
                    retry_after = float(ra) if ra is not None else None
                except (ValueError, AttributeError):
                    retry_after = None
            if not retryable or attempt == self.max_retries:
                raise LLMError(reason, detail, attempt + 1)
            delay = self._delay(attempt, retry_after)
            log.warning("chat call failed (%s), retry %d/%d in %.2fs", reason, attempt + 1,
                        self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


class LocalChat(ChatLLM):
    """The generator model through transformers ``generate`` with its chat template."""

    backend = "local"
    supports_prefill = True

    def __init__(self, generator: Any):
        self.gen = generator
        self.model = generator.name
        self.window = generator.window
        self._lock = threading.Lock()  # one generate at a time: the CPU is the bottleneck
        self._xgr_compiler: Any = None  # built on the first schema (xgrammar's tokenizer scan)
        self._grammars: dict[str, Any] = {}  # canonical schema JSON -> xgr.CompiledGrammar

    def _grammar(self, schema: dict) -> Any:
        """The schema compiled for this tokenizer, once per schema (call under ``_lock``).

        Compact JSON (``any_whitespace=False``): a grammar that allows any whitespace lets a
        small model spend its whole token budget on newlines before the first key."""
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True, ensure_ascii=False)
        compiled = self._grammars.get(key)
        if compiled is None:
            if self._xgr_compiler is None:
                # the model's vocab_size, not len(tokenizer): logits may carry padding rows
                vocab = getattr(self.gen.model.config, "vocab_size", None)
                info = xgr.TokenizerInfo.from_huggingface(self.gen.tokenizer, vocab_size=vocab)
                self._xgr_compiler = xgr.GrammarCompiler(info)
            compiled = self._xgr_compiler.compile_json_schema(json.dumps(schema),
                                                              any_whitespace=False)
            self._grammars[key] = compiled
        return compiled

    def _checked(self, messages: list[dict], max_tokens: int,
                 schema: dict | None) -> tuple[str, Any]:
        """(prefill text, encoded prompt) after the checks every local engine makes."""
        prefix = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        if prefix and schema is not None:
            # the grammar starts at the answer's first character; a prefill would put the
            # matcher out of step with the text (callers drop the prefill when they pass one)
            raise ValueError("a prefill (final assistant message) and a schema do not mix")
        enc = self._encode(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        if self.window is not None and n_prompt + max_tokens > self.window:
            # callers fit passages first (prompt.fit_passages); this stops anything else from
            # running a prompt past the window for minutes
            raise LLMError("context_window", f"prompt {n_prompt} + {max_tokens} new tokens "
                           f"exceed the model's window of {self.window}")
        return prefix, enc

    def _encode(self, messages: list[dict]) -> Any:
        # a final assistant message is a prefill: generation continues it (small models hit the
        # required format far more often when its first characters are given)
        prefix = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        return self.gen.tokenizer.apply_chat_template(
            messages, add_generation_prompt=not prefix, continue_final_message=bool(prefix),
            tokenize=True, return_dict=True, return_tensors="pt")

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """Exactly the ids ``chat`` feeds the model, so a fitted prompt is the prompt run."""
        return self._encode(messages)["input_ids"][0].tolist()

    def chat(self, messages: list[dict], *, temperature: float, max_tokens: int,
             seed: int = 0, schema: dict | None = None) -> ChatResult:
        import torch

        tok, model = self.gen.tokenizer, self.gen.model
        prefix, enc = self._checked(messages, max_tokens, schema)
        ids = enc["input_ids"].to(self.gen.device)
        mask = enc["attention_mask"].to(self.gen.device)
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_tokens,
                                      "pad_token_id": tok.pad_token_id}
        if temperature > 0:
            gen_kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.no_grad():
            if schema is not None:
                from xgrammar.contrib.hf import LogitsProcessor

                # a processor holds its matcher's state: one per generate call
                gen_kwargs["logits_processor"] = [LogitsProcessor(self._grammar(schema))]
            torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs)
        new = out[0, ids.shape[1]:]
        text = prefix + tok.decode(new, skip_special_tokens=True)
        finished = bool(len(new)) and int(new[-1]) == tok.eos_token_id
        return ChatResult(text=text, prompt_tokens=int(ids.shape[1]),
                          completion_tokens=int(len(new)),
                          finish_reason="stop" if finished else "length")


def build_llm(cfg: Any) -> ChatLLM:
    """The backend a job config asks for (``cfg`` is the whole Config)."""
    s = cfg.synthesis
    if s.backend == "vllm":
        from scarlet_ray.synthesis.vllm_chat import VLLMChat

        return VLLMChat(cfg)
    if s.backend == "openai":
        return OpenAIChat(s.model, base_url=s.base_url, api_key_env=s.api_key_env,
                          timeout_s=s.timeout_s, max_retries=s.max_retries,
                          backoff_s=s.backoff_s, backoff_max_s=s.backoff_max_s,
                          concurrency=s.concurrency)
    from scarlet_ray.models.generator import load_generator

    gen = load_generator(cfg.models.generator, dtype=cfg.models.dtype, device=cfg.models.device,
                         attn_implementation=cfg.models.attn_implementation)
    return LocalChat(gen)
