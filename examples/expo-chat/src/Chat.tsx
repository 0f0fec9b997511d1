// One conversation: history (the newest page synced by the SDK, earlier pages
// from REST as you scroll up), live messages, the peer's typing and presence,
// ticks, the composer.
import { useEffect, useRef, useState } from "react";
import { Pressable, ScrollView, Text, TextInput, View, type NativeScrollEvent, type NativeSyntheticEvent } from "react-native";
import { OfflineBanner } from "./OfflineBanner";
import { errorText, shortTime, useChat, usePeers, type HistoryMessage, type Session } from "./session";
import { colors, ui } from "./ui";

type Tick = "pending" | "failed" | "sent" | "delivered" | "read";
const TICKS: Record<Tick, { mark: string; color: string }> = {
  pending: { mark: "🕓", color: colors.muted },
  failed: { mark: "!", color: "#b91c1c" },
  sent: { mark: "✓", color: colors.muted },
  delivered: { mark: "✓✓", color: colors.muted },
  read: { mark: "✓✓", color: colors.accent },
};

function Bubble({ mine, text, time, tick }: { mine: boolean; text: string; time: string; tick?: Tick }) {
  return (
    <View testID={mine ? "msg-mine" : "msg-theirs"} style={{ alignSelf: mine ? "flex-end" : "flex-start", maxWidth: "80%", backgroundColor: mine ? "#dbeafe" : "#f3f4f6", borderRadius: 12, paddingHorizontal: 12, paddingVertical: 6, marginVertical: 2 }}>
      <Text style={{ fontSize: 16 }} testID="msg-text">{text}</Text>
      <View style={[ui.row, { justifyContent: "flex-end", gap: 4 }]}>
        <Text style={[ui.muted, { fontSize: 11 }]}>{time}</Text>
        {tick && <Text testID={`tick-${tick}`} aria-label={tick} style={{ fontSize: 11, color: TICKS[tick].color }}>{TICKS[tick].mark}</Text>}
      </View>
    </View>
  );
}

export function Chat({ session, conversationId, onBack }: { session: Session; conversationId: string; onBack: () => void }) {
  const chat = useChat(session);
  const peers = usePeers(session);
  const c = chat.conversations[conversationId];
  const [draft, setDraft] = useState("");
  const [older, setOlder] = useState<readonly HistoryMessage[]>([]);
  const [olderDone, setOlderDone] = useState(false);
  const [loading, setLoading] = useState(false);
  const [historyError, setHistoryError] = useState<string>();
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
  const messages: readonly Pick<HistoryMessage, "id" | "seq" | "senderId" | "text" | "type" | "createdAt">[] = [...earlierPages, ...c.messages];

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
    duet.send(conversationId, text);
    setDraft("");
    atBottom.current = true;
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
          return <Bubble key={m.id} mine={mine} text={m.text ?? `[${m.type}]`} time={shortTime(m.createdAt)} {...(tick ? { tick } : {})} />;
        })}
        {c.outbox.map((e) => (
          <Bubble key={e.clientMsgId} mine text={e.text ?? `[${e.type}]`} time={shortTime(e.composedAt)} tick={e.status} />
        ))}
      </ScrollView>
      <View style={[ui.row, { padding: 8, borderTopWidth: 1, borderColor: colors.border }]}>
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
        <Pressable style={ui.button} testID="send" onPress={send}><Text style={ui.buttonText}>Send</Text></Pressable>
      </View>
    </View>
  );
}
