"""Typed configuration tree, one per job: YAML file + ``key=value`` overrides.

Every section forbids unknown keys and checks types strictly enough that a typo in a job file or
on the command line fails at load time with the dotted key in the message, not hours later.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from scarlet_ray.redact import redact, register_secret, register_secret_env, register_url_secrets


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# well-known key shapes that also pass as variable names (HF, GitHub, Slack, AWS, Stripe ...)
_KEY_SHAPE = re.compile(r"^(?:sk|rk|pk|hf|ghp|gho|ghs|ghu|github_pat|xox[abpr]|glpat)[-_]"
                        r"|^AKIA[0-9A-Z]{16}$")


def _env_var_name(v: str) -> str:
    """A setting that names an environment variable must hold a name, never the secret itself;
    the message does not repeat the value (it may be a key typed by mistake)."""
    looks_like_key = bool(_KEY_SHAPE.search(v)) or (
        len(v) >= 24 and any(c.isdigit() for c in v) and any(c.islower() for c in v))
    if looks_like_key or not _ENV_NAME.match(v):
        register_secret(v)  # mask it wherever else it might be printed
        why = "looks like a key itself" if looks_like_key else \
            "is not a variable name (letters, digits and _, not starting with a digit)"
        raise ValueError(f"must be the NAME of the environment variable that holds the key "
                         f"(e.g. OPENAI_API_KEY); the value given {why} and is not shown")
    return v


def _url_setting(v: str | None) -> str | None:
    """URLs may carry credentials (user:pw@, ?api-key=); register them so outputs mask them."""
    register_url_secrets(v)
    return v


class SeedSource(_Section):
    """One source of seed questions: a file in a reader format, its task and how many to take.

    ``sampling: random`` draws ``count`` records uniformly with ``seed`` while streaming the file
    (two passes, memory of the sample only); ``first`` takes the first ``count``.
    """

    path: str
    format: str = "kilt"
    task: str | None = None  # None: the reader's own (KILT: from the file name)
    count: int | None = Field(default=None, ge=1)  # None: every record
    sampling: Literal["first", "random"] = "random"
    seed: int = 42


class DataConfig(_Section):
    """Where seeds and the passage corpus come from (stage 1 inputs).

    ``seeds`` is a list of sources (the paper: 1,000 random questions from each of six KILT
    train sets), or, as before, one path: that single-file form is read as one source
    ``{path, format: seeds_format, count: seed_limit, sampling: first}``.
    """

    seeds: str | list[SeedSource] | None = None
    seeds_format: str = "hotpotqa"  # the single-file form only
    seed_limit: int | None = Field(default=None, ge=1)  # the single-file form only
    corpus: list[str] = Field(default_factory=list)
    corpus_formats: list[str] = Field(default_factory=list)
    passage_words: int = Field(default=100, ge=10)
    # beyond the paper: also attribute the seed questions on their shared contexts, so a laptop
    # run has labelled data even where a small synthesizer writes few usable samples
    attribute_seeds: bool = True

    @model_validator(mode="after")
    def _single_file_keys(self) -> DataConfig:
        if isinstance(self.seeds, list):
            bad = [k for k in ("seeds_format", "seed_limit") if k in self.model_fields_set]
            if bad:
                raise ValueError(f"data.{bad[0]} belongs to the single-file form of data.seeds; "
                                 "with a list of sources set format/count per source")
            names = [f"{s.path}|{s.task}" for s in self.seeds]
            if len(set(names)) != len(names):
                raise ValueError("data.seeds: the same path and task are listed twice")
        return self

    def seed_sources(self) -> list[SeedSource]:
        """The seeds as sources, whichever form the job file used."""
        if self.seeds is None:
            return []
        if isinstance(self.seeds, str):
            return [SeedSource(path=self.seeds, format=self.seeds_format, count=self.seed_limit,
                               sampling="first")]
        return list(self.seeds)


class VLLMConfig(_Section):
    """The vLLM engine, where a stage's backend is ``vllm`` (``models/vllm_engine.py``).

    Memory is vLLM's to size: on a GPU it takes ``gpu_memory_utilization`` of the card for
    weights, activations and KV cache (our own batch estimate is not used); on a CPU that
    fraction would reserve most of the machine's RAM, so the KV cache gets ``kv_cache_gib``.
    """

    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    kv_cache_gib: float | None = Field(default=None, gt=0)  # null: 2 GiB on CPU, vLLM's on GPU
    max_model_len: int | None = Field(default=None, ge=64)  # null: the model's window
    enable_prefix_caching: bool = True
    enforce_eager: bool = False  # true skips compilation/graph capture: faster start, slower run
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=64)
    tensor_parallel_size: int = Field(default=1, ge=1)
    # requests per engine call when scoring (masks of several samples go in one call)
    score_batch_requests: int = Field(default=512, ge=1)


class ModelsConfig(_Section):
    """Model references: a named offline default, a Hugging Face id, or a local path."""

    generator: str = "smollm2-135m-instruct"
    retriever: str = "all-minilm-l6-v2"
    ner: str = "en_core_web_sm"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    device: str = "auto"
    attn_implementation: str | None = None
    cache_dir: str | None = None
    vllm: VLLMConfig = Field(default_factory=lambda: VLLMConfig())


class ContextConfig(_Section):
    """Stage 1: NER, knowledge-graph expansion and dense retrieval."""

    knowledge: Literal["sparql", "oxigraph", "corpus", "none"] = "corpus"
    endpoint: str = "https://query.wikidata.org/sparql"
    user_agent: str = "scarlet-ray/0.1 (https://github.com/scarlet-ray/scarlet-ray)"
    rdf_files: list[str] = Field(default_factory=list)
    language: str = "en"
    properties: list[str] = Field(
        default_factory=lambda: ["P31", "P361", "P112", "P910", "P527", "P2670"]
    )
    max_related: int = Field(default=5, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)
    passages_per_entity: int = Field(default=10, ge=1)
    context_size: int = Field(default=10, ge=1)
    entity_labels: list[str] = Field(default_factory=list)
    entity_exclude: list[str] = Field(default_factory=lambda: ["ORDINAL", "CARDINAL"])
    cache_dir: str | None = None
    corpus_graph_ner: bool = True
    index_dir: str | None = None  # where the stage keeps the index it builds without --index
    encode_batch_size: int = Field(default=64, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, v: Any) -> Any:
        if isinstance(v, dict) and "index_backend" in v:
            raise ValueError("index_backend: replaced by index.kind (flat, ivf, hnsw, ivfpq)")
        return v

    _endpoint = field_validator("endpoint")(_url_setting)


class IndexConfig(_Section):
    """``scarlet index build``, and the index the context stage and evaluations build or reuse.

    ``kind``: flat (exact; memory 2 x dim bytes per passage in fp16 shards), ivf (k-means cells,
    ``nprobe`` searched), hnsw (graph; best recall per query time, most memory), ivfpq
    (``pq_m`` bytes per passage; re-ranked exactly from the shards, ``rerank`` x k candidates).
    """

    path: str | None = None  # a built index folder that `scarlet run`'s context stage uses
    kind: Literal["flat", "ivf", "hnsw", "ivfpq"] = "flat"
    nlist: int | None = Field(default=None, ge=1)
    nprobe: int = Field(default=16, ge=1)
    m: int = Field(default=32, ge=2)
    ef_construction: int = Field(default=64, ge=1)
    ef_search: int = Field(default=64, ge=1)
    pq_m: int = Field(default=32, ge=1)
    train_size: int = Field(default=100_000, ge=1)
    rerank: int = Field(default=4, ge=1)
    shard_size: int = Field(default=8192, ge=1)
    batch_size: int = Field(default=64, ge=1)
    runner: Literal["local", "ray"] = "local"
    num_actors: int = Field(default=2, ge=1)
    num_cpus_per_actor: float = Field(default=1.0, ge=0)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)
    # as attribution's: -1 retries a shard lost with its node until Ray restarts the actor
    max_actor_restarts: int = Field(default=3, ge=-1)
    max_task_retries: int = Field(default=-1, ge=-1)
    seed: int = 0

    _path = field_validator("path")(_url_setting)

    def ann_spec(self) -> Any:
        from scarlet_ray.context.ann import AnnSpec

        return AnnSpec(kind=self.kind, nlist=self.nlist, nprobe=self.nprobe, m=self.m,
                       ef_construction=self.ef_construction, ef_search=self.ef_search,
                       pq_m=self.pq_m, train_size=self.train_size, seed=self.seed)


class TaskSpec(_Section):
    """A user-defined task added to the built-in pool."""

    name: str
    description: str
    instruction: str
    example_input: str = ""
    example_output: str = ""
    metric: Literal["substring", "rougeL", "f1", "accuracy"] = "substring"
    labels: list[str] = Field(default_factory=list)
    extractive: bool = False
    max_new_tokens: int = Field(default=32, ge=1)


class SynthesisConfig(_Section):
    """Stage 2: LLM-written task samples on each shared context."""

    # local: the generator through transformers; vllm: the generator in a vLLM engine;
    # openai: any OpenAI-compatible server (GPT-4o, vllm serve, ...)
    backend: Literal["openai", "local", "vllm"] = "local"
    model: str = "gpt-4o-2024-11-20"
    # ask every backend for the sample's JSON schema (openai: response_format json_schema;
    # local: xgrammar's logits processor; vllm: its structured outputs)
    structured_output: bool = True
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.5, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    concurrency: int = Field(default=4, ge=1)
    tasks: list[str] = Field(
        default_factory=lambda: ["nq", "hotpotqa", "eli5", "fever", "wow", "trex"]
    )
    extra_tasks: list[TaskSpec] = Field(default_factory=list)
    check: bool = True
    noise_passage: bool = False
    price_per_1k_input: float = Field(default=0.0025, ge=0)
    price_per_1k_output: float = Field(default=0.01, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    cache_path: str | None = None
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    seed: int = 0
    prefill: bool = False
    max_contexts: int | None = Field(default=None, ge=1)

    _base_url = field_validator("base_url")(_url_setting)

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str) -> str:
        v = _env_var_name(v)
        register_secret_env(v)
        return v


class AttributionConfig(_Section):
    """Stages 3: masks, teacher-forced scoring and the linear surrogate."""

    n_masks: int = Field(default=64, ge=2)
    keep_prob: float = Field(default=0.5, gt=0, lt=1)
    include_full: bool = False
    include_empty: bool = False
    dedupe_masks: bool = True
    target: Literal["logprob_sum", "logit_sum", "logit_prob"] = "logprob_sum"
    # hf: transformers forwards with KV sharing (CPU default); vllm: prompt log-probs from a
    # vLLM engine (models.vllm), the production engine on GPU
    backend: Literal["hf", "vllm"] = "hf"
    surrogate: Literal["ridge", "lasso"] = "ridge"
    alpha: float = Field(default=1.0, ge=0)
    # ContextCite's: the LASSO fits the score per answer token, so this alpha means the same for
    # short and long answers (0.01 is ContextCite's default)
    lasso_alpha: float = Field(default=0.01, gt=0)
    cv_folds: int = Field(default=5, ge=2)
    max_batch_tokens: int = Field(default=16384, ge=256)
    prefix_cache: bool = True
    # KV reuse across a sample's masks: "trie" (token radix tree, CPU default) or "prefix"
    # (batched masks over one cached common prefix, GPU default); see attribution/scoring.py
    kv_sharing: Literal["auto", "trie", "prefix"] = "auto"
    # parallel walks of the tree on CPU, one intra-op thread each; null = torch's thread count
    cpu_walkers: int | None = Field(default=None, ge=1)
    max_context_tokens: int | None = Field(default=None, ge=64)
    passage_words: int | None = Field(default=None, ge=10)
    seed: int = 0
    flush_every: int = Field(default=8, ge=1)
    eval_baselines: list[Literal["loo", "similarity", "attention", "random"]] = Field(
        default_factory=lambda: ["loo", "similarity", "attention", "random"])
    runner: Literal["local", "ray"] = "local"
    num_actors_min: int = Field(default=1, ge=1)
    num_actors_max: int = Field(default=2, ge=1)
    num_gpus_per_actor: float = Field(default=0.0, ge=0)
    num_cpus_per_actor: float = Field(default=1.0, gt=0)
    ray_batch_size: int = Field(default=4, ge=1)
    # -1 = unbounded (Ray's convention). A batch in flight on a preempted node is retried while
    # Ray still calls the node "temporarily unavailable" (until its health checks fail, ~15 s
    # with Ray's defaults); each retry fails at once, so any finite count can be spent before
    # the actor is restarted elsewhere (3 were, in tests/test_rehearsal.py). Unbounded retries
    # end when the actor is dead for good: max_actor_restarts bounds a batch that kills its
    # process every time. Spot clusters: max_actor_restarts -1 too (each loss costs a restart).
    max_task_retries: int = Field(default=-1, ge=-1)
    max_actor_restarts: int = Field(default=3, ge=-1)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)


class LabelsConfig(_Section):
    """Stage 4: utilities to pos/mid/neg labels."""

    method: Literal["kmeans", "kmeans_dp", "fixed"] = "kmeans"
    k: int = Field(default=3, ge=2)
    random_state: int = 42
    fixed_top: int = Field(default=1, ge=1)
    fixed_bottom: int = Field(default=5, ge=1)


class TrainingConfig(_Section):
    """Stage 5: contrastive bi-encoder training on Ray Train."""

    # utility_kl: soft labels, KL to a softmax of each group's utilities (pos_scores/neg_scores)
    loss: Literal["pairwise_ce", "infonce", "utility_kl"] = "pairwise_ce"
    temperature: float = Field(default=0.05, gt=0)
    label_temperature: float = Field(default=1.0, gt=0)  # utility_kl: softmax of utilities
    similarity: Literal["cos", "dot"] = "cos"
    lr: float = Field(default=6e-5, gt=0)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=1)
    group_size: int = Field(default=4, ge=2)
    max_seq_len: int = Field(default=256, ge=8)
    # the instruction before "[SEP]" in training queries (formatting.query_text): null = each
    # example's task instruction (the released SCARLet code), a string = that text for all
    query_instruction: str | None = None
    backend: Literal["deepspeed", "ddp"] = "deepspeed"
    zero_stage: int = Field(default=1, ge=0, le=3)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    grad_accum: int = Field(default=1, ge=1)
    grad_clip: float = Field(default=1.0, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.01, ge=0)
    num_workers: int = Field(default=1, ge=1)
    use_gpu: bool = False
    checkpoint_every: int = Field(default=50, ge=1)
    storage_path: str | None = None
    max_failures: int = Field(default=2, ge=-1)
    seed: int = 42
    scheduler: Literal["warmup_decay", "warmup"] = "warmup_decay"
    max_steps: int | None = Field(default=None, ge=1)
    log_every: int = Field(default=10, ge=1)
    gather_negatives: bool = True
    keep_checkpoints: int = Field(default=2, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    torch_threads: int | None = Field(default=None, ge=1)
    run_name: str | None = None
    # the guard (training/validation.py): hold out a seeded share of the examples, rank their
    # passages before training and at each validation, export the best (the start included)
    validation_fraction: float = Field(default=0.0, ge=0, lt=1)
    eval_every: int | None = Field(default=None, ge=1)  # optimizer steps; null: each epoch end
    early_stopping_patience: int | None = Field(default=None, ge=1)  # validations w/o gain
    keep_best: bool = True  # export the best-validating weights, not the last


class EvalSet(_Section):
    """One evaluation set, named on its own (never a slice of the training seeds unless
    ``offset`` says so explicitly).

    ``format`` is a samples reader (kilt, hotpotqa, scifact, climate-fever, fiqa, ...) or
    ``beir`` (a BEIR folder: retrieval metrics only). The set's closed corpus is ``corpus`` (files
    with ``corpus_formats``), or, where that is empty, the passages its samples carry.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _one_corpus(self) -> EvalSet:
        if self.run_corpus and self.corpus:
            raise ValueError("set either corpus (files) or run_corpus: true, not both")
        if self.offset and self.sampling != "first":
            raise ValueError("offset works with sampling: first (the records after it)")
        return self

    path: str
    format: str
    task: str | None = None
    count: int | None = Field(default=1000, ge=1)  # the paper: 1,000 random questions a set
    sampling: Literal["first", "random"] = "random"
    seed: int = 42
    offset: int | None = Field(default=None, ge=0)  # skip this many records first (explicit)
    split: str = "test"  # BEIR-form sets
    corpus: list[str] = Field(default_factory=list)
    corpus_formats: list[str] = Field(default_factory=list)
    # retrieve from the run's own corpus (data.corpus, converted once): the KILT sets share
    # KILT Wikipedia, which is too big to copy per set
    run_corpus: bool = False
    query_instruction: str | None = None  # overrides evaluation.query_instruction
    max_new_tokens: int | None = Field(default=None, ge=1)  # overrides the task's


