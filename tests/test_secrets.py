"""Secrets never reach outputs or logs (issue 14 item 4).

The stage tests run the real CLI with the real ``openai`` client against a real local server
that refuses with a 401 echoing the key and the request path, and the real context stage against
a SPARQL endpoint that refuses (401 echoing the URL) or cannot be reached; then every file under
the output folder, the captured stderr and the log records are searched for each secret.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synthesis_fake_server import FakeChatServer

from scarlet_ray import cli
from scarlet_ray import redact as redact_module
from scarlet_ray.config import ConfigError, load_config
from scarlet_ray.manifest import read_manifest, write_manifest
from scarlet_ray.records import Passage, Sample, append_errors, write_jsonl
from scarlet_ray.redact import (
    MASK,
    install_log_redaction,
    redact,
    redact_obj,
    register_secret,
    register_secret_env,
)
from scarlet_ray.synthesis.llm import LLMError, OpenAIChat

# a variable name that no name-based rule covers: only the config's api_key_env registers it
KEY_ENV = "SCARLET_LLM_CRED_FOR_TEST"


def leaks(folder: Path, secrets: list[str]) -> list[tuple[str, str]]:
    """(file, secret) for every file under ``folder`` whose bytes hold a secret."""
    found = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            found += [(str(p.relative_to(folder)), s) for s in secrets if s.encode() in data]
    return found


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh key (not shaped like an OpenAI key, so only its value can find it)."""
    value = "k3y" + uuid.uuid4().hex
    monkeypatch.setenv(KEY_ENV, value)
    return value


@pytest.fixture
def chat_server() -> Iterator[FakeChatServer]:
    with FakeChatServer() as srv:
        srv.state.echo_401 = True
        yield srv


def _contexts(path: Path) -> None:
    write_jsonl(path, [Sample(id=f"c{i}", task="nq", input=f"Who founded company {i}?",
                              output=f"Founder {i}",
                              passages=[Passage(id="p0", title=f"Company {i}",
                                                text=f"Company {i} was founded by Founder {i}."),
                                        Passage(id="p1", title="Other",
                                                text="An unrelated passage about rivers.")])
                       for i in range(2)])


# ------------------------------------------------------------------ stage 2: synthesis

