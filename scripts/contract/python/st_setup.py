"""Test data for schemathesis: two fresh users with a conversation holding one
message, so the fuzzer reaches real conversations and users instead of 404s.

    python st_setup.py <base-url> <schemathesis.toml to write>

Prints the first user's bearer token (schemathesis sends every request as
that user). The config binds path `id`s, `peerId` and the look-up `email` to
these values with a probability below 1, so random values are still tried.
Plain urllib: this must not depend on the documents under test.
"""

import json
import sys
import urllib.request
import uuid

base, out = sys.argv[1], sys.argv[2]


def call(method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.load(r)


def register(label):
    tag = uuid.uuid4()
    email = f"contract-st-{label}-{tag}@example.com"
    r = call("POST", "/auth/register", {"email": email, "password": f"pw-{tag}", "name": f"Contract st {label}"})
    return r["token"], r["user"]["id"], email


token, me, _ = register("caller")
_, peer, peer_email = register("peer")
conversation = call("POST", "/conversations", {"peerId": peer}, token)["id"]
call("POST", f"/conversations/{conversation}/messages", {"clientMsgId": f"c-{uuid.uuid4()}", "text": "seed"}, token)


def q(s):
    return json.dumps(s)


# Rules a JSON Schema cannot state, each answered with a documented 400 (see
# the operation's description in openapi/openapi.json): for these operations
# alone schemathesis' positive_data_acceptance also accepts 400. Every other
# schema-valid request must be accepted (2xx, or 401/403/404/409/429).
SEMANTIC_400 = {
    "listConversations": "invalid_cursor: a cursor is opaque, only one this API returned is valid",
    "listMessages": "invalid_cursor, invalid_range: afterSeq must be below beforeSeq",
    "register": "invalid_email: an address is checked beyond its syntax (NFKC, a dotted domain)",
    "createConversation": "cannot_message_self: peerId is the caller",
    "sendMessage": "text_required: text is checked after trimming; payload rules by type",
    "markDelivered": "seq_out_of_range: seq beyond the conversation's last message",
    "markRead": "seq_out_of_range: seq beyond the conversation's last message",
    "blockUser": "cannot_block_self: the id is the caller's",
    "report": "invalid_report_target: exactly one of userId and messageId; not oneself or one's own message",
    "editMessage": "text_empty: text is checked after trimming",
    "setReaction": "invalid_emoji: exactly one emoji, which a pattern cannot state",
    "createAttachment": "invalid_content_type, attachment_too_large, invalid_file_name: the allowed types and the size limit depend on the kind; names of programs and pages are refused",
}
semantic = "".join(
    f"""
# {reason}
[[operations]]
include-operation-id = {q(op)}
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "400", "401", "403", "404", "409", "429", "5XX"]
"""
    for op, reason in SEMANTIC_400.items()
)


with open(out, "w", encoding="utf-8") as f:
    f.write(
        f"""# written by scripts/contract/python/st_setup.py for one run
[dictionaries.conversations]
values = [{q(conversation)}]

[dictionaries.users]
values = [{q(me)}, {q(peer)}]

[dictionaries.peers]
values = [{q(peer)}]

[dictionaries.emails]
values = [{q(peer_email)}]

[[operations]]
include-path-regex = "^/conversations/"
parameters = {{ "path.id" = {{ dictionary = "conversations", probability = 0.7 }} }}

[[operations]]
include-path = "/users/{{id}}"
parameters = {{ "path.id" = {{ dictionary = "users", probability = 0.7 }} }}

[[operations]]
include-operation-id = "createConversation"
parameters = {{ "body.peerId" = {{ dictionary = "peers", probability = 0.7 }} }}

[[operations]]
include-path = "/users/lookup"
parameters = {{ "query.email" = {{ dictionary = "emails", probability = 0.7 }} }}

# These end the session of the one token every request carries: the rest of
# the run would be answered 401. tests/it/sessions.rs covers them instead.
[[operations]]
include-operation-id = ["logout", "logoutAll", "changePassword"]
enabled = false
"""
        + semantic
    )
print(token)
