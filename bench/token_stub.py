"""A fast local token source: an OpenAI-compatible /v1 server on 127.0.0.1 that streams made-up tokens
at a fixed rate, standing in for a GPU-speed engine where the thing under test is the page.

The app reaches it through its remote backend (PLAYGROUND_REMOTE_URL), like any vLLM server. A lane
whose system prompt asks for <think> tags (the reasoning lane) gets `<think>` + reasoning tokens +
`</think>` + a short answer; the other lane gets answer tokens only. Every token is one SSE chunk of
TOKEN_TEXT, and the last chunk carries a usage report, so the app counts tokens exactly.

    with TokenStub(tokens_per_s=150) as stub:
        stub.url  # http://127.0.0.1:PORT/v1, serving the model "stub"
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "stub"
TOKEN_TEXT = "word "  # what every token reads as: 5 characters
ANSWER_TOKENS = 16  # after the reasoning, in the reasoning lane


class TokenStub:
    """The server, in a thread of this process; `tokens_per_s` per lane (per request)."""

    def __init__(self, tokens_per_s: float = 150.0):
        self.tokens_per_s = tokens_per_s
        self.sent: dict[str, int] = {}  # characters of text streamed, by lane ("standard" / "reasoning")
        # (wall-clock time, tokens sent so far) after every token, by lane: what the page is measured against
        self.timeline: dict[str, list[tuple[float, int]]] = {}
        # How many of a lane's first timeline entries its reasoning trace shows: the <think> opener and the
        # reasoning tokens, not the closing tag nor the answer after it (the page shows those elsewhere).
        self.trace_entries: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> TokenStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(stub: TokenStub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            system = " ".join(m["content"] for m in body.get("messages", []) if m.get("role") == "system")
            lane = "reasoning" if "<think>" in system else "standard"
            n = int(body.get("max_tokens") or 64)
            texts = [TOKEN_TEXT] * n
            stub.trace_entries[lane] = 0
            if lane == "reasoning":
                answer = min(ANSWER_TOKENS, max(1, n // 10))
                texts = ["<think>\n"] + [TOKEN_TEXT] * (n - answer - 2) + ["</think>\n"] + [TOKEN_TEXT] * answer
                stub.trace_entries[lane] = n - answer - 1
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            interval, t0 = 1.0 / stub.tokens_per_s, time.perf_counter()
            line = stub.timeline[lane] = []
            try:
                for i, text in enumerate(texts):
                    delay = t0 + i * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    self._chunk({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
                    stub.sent[lane] = stub.sent.get(lane, 0) + len(text)
                    line.append((time.time(), i + 1))
                self._chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                             "usage": {"prompt_tokens": 12, "completion_tokens": len(texts)}})
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):  # the app stopped the run
                return

        def _chunk(self, obj: dict) -> None:
            self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
            self.wfile.flush()

    return Handler