class EvaluationConfig(_Section):
    """Stage 6: retrieval, RAG and attribution metrics."""

    # the evaluation sets (the paper's Table 2: KILT dev NQ, HotpotQA, ELI5, FEVER, WoW, T-REx,
    # zsRE; SciFact, Climate-FEVER, FiQA), each scored with its task's metric
    sets: list[EvalSet] = Field(default_factory=list)
    # closed: each set retrieves from its own corpus; pooled: from the union of all sets' corpora
    corpus: list[Literal["closed", "pooled"]] = Field(
        default_factory=lambda: ["closed"], min_length=1)
    # the instruction before "[SEP]" in evaluation queries: null = the set's task instruction
    # (the same text training saw), a string = that retrieval instruction for every set
    query_instruction: str | None = None
    beir: str | None = None
    split: str = "test"
    top_k: int = Field(default=100, ge=1)
    rag_top_k: int = Field(default=3, ge=1)
    # null: each task's own length (32 for short answers, 512 for ELI5/FiQA long-form)
    max_new_tokens: int | None = Field(default=None, ge=1)
    limit: int | None = Field(default=None, ge=1)
    rag_batch_size: int = Field(default=8, ge=1)
    rag_backend: Literal["hf", "vllm"] = "hf"  # greedy answers by transformers or vLLM
    rag_conditions: list[Literal["retrieved", "none", "gold"]] = Field(
        default_factory=lambda: ["retrieved", "none", "gold"], min_length=1)
    train_gold: bool = True

    @field_validator("sets")
    @classmethod
    def _unique_names(cls, v: list[EvalSet]) -> list[EvalSet]:
        names = [e.name for e in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"evaluation set name(s) {dup} used twice")
        return v


