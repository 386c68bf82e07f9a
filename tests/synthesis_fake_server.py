"""A real HTTP server on 127.0.0.1 speaking the chat-completions wire format, for stage 2 tests.

It writes answers from what the prompt says (first passage title as the answer, SUPPORTS for
label tasks, [YES] for checks) and misbehaves on markers placed in passage text: ``[[hang]]``,
``[[malformed]]``, ``[[checkno]]``, ``[[badlabel]]``, ``[[notincontext]]``. It counts attempts and
records the Authorization headers and the JSON bodies it was sent (``bodies``: what the client
really put on the wire, ``response_format`` included); with ``echo_401`` it refuses every request with a
401 whose body quotes the key and the request path back (as careless servers do).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ServerState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts = 0  # every POST, failed or not
        self.ok = 0  # 200 answers
        self.fail_next: list[int] = []  # statuses to return for the next requests, in order
        self.hang_s = 0.0  # how long [[hang]] requests sleep; 0 = no hanging
        self.gate_after: int | None = None  # after this many 200s, every request hangs
        self.auth: list[str] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.models: set[str] = set()
        self.delay_s = 0.0  # every 200 answer waits this long (to observe parallelism)
        self.inflight = 0
        self.max_inflight = 0
        self.echo_401 = False  # answer 401 quoting the Authorization header and the path
        self.echo_pad = ""  # text before the quoted key (moves it across a reader's cut)
        self.paths: list[str] = []
        self.bodies: list[dict] = []  # every chat-completions request body, in arrival order

    def reset_counts(self) -> None:
        with self.lock:
            self.attempts = self.ok = 0
            self.prompt_tokens = self.completion_tokens = 0
            self.auth.clear()
            self.bodies.clear()


def _first_title(user: str) -> str:
    block = user.split("Passages:", 1)[1] if "Passages:" in user else user
    m = re.search(r"^Title: (.+)$", block, re.MULTILINE)
    return m.group(1).strip() if m else "Unknown"


def answer(user: str) -> str:
    """The assistant content for one request."""
    if "Reply with exactly [YES] or [NO]" in user:
        return "[NO]" if "[[checkno]]" in user else "[YES]"
    if '{"title": "...", "text": "..."}' in user:
        return json.dumps({"title": "Unrelated trivia",
                           "text": "A passage on the same topic that gives no answer."})
    if "[[malformed]]" in user:
        return "Sure! Here is an example:\ninput = who?\noutput = someone"
    title = _first_title(user)
    labels = "SUPPORTS, REFUTES" in user
    if labels:
        out = "MAYBE" if "[[badlabel]]" in user else "SUPPORTS"
        return json.dumps({"input": f"{title} is described in the passages.", "output": out})
    out = "Zanzibar Quux" if "[[notincontext]]" in user else title
    task = re.search(r"^Task: (\S+)", user, re.MULTILINE)
    kind = task.group(1) if task else "?"
    return json.dumps({"input": f"({kind}) Which subject does the passage about {title} cover?",
                       "output": out})


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            n = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(n) or b"{}")
            auth = self.headers.get("Authorization", "")
            with state.lock:
                state.paths.append(self.path)
            if state.echo_401:
                with state.lock:
                    state.attempts += 1
                    state.auth.append(auth)
                key = auth.removeprefix("Bearer ")
                self._send(401, {"error": {
                    "message": f"{state.echo_pad}Incorrect API key provided: {key}. "
                               f"Request: POST {self.path}",
                    "type": "invalid_request_error", "code": "invalid_api_key"}})
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            with state.lock:
                state.attempts += 1
                state.auth.append(self.headers.get("Authorization", ""))
                state.bodies.append(body)
                fail = state.fail_next.pop(0) if state.fail_next else None
                gated = state.gate_after is not None and state.ok >= state.gate_after
            if fail is not None:
                hdr = {"Retry-After": "0.01"} if fail == 429 else {}
                self._send(fail, {"error": {"message": f"injected {fail}", "type": "test",
                                            "code": None}}, hdr)
                return
            user = body["messages"][-1]["content"]
            with state.lock:
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
            try:
                time.sleep(state.delay_s)
            finally:
                with state.lock:
                    state.inflight -= 1
            if gated or ("[[hang]]" in user and state.hang_s > 0):
                time.sleep(state.hang_s if not gated else 30)
                if gated:
                    return
            content = answer(user)
            pt, ct = len(user.split()), len(content.split())
            with state.lock:
                state.ok += 1
                state.prompt_tokens += pt
                state.completion_tokens += ct
                state.models.add(body.get("model"))
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "fake"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": pt, "completion_tokens": ct,
                          "total_tokens": pt + ct}})

    return Handler


class FakeChatServer:
    """Start on a free port in a daemon thread; ``base_url`` ends in /v1."""

    def __init__(self) -> None:
        self.state = ServerState()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