@pytest.mark.parametrize("userinfo", [True, False], ids=["userinfo+query", "query"])
def test_synthesis_401_echoing_key_and_url_credentials_leave_no_trace(
        userinfo: bool, tmp_path: Path, chat_server: FakeChatServer, key: str,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """With user:pw@ the HTTP client sends Basic auth built from it (and the server echoes that);
    without, it sends the key (and the server echoes the key)."""
    ctx, out = tmp_path / "contexts.jsonl", tmp_path / "out"
    _contexts(ctx)
    host = chat_server.base_url.split("://", 1)[1].removesuffix("/v1")
    base_url = f"http://{'user:sekret@' if userinfo else ''}{host}/v1?api-key=sekret2"
    caplog.set_level(logging.DEBUG)
    rc = cli.main(["synthesize", "--contexts", str(ctx), "--output", str(out),
                   "--set", "synthesis.backend=openai", "--set", f"synthesis.base_url={base_url}",
                   "--set", f"synthesis.api_key_env={KEY_ENV}",
                   "--set", "synthesis.tasks=[nq]", "--set", "synthesis.max_retries=0"])
    captured = capfd.readouterr()
    assert rc == 1  # every pair failed: over max_error_rate
    # the server was really sent the credentials and really echoed them (and the URL's query)
    basic = base64.b64encode(b"user:sekret").decode()
    assert chat_server.state.attempts == 2
    assert chat_server.state.auth[0] == (f"Basic {basic}" if userinfo else f"Bearer {key}")
    assert any("sekret2" in p for p in chat_server.state.paths)
    secrets = [key, "sekret", basic]
    assert leaks(out, secrets) == []
    for s in secrets:
        assert s not in captured.out and s not in captured.err
        assert s not in caplog.text
        assert all(s not in r.getMessage() for r in caplog.records)
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 2 and all(e["reason"] == "llm:http_401" for e in errors)
    echoed = f"Basic {MASK}" if userinfo else MASK
    assert f"Incorrect API key provided: {echoed}" in errors[0]["detail"]
    assert f"Request: POST /v1/?api-key={MASK}" in errors[0]["detail"]
    m = read_manifest(out)
    assert m is not None
    assert m["config"]["synthesis"]["base_url"] == \
        f"http://{MASK + '@' if userinfo else ''}{host}/v1?api-key={MASK}"
    assert m["config"]["synthesis"]["api_key_env"] == KEY_ENV  # a name, kept
    # the HTTP library logs each request URL at INFO: it was logged, redacted
    assert f"POST http://{MASK + '@' if userinfo else ''}{host}/v1/?api-key={MASK}" in caplog.text


def test_openai_error_detail_is_redacted_before_it_is_cut(chat_server: FakeChatServer,
                                                          key: str) -> None:
    """The detail keeps 200 characters: a cut through the echoed key would leave a piece that
    no longer matches the key, so redaction must come first. The key is moved across the cut."""
    llm = OpenAIChat("m", base_url=chat_server.base_url, api_key_env=KEY_ENV, max_retries=0)
    masked = 0
    for pad in range(60, 150, 3):
        chat_server.state.echo_pad = "x" * pad
        with pytest.raises(LLMError) as info:
            llm.chat([{"role": "user", "content": "hi"}], temperature=0, max_tokens=4)
        msg = str(info.value)
        assert msg.startswith("http_401") and key[:6] not in msg, (pad, msg)
        masked += f"provided: {MASK}" in msg
    assert chat_server.state.auth[-1] == f"Bearer {key}"
    assert masked >= 5  # the cut fell after the key for the smaller pads


# ------------------------------------------------------------------ stage 1: context

class _Refusing401:
    """A SPARQL endpoint that refuses every query with a 401 quoting the request URL back."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                owner.paths.append(self.path)
                body = json.dumps({"error": f"bad credentials for {self.path}"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sparql_401() -> Iterator[_Refusing401]:
    srv = _Refusing401()
    yield srv
    srv.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["401-echo", "userinfo-unreachable"])
def test_context_endpoint_credentials_leave_no_trace(
        kind: str, tmp_path: Path, sparql_401: _Refusing401,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The endpoint URL is in the config, the knowledge stats and every expansion error; the
    401 body (which quotes the URL) reaches the exception chain; retries are logged with it."""
    token = "tok" + uuid.uuid4().hex[:12]
    if kind == "401-echo":
        endpoint = f"http://{sparql_401.host}/sparql?api_key={token}&format=json"
        secrets = [token]
    else:  # urllib cannot use user:pw@, the lookup fails, is retried and logged
        endpoint = f"http://alice:{token}@{sparql_401.host}/sparql?access_token={token}x"
        secrets = [token, "alice:"]
    seeds, corpus, out = tmp_path / "seeds.jsonl", tmp_path / "corpus.jsonl", tmp_path / "ctx"
    write_jsonl(seeds, [Sample(id="s1", task="nq", input="Where was Douglas Adams born?",
                               output="Cambridge, England")])
    write_jsonl(corpus, [{"id": f"d{i}", "title": t, "text": f"{t} is a topic of passage {i}."}
                         for i, t in enumerate(["Douglas Adams", "Cambridge", "England",
                                                "Rivers", "Mountains"])])
    caplog.set_level(logging.INFO)
    rc = cli.main(["context", "--seeds", str(seeds), "--corpus", str(corpus),
                   "--output", str(out), "--set", "context.knowledge=sparql",
                   "--set", f"context.endpoint={endpoint}", "--set", "context.retries=1",
                   "--set", "context.backoff_s=0", "--set", "context.timeout_s=5",
                   "--set", "context.context_size=2"])
    captured = capfd.readouterr()
    assert rc in (0, 1), captured.err
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    expand = [e for e in errors if e.get("field") == "expand"]
    assert expand and all("SPARQL endpoint http://" in e["reason"] for e in expand)
    if kind == "401-echo":
        assert sparql_401.paths and token in sparql_401.paths[0]  # the server saw the token
        assert "Unauthorized" in expand[0]["reason"]
    else:
        assert f"http://{MASK}@{sparql_401.host}" in expand[0]["reason"]
        assert "retry" in caplog.text  # the retry warning names the endpoint, redacted
    assert leaks(out, secrets) == []
    for s in secrets:
        assert s not in captured.out and s not in captured.err and s not in caplog.text
    m = read_manifest(out)
    assert m is not None and f"?{'api_key' if kind == '401-echo' else 'access_token'}={MASK}" \
        in m["config"]["context"]["endpoint"]


# ------------------------------------------------------------------ api_key_env

@pytest.mark.parametrize("value", ["sk-abc123DEF456ghi789JKL012mno345",
                                   "hf_AbCdEf0123456789xyzXYZ",
                                   "my key = 0123456789abcdef"])
def test_a_key_typed_as_api_key_env_is_refused_without_echo(
        value: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ctx, out = tmp_path / "contexts.jsonl", tmp_path / "out"
    _contexts(ctx)
    rc = cli.main(["synthesize", "--contexts", str(ctx), "--output", str(out),
                   "--set", "synthesis.backend=openai", "--set", f"synthesis.api_key_env={value}"])
    err = capfd.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "synthesis.api_key_env" in err
    for piece in (value, value[:8], value[-8:]):
        assert piece not in err
    assert not out.exists()
    # the same from a job file
    job = tmp_path / "job.yaml"
    job.write_text(f"synthesis:\n  api_key_env: {json.dumps(value)}\n")
    with pytest.raises(ConfigError) as info:
        load_config(job)
    assert "synthesis.api_key_env" in str(info.value) and value[:8] not in str(info.value)
    # names stay accepted
    cfg = load_config(None, ["synthesis.api_key_env=AZURE_OPENAI_API_KEY"])
    assert cfg.synthesis.api_key_env == "AZURE_OPENAI_API_KEY"
    assert load_config(None, ["synthesis.api_key_env=_my_key2"]).synthesis.api_key_env == \
        "_my_key2"


# ------------------------------------------------------------------ the writers and the logs

def test_manifest_and_errors_writers_redact_everything(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "v4lue" + uuid.uuid4().hex
    monkeypatch.setenv("SOME_SERVICE_API_KEY", secret)  # found by its name, never registered
    write_manifest(tmp_path, "x", config={"synthesis": {"base_url": "https://u:pw12@h/v1",
                                                        "api_key_env": "SOME_SERVICE_API_KEY"},
                                          "client_secret": "plain-words",
                                          "max_tokens": 5, "tokenizer": "gpt2"},
                   models={"m": {"url": f"https://h/x?sig={secret}"}},
                   extra={"notes": [f"echo {secret}", ("Bearer abcdefgh123",)],
                          "path": tmp_path / f"key={secret}"})
    append_errors(tmp_path / "errors.jsonl", [{"id": "a", "reason": f"HTTP 401: {secret}",
                                              "detail": {"access_token": "xyz"}}])
    assert leaks(tmp_path, [secret, "pw12", "plain-words", "abcdefgh123", "xyz"]) == []
    m = read_manifest(tmp_path)
    assert m is not None
    assert m["config"]["synthesis"] == {"base_url": f"https://{MASK}@h/v1",
                                        "api_key_env": "SOME_SERVICE_API_KEY"}
    assert m["config"]["max_tokens"] == 5 and m["config"]["tokenizer"] == "gpt2"


def test_log_records_are_redacted_messages_args_and_tracebacks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "lg" + uuid.uuid4().hex
    monkeypatch.setenv("LOGTEST_TOKEN", secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("scarlet_ray.test_secrets")
    log.addHandler(handler)
    log.propagate = False
    try:
        install_log_redaction([handler])
        install_log_redaction([handler])  # idempotent
        assert len(handler.filters) == 1
        log.warning("calling %s", "https://bob:hunter22@example.org/x?token=abc")
        try:
            raise RuntimeError(f"server said: bad key {secret}")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue()
    assert "hunter22" not in text and "abc" not in text.split("token=")[1][:3]
    assert secret not in text and "RuntimeError" in text and f"bad key {MASK}" in text


def test_redact_obj_keeps_names_and_numbers() -> None:
    obj = {"api_key": "x1", "openai_api_key_env": "OPENAI_API_KEY", "prompt_tokens": 7,
           "key": "sample-3", "password": "", "list": ["http://a:b@h", ("t",)],
           "nested": {"authToken": "abc"}}
    assert redact_obj(obj) == {"api_key": MASK, "openai_api_key_env": "OPENAI_API_KEY",
                               "prompt_tokens": 7, "key": "sample-3", "password": "",
                               "list": [f"http://{MASK}@h", ("t",)],
                               "nested": {"authToken": MASK}}
    # prose that merely resembles a credential stays as it is
    for text in ("Basic configuration of the Token embeddings", "the bearer instruments",
                 "see https://example.org/page?q=1&monkey=2 (zipcode=123).",
                 "prompt_tokens: 512, max_batch_tokens=16384"):
        assert redact(text) == text


# ------------------------------------------------------------------ properties of redact

_SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=8, max_size=24)
_PLAIN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,:;/()[]{}-_", max_size=40)
_HOST = st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,5}){0,2}(:[0-9]{2,5})?", fullmatch=True)
_SEG = st.from_regex(r"[a-z0-9_.]{1,12}", fullmatch=True)
_SAFE_PARAM = st.sampled_from(["q", "page", "lang", "format", "limit", "offset", "query", "id"])
_CRED_PARAM = st.sampled_from(["api-key", "api_key", "apikey", "API_KEY", "key", "token",
                               "access_token", "auth", "sig", "Signature", "password", "secret",
                               "code", "client_secret", "X-Amz-Signature"])


@st.composite
def _plain_url(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "ray", "grpc+tls"]))
    path = "/".join(draw(st.lists(_SEG, max_size=4)))
    params = draw(st.lists(st.tuples(_SAFE_PARAM, _SEG), max_size=3))
    query = ("?" + "&".join(f"{k}={v}" for k, v in params)) if params else ""
    return f"{scheme}://{draw(_HOST)}/{path}{query}"


