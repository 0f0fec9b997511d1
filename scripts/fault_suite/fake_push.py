"""A fake FCM (Google's OAuth token endpoint and HTTP v1 `messages:send`)
that records every push with the time it arrived.

The suite only needs to know *when* a push for a given device arrived; the
full protocol checks (JWT signatures, message shape, error bodies) live in
tests/it/fake_push/. This one still refuses what would fail against the real
service in a way that matters here: a grant that is not a JWT-bearer
assertion, a send without the access token it issued, a message with no
token or non-string data.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KEY = Path(__file__).resolve().parents[2] / "tests/fixtures/push/TEST-ONLY-fcm-service-account-key.pem"
PROJECT = "duet-fault-suite"


class FakeFcm:
    def __init__(self, run_dir, port):
        self.port = port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.access_token = "fault-suite-" + uuid.uuid4().hex
        self.pushes = []  # {"at": monotonic, "token": device, "data": {...}}
        self.rejected = []
        self.changed = threading.Condition()
        self.credentials = run_dir / "fcm-service-account.json"
        self.credentials.write_text(json.dumps({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "fault-suite-key",
            "private_key": KEY.read_text(),
            "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
            "token_uri": f"{self.base_url}/token",
        }))
        self.server = None

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                if self.path == "/token":
                    if "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" not in body or "assertion=" not in body:
                        fake.reject(f"token: not a JWT-bearer grant: {body[:100]}")
                        return self.answer(400, {"error": "invalid_grant"})
                    return self.answer(200, {"access_token": fake.access_token, "expires_in": 3599, "token_type": "Bearer"})
                if self.path != f"/v1/projects/{PROJECT}/messages:send":
                    fake.reject(f"unknown path {self.path}")
                    return self.answer(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                if self.headers.get("authorization") != f"Bearer {fake.access_token}":
                    fake.reject(f"send with authorization {self.headers.get('authorization')!r}")
                    return self.answer(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
                try:
                    message = json.loads(body)["message"]
                    token, data = message["token"], message.get("data", {})
                    assert all(isinstance(v, str) for v in data.values())
                except (ValueError, KeyError, TypeError, AssertionError):
                    fake.reject(f"malformed message {body[:200]}")
                    return self.answer(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}})
                with fake.changed:
                    fake.pushes.append({"at": time.monotonic(), "token": token, "data": data})
                    fake.changed.notify_all()
                self.answer(200, {"name": f"projects/{PROJECT}/messages/{uuid.uuid4().hex}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reject(self, why):
        with self.changed:
            self.rejected.append(why)

    def wait_for(self, token, kind="message", timeout=30):
        """The first push of `kind` to device `token`, or None after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for push in self.pushes:
                    if push["token"] == token and push["data"].get("type") == kind:
                        return push
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
