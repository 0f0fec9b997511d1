"""The REST flow of a chat client, with the client openapi-python-client
generated from openapi/openapi.json (package `duet_client`).

    python flow.py <base-url> <dir holding the generated duet_client package>

Prints "PASS <step>" / "FAIL <step>: <why>" lines; exits 1 on any failure.
Every response is parsed by the generated models (`Message.from_dict` and
friends) through the generated endpoint functions, with
`raise_on_unexpected_status=True`, so a status or a body the document does
not describe fails the step.
"""

import importlib
import json
import pkgutil
import sys
import time
import traceback
import uuid

if len(sys.argv) != 3:
    print("usage: flow.py <base-url> <generated-client-dir>", file=sys.stderr)
    sys.exit(2)
BASE_URL, CLIENT_DIR = sys.argv[1], sys.argv[2]
sys.path.insert(0, CLIENT_DIR)

failures = 0


def ok(step):
    print(f"PASS py.{step}", flush=True)


def fail(step, why):
    global failures
    failures += 1
    print(f"FAIL py.{step}: {why}", flush=True)


class Abort(Exception):
    pass


def abort(step, why):
    fail(step, why)
    raise Abort(why)


def show(resp):
    return f"status {int(resp.status_code)}, body {resp.content[:300]!r}"


def find_operation(name):
    """The generated module of an operation, under whichever tag it sits."""
    import duet_client.api as api

    for tag in pkgutil.iter_modules(api.__path__):
        if not tag.ispkg:
            continue
        full = f"duet_client.api.{tag.name}.{name}"
        if importlib.util.find_spec(full) is not None:
            return importlib.import_module(full)
    return None


def main():
    from duet_client import AuthenticatedClient, Client
    from duet_client.models import (
        ConversationPage,
        CreateConversationRequest,
        Message,
        MessagePage,
        RegisterRequest,
    )

    ops = {}
    for name in ["register", "create_conversation", "send_message", "list_messages", "list_conversations"]:
        module = find_operation(name)
        if module is None:
            fail(f"module-{name}", f"the generated client has no `{name}` operation module")
        else:
            ok(f"module-{name}")
            ops[name] = module
    try:
        from duet_client.models import SendMessageRequest
    except ImportError:
        SendMessageRequest = None
        fail("model-SendMessageRequest", "the generated client has no SendMessageRequest model")
    else:
        ok("model-SendMessageRequest")
    if len(ops) < 5 or SendMessageRequest is None:
        raise Abort("the generated client lacks what the flow needs")

    anon = Client(base_url=BASE_URL, raise_on_unexpected_status=True)

    def register(label):
        tag = uuid.uuid4()
        r = ops["register"].sync_detailed(
            client=anon,
            body=RegisterRequest(
                email=f"contract-py-{label}-{tag}@example.com", password=f"pw-{tag}", name=f"Contract Py {label}"
            ),
        )
        if r.status_code != 201 or r.parsed is None or not getattr(r.parsed, "token", None):
            abort(f"register-{label}", show(r))
        ok(f"register-{label}")
        return r.parsed

    alice = register("sender")
    bob = register("receiver")
    as_alice = AuthenticatedClient(base_url=BASE_URL, token=alice.token, raise_on_unexpected_status=True)
    as_bob = AuthenticatedClient(base_url=BASE_URL, token=bob.token, raise_on_unexpected_status=True)

    r = ops["create_conversation"].sync_detailed(client=as_alice, body=CreateConversationRequest(peer_id=bob.user.id))
    if r.status_code != 201 or r.parsed is None or getattr(r.parsed, "peer", None) is None:
        abort("create_conversation", show(r))
    conversation = r.parsed
    if conversation.peer.id != bob.user.id:
        abort("create_conversation", f"peer {conversation.peer.id}, want {bob.user.id}")
    ok("create_conversation")

    client_msg_id = f"c-{uuid.uuid4()}"
    text = f"hello from the contract check {client_msg_id}"
    body = SendMessageRequest(client_msg_id=client_msg_id, text=text)
    r = ops["send_message"].sync_detailed(id=conversation.id, client=as_alice, body=body)
    if r.status_code != 201 or not isinstance(r.parsed, Message):
        abort("send_message", show(r))
    message = r.parsed
    # The model parses the raw body too (not only through the endpoint).
    again = Message.from_dict(json.loads(r.content))
    if again.id != message.id:
        abort("send_message", "Message.from_dict of the body differs from the parsed response")
    if (
        message.conversation_id != conversation.id
        or message.client_msg_id != client_msg_id
        or message.text != text
        or message.sender_id != alice.user.id
        or message.receiver_id != bob.user.id
        or message.seq < 1
    ):
        abort("send_message", f"unexpected message {message.to_dict()}")
    ok("send_message")

    r = ops["send_message"].sync_detailed(id=conversation.id, client=as_alice, body=body)
    if r.status_code != 200 or not isinstance(r.parsed, Message):
        fail("send_message-resend", f"want 200: {show(r)}")
    elif r.parsed.id != message.id or r.parsed.seq != message.seq:
        fail("send_message-resend", f"got id {r.parsed.id} seq {r.parsed.seq}, want id {message.id} seq {message.seq}")
    else:
        ok("send_message-resend")

    for who, c in [("sender", as_alice), ("receiver", as_bob)]:
        r = ops["list_messages"].sync_detailed(id=conversation.id, client=c, min_seq=message.seq)
        if r.status_code != 200 or not isinstance(r.parsed, MessagePage):
            fail(f"list_messages-{who}", show(r))
            continue
        copies = [m for m in r.parsed.items if m.id == message.id]
        if len(copies) != 1:
            fail(f"list_messages-{who}", f"the message is there {len(copies)} times")
        elif copies[0].text != text or copies[0].seq != message.seq:
            fail(f"list_messages-{who}", f"differs: {copies[0].to_dict()}")
        else:
            ok(f"list_messages-{who}")

    # The receiver's list is a projection that may trail: poll for ~5 s.
    deadline = time.monotonic() + 5
    while True:
        r = ops["list_conversations"].sync_detailed(client=as_bob, limit=100)
        if r.status_code != 200 or not isinstance(r.parsed, ConversationPage):
            last = show(r)
        else:
            item = next((s for s in r.parsed.items if s.id == conversation.id), None)
            last = f"unread_count {item.unread_count}, last_seq {item.last_seq}" if item else "not listed"
            if item and item.unread_count == 1 and item.last_seq == message.seq and item.peer.id == alice.user.id:
                ok("list_conversations-unread")
                break
        if time.monotonic() > deadline:
            fail("list_conversations-unread", f"after 5 s: {last}")
            break
        time.sleep(0.1)


try:
    main()
except Abort:
    pass
except Exception:
    fail("flow", "crashed:\n" + traceback.format_exc())
sys.exit(1 if failures else 0)
