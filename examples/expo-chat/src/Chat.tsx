// One conversation: history (the newest page synced by the SDK, earlier pages
// from REST as you scroll up), live messages, the peer's typing and presence,
// ticks, the composer; a message's actions (react, reply, edit, unsend,
// delete for me) and attaching an image.
import { useEffect, useRef, useState } from "react";
import { Pressable, ScrollView, Text, TextInput, View, type NativeScrollEvent, type NativeSyntheticEvent } from "react-native";
import type { ChatMessage } from "@duet/client";
import { pickImage } from "./attach";
import { MessageBubble, summary, type Tick } from "./MessageBubble";
import { MessageMenu, type MessageAction } from "./MessageMenu";
import { OfflineBanner } from "./OfflineBanner";
import { errorText, shortTime, useChat, usePeers, type HistoryMessage, type Session } from "./session";
import { colors, ui } from "./ui";

export function Chat({ session, conversationId, onBack }: { session: Session; conversationId: string; onBack: () => void }) {
  const chat = useChat(session);
  const peers = usePeers(session);
  const c = chat.conversations[conversationId];
  const [draft, setDraft] = useState("");
  const [older, setOlder] = useState<readonly HistoryMessage[]>([]);
  const [olderDone, setOlderDone] = useState(false);
  const [loading, setLoading] = useState(false);
  const [historyError, setHistoryError] = useState<string>();
  const [selected, setSelected] = useState<string>();
  const [replyTo, setReplyTo] = useState<ChatMessage>();
  const [editing, setEditing] = useState<ChatMessage>();
  const [actionError, setActionError] = useState<string>();
  const scroll = useRef<ScrollView>(null);
  const atBottom = useRef(true);
  const keepFromBottom = useRef<number | undefined>(undefined);
  const contentHeight = useRef(0);
  const { duet } = session;

  const peer = c?.peerId ? (session.peer(c.peerId) ?? peers[c.peerId]) : undefined;
  useEffect(() => {
    if (c?.peerId) void session.refreshPeer(c.peerId);
  }, [c?.peerId, session]);

  // Everything on screen is read while the screen is open and connected.
  useEffect(() => {
    if (chat.connection === "connected" && c && c.lastSeq > c.myReadSeq) duet.markRead(conversationId);
  }, [chat.connection, c?.lastSeq, c?.myReadSeq, conversationId, duet]);

  if (!c) return null;
  // The SDK's view starts after its baseline; what came before is paged in here.
  const firstHeld = c.messages[0]?.seq ?? c.lastSeq + 1;
  const earlierPages = older.filter((m) => m.seq < firstHeld);
  const firstShown = earlierPages[0]?.seq ?? firstHeld;
  const hasEarlier = !olderDone && firstShown > 1;
  // REST pages carry the same fields as synced messages (their payload typed looser).
  const messages: readonly ChatMessage[] = [...(earlierPages as unknown as ChatMessage[]), ...c.messages];
  const chosen = selected ? messages.find((m) => m.id === selected && !m.deletedAt) : undefined;

  const loadEarlier = async () => {
    if (loading || !hasEarlier) return;
    setLoading(true);
    setHistoryError(undefined);
    try {
      const page = await session.earlier(conversationId, firstShown);
      keepFromBottom.current = contentHeight.current;
      setOlder((prev) => [...page.items.filter((m) => m.seq < firstShown), ...prev]);
      if (!page.hasMore) setOlderDone(true);
    } catch (err) {
      setHistoryError(errorText(err));
    } finally {
      setLoading(false);
    }
  };
  const onScroll = (e: NativeSyntheticEvent<NativeScrollEvent>) => {
    const { contentOffset, layoutMeasurement, contentSize } = e.nativeEvent;
    atBottom.current = contentOffset.y + layoutMeasurement.height >= contentSize.height - 40;
    if (contentOffset.y < 40) void loadEarlier();
  };
  const onContentSizeChange = (_w: number, h: number) => {
    const before = keepFromBottom.current;
    contentHeight.current = h;
    if (before !== undefined) {
      // An earlier page went in above: keep the same messages in view.
      keepFromBottom.current = undefined;
      scroll.current?.scrollTo({ y: h - before, animated: false });
    } else if (atBottom.current) {
      scroll.current?.scrollToEnd({ animated: false });
    }
  };
  const send = () => {
    const text = draft.trim();
    if (!text) return;
    if (editing) {
      const id = editing.id;
      setEditing(undefined);
      duet.edit(conversationId, id, text).catch((err: unknown) => setActionError(errorText(err)));
    } else {
      duet.send(conversationId, replyTo ? { text, replyTo: replyTo.id } : text);
      setReplyTo(undefined);
      atBottom.current = true;
    }
    setDraft("");
  };
  const attach = async () => {
    setActionError(undefined);
    try {
      const image = await pickImage();
      if (image) await duet.sendAttachment(conversationId, { kind: "image", ...image, ...(replyTo ? { replyTo: replyTo.id } : {}) });
      setReplyTo(undefined);
      atBottom.current = true;
    } catch (err) {
      setActionError(errorText(err));
    }
  };
  const act = (m: ChatMessage, a: MessageAction) => {
    setSelected(undefined);
    setActionError(undefined);
    const failed = (err: unknown) => setActionError(errorText(err));
    switch (a.kind) {
      case "react":
        duet.react(conversationId, m.id, a.emoji).catch(failed);
        return;
      case "reply":
        setEditing(undefined);
        setReplyTo(m);
        return;
      case "edit":
        setReplyTo(undefined);
        setEditing(m);
        setDraft(m.text ?? "");
        return;
      case "unsend":
        duet.unsend(conversationId, m.id).catch(failed);
        return;
      case "hide":
        duet.hide(conversationId, m.id).catch(failed);
        return;
      case "close":
        return;
    }
  };

  const presence = c.peerPresence;
  const status = c.peerTyping
    ? "typing…"
    : presence?.status === "online"
      ? "online"
      : presence?.lastSeenAt || peer?.lastSeenAt
        ? `last seen ${shortTime(presence?.lastSeenAt ?? peer?.lastSeenAt)}`
        : "";

  return (
    <View style={ui.screen}>
      <View style={ui.header}>
        <Pressable onPress={onBack} testID="back"><Text style={ui.link}>‹ Chats</Text></Pressable>
        <View style={{ flex: 1 }}>
          <Text style={{ fontSize: 17, fontWeight: "600" }} testID="peer-name">{peer?.name ?? "…"}</Text>
          <Text style={[ui.muted, c.peerTyping && { color: colors.accent }]} testID="peer-status">{status}</Text>
        </View>
      </View>
      <OfflineBanner session={session} />
      <ScrollView
        ref={scroll}
        testID="messages"
        style={{ flex: 1, backgroundColor: colors.bg }}
        contentContainerStyle={{ padding: 12 }}
        onScroll={onScroll}
        scrollEventThrottle={100}
        onContentSizeChange={onContentSizeChange}
      >
        {hasEarlier && (
          <Pressable testID="load-earlier" onPress={loadEarlier} style={{ alignSelf: "center", padding: 6 }}>
            <Text style={ui.link}>{loading ? "Loading…" : "Earlier messages"}</Text>
          </Pressable>
        )}
        {historyError && <Text style={[ui.error, { textAlign: "center" }]}>{historyError}</Text>}
        {messages.map((m) => {
          const mine = m.senderId === chat.userId;
          const tick: Tick | undefined = !mine ? undefined : m.seq <= c.peerReadSeq ? "read" : m.seq <= c.peerDeliveredSeq ? "delivered" : "sent";
          return <MessageBubble key={m.id} session={session} message={m} mine={mine} onActions={() => setSelected(m.id)} {...(tick ? { tick } : {})} />;
        })}
        {c.outbox.map((e) => (
          <MessageBubble
            key={e.clientMsgId}
            session={session}
            mine
            tick={e.status}
            message={{ id: e.clientMsgId, conversationId, type: e.type, createdAt: e.composedAt, ...(e.text !== undefined ? { text: e.text } : {}) }}
          />
        ))}
      </ScrollView>
      {chosen && <MessageMenu message={chosen} me={chat.userId} onAction={(a) => act(chosen, a)} />}
      {actionError && <Text style={[ui.error, { paddingHorizontal: 12 }]} testID="action-error">{actionError}</Text>}
      {(replyTo || editing) && (
        <View style={[ui.row, { paddingHorizontal: 12, paddingTop: 6 }]} testID={editing ? "editing-banner" : "reply-banner"}>
          <Text style={[ui.muted, { flex: 1 }]} numberOfLines={1}>
            {editing ? "Editing: " : "Replying to: "}
            {summary((editing ?? replyTo)!)}
          </Text>
          <Pressable testID="compose-cancel" onPress={() => (setReplyTo(undefined), editing && setDraft(""), setEditing(undefined))}>
            <Text style={ui.link}>✕</Text>
          </Pressable>
        </View>
      )}
      <View style={[ui.row, { padding: 8, borderTopWidth: 1, borderColor: colors.border }]}>
        <Pressable testID="attach" onPress={attach} accessibilityLabel="Attach an image" style={{ paddingHorizontal: 4 }}>
          <Text style={{ fontSize: 24, color: colors.accent }}>+</Text>
        </Pressable>
        <TextInput
          style={[ui.input, { flex: 1 }]}
          testID="composer"
          value={draft}
          placeholder="Message"
          onChangeText={(t) => {
            setDraft(t);
            if (t) duet.typing(conversationId);
          }}
          onSubmitEditing={send}
          blurOnSubmit={false}
        />
        <Pressable style={ui.button} testID="send" onPress={send}><Text style={ui.buttonText}>{editing ? "Save" : "Send"}</Text></Pressable>
      </View>
    </View>
  );
}