# pieces that trigger (or nearly trigger) each rule, glued together with arbitrary text
_FRAGMENT = st.one_of(st.text(max_size=12), st.sampled_from([
    "://", "https://", "@", ":", "?", "&", "=", "#", " ", "/", "*", "***", "?key=", "&token=",
    ";sig=", "?api-key=", "Bearer ", "Basic ", "sk-", "sk-abcdefghijklmnopqrstuv",
    "https://u:p@h", "user:pw@", "%2F", "\\", '"']))


@settings(max_examples=500, deadline=None)
@given(st.lists(_FRAGMENT, max_size=12).map("".join))
def test_redact_is_idempotent_on_any_text(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@settings(max_examples=300, deadline=None)
@given(_PLAIN, _plain_url(), _SECRET, _SECRET, _CRED_PARAM, _PLAIN)
def test_url_secrets_never_survive_and_redaction_is_idempotent(
        before: str, url: str, password: str, value: str, param: str, after: str) -> None:
    scheme, rest = url.split("://", 1)
    sep = "&" if "?" in rest else "?"
    text = f"{before} {scheme}://user:{password}@{rest}{sep}{param}={value} {after}"
    once = redact(text)
    assert password not in once and value not in once
    assert redact(once) == once
    assert once.startswith(before) and once.endswith(after)


@settings(max_examples=300, deadline=None)
@given(_plain_url(), _PLAIN, _PLAIN)
def test_urls_without_secrets_are_unchanged(url: str, before: str, after: str) -> None:
    text = f"{before} {url} {after}"
    assert redact(text) == text


@settings(max_examples=300, deadline=None)
@given(_SECRET, st.text(max_size=60), st.text(max_size=60), st.integers(1, 3))
def test_a_registered_secret_never_survives_nor_grows(secret: str, before: str, after: str,
                                                      times: int) -> None:
    register_secret(secret)
    try:
        text = before + (secret + after) * times
        out = redact(text)
        assert secret not in out
        assert redact(out) == out
        for piece in (secret[:8], secret[-8:]):  # no more pieces of it than the input held
            assert out.count(piece) <= text.count(piece)
    finally:
        redact_module._literals.discard(secret)  # keep the registry small for other tests


def test_registered_env_value_is_read_at_redaction_time(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret_env("SCARLET_LATE_VAR")
    assert redact("value later-set-123") == "value later-set-123"
    monkeypatch.setenv("SCARLET_LATE_VAR", "later-set-123")
    assert redact("value later-set-123") == f"value {MASK}"
    monkeypatch.setenv("SCARLET_LATE_VAR", "short")  # below the minimum: not masked
    assert redact("value short") == "value short"


def test_index_path_credentials_leave_no_trace_in_dry_run_or_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key inside the index URL: the dry run's problem list and tables, and the one-line
    error of a command given it as --index, never print it."""
    from scarlet_ray.cli import main

    secret = "Zq8pW3xR7vLm2Nc5Tt9Ke4Yh"
    url = f"https://user:{secret}@indexes.example/kilt"
    assert main(["run", "--dry-run", "--set", f"index.path={url}", "--output",
                 str(tmp_path / "run")]) == 2
    out = capsys.readouterr()
    assert "index.path:" in out.out and secret not in out.out + out.err
    assert main(["evaluate", "retrieval", "--model", "all-minilm-l6-v2", "--beir",
                 str(tmp_path), "--index", url.replace(secret, secret[::-1]),
                 "--output", str(tmp_path / "o")]) == 2
    out = capsys.readouterr()
    assert secret[::-1] not in out.out + out.err and "not an index folder" in out.err