class RayConfig(_Section):
    """How to reach Ray: ``address`` (or RAY_ADDRESS) else a local cluster."""

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    object_store_memory: int | None = None

    _address = field_validator("address")(_url_setting)


class GpuSpec(_Section):
    """One device type for ``scarlet plan``; unset fields keep the built-in estimate."""

    peak_tflops: float | None = Field(default=None, gt=0)
    mfu: float | None = Field(default=None, gt=0, le=1)
    usd_per_hour: float | None = Field(default=None, ge=0)
    spot_usd_per_hour: float | None = Field(default=None, ge=0)
    measured_tokens_per_s: float | None = Field(default=None, gt=0)


class PlanConfig(_Section):
    """``scarlet plan``: per-sample size assumptions and device overrides (all estimates)."""

    prompt_tokens: int = Field(default=100, ge=0)
    tokens_per_passage: int = Field(default=140, ge=1)
    answer_tokens: int = Field(default=48, ge=1)
    passages: int | None = Field(default=None, ge=1)
    generator_params: float | None = Field(default=None, gt=0)
    gpus: dict[str, GpuSpec] = Field(default_factory=dict)
    # `scarlet plan --passages N`: the encoder and the index (all estimates)
    encoder_params: float | None = Field(default=None, gt=0)
    encoder_dim: int | None = Field(default=None, ge=1)
    encoder_mfu: float = Field(default=0.30, gt=0, le=1)
    store_bytes_per_passage: int = Field(default=750, ge=1)


class Config(_Section):
    """The whole job."""

    name: str = "quickstart"
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    stages: list[str] = Field(
        default_factory=lambda: ["context", "synthesize", "attribute", "label", "train", "evaluate"]
    )

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str]) -> list[str]:
        known = {"context", "synthesize", "attribute", "label", "train", "evaluate"}
        bad = [s for s in v if s not in known]
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; known: {sorted(known)}")
        return v

    def dump(self) -> dict[str, Any]:
        """Plain dict for manifests (no secrets live in the config by construction)."""
        return self.model_dump(mode="json")


def _format_error(err: ValidationError, source: str) -> str:
    """``source: dotted.key: reason`` per error; never the input value (it may be a secret)."""
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])  # our validators' own words, without "Value error, "
        parts.append(f"{source}: {key}: {msg}")
    return redact("; ".join(parts))


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], parsed YAML value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set dotted keys in a nested dict; unknown keys are caught later by validation."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {'.'.join(path)}: {part}: not a section")
            node = nxt
        node[path[-1]] = value
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: sections merge key by key, lists and values replace."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def _read_yaml(src: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A job file as a dict, with ``base: OTHER.yaml`` (relative to this file) merged under it,
    so an ablation job states only what it changes."""
    try:
        text = src.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{src}: cannot read config: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{src}: base: expected the path of another job file")
    parent = (src.parent / base).resolve()
    if parent in chain or parent == src.resolve():
        raise ConfigError(f"{src}: base: {base} includes itself (cycle through {parent})")
    return _deep_merge(_read_yaml(parent, (*chain, src.resolve())), data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a job config and apply overrides; no file means the built-in laptop defaults."""
    if path is None:
        data = apply_overrides({}, list(overrides or []))
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_error(exc, "--set")) from None
    src = Path(path)
    data = apply_overrides(_read_yaml(src), list(overrides or []))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, str(src))) from None
