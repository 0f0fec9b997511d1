// One message on screen: the quoted reply, the text (or the tombstone of an
// unsent message), an attached image, "edited", time and ticks, reaction
// chips. A long press (or the ⋯ button, which the web and tests use) opens
// the message's actions.
import { useEffect, useState } from "react";
import { Image, Pressable, Text, View } from "react-native";
import type { ChatMessage } from "@duet/client";
import { shortTime, type Session } from "./session";
import { colors, ui } from "./ui";

export type Tick = "pending" | "failed" | "sent" | "delivered" | "read";
const TICKS: Record<Tick, { mark: string; color: string }> = {
  pending: { mark: "🕓", color: colors.muted },
  failed: { mark: "!", color: "#b91c1c" },
  sent: { mark: "✓", color: colors.muted },
  delivered: { mark: "✓✓", color: colors.muted },
  read: { mark: "✓✓", color: colors.accent },
};

export const TOMBSTONE = "This message was deleted";

/** What a message shows in one line: for quotes and the conversation list. */
export function summary(m: Pick<ChatMessage, "text" | "type" | "deletedAt">): string {
  if (m.deletedAt) return TOMBSTONE;
  if (m.text) return m.text;
  return m.type === "image" ? "📷 Photo" : `[${m.type}]`;
}

/** An attached image, through a short-lived download URL (asked again when it fails, e.g. expired). */
function AttachedImage({ session, conversationId, attachmentId }: { session: Session; conversationId: string; attachmentId: string }) {
  const [uri, setUri] = useState<string>();
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let live = true;
    session.duet.attachments.downloadUrl(conversationId, attachmentId).then(
      (d) => live && setUri(d.url),
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [session, conversationId, attachmentId, attempt]);
  if (!uri) return <View style={{ width: 200, height: 150, backgroundColor: colors.border, borderRadius: 8 }} />;
  return (
    <Image
      testID="msg-image"
      source={{ uri }}
      style={{ width: 200, height: 150, borderRadius: 8 }}
      resizeMode="cover"
      onError={() => attempt < 2 && setAttempt((n) => n + 1)}
    />
  );
}

export function MessageBubble({
  session,
  message,
  mine,
  tick,
  onActions,
}: {
  session: Session;
  message: Pick<ChatMessage, "id" | "conversationId" | "type" | "text" | "payload" | "createdAt" | "replyTo" | "editedAt" | "deletedAt" | "reactions"> & { pending?: boolean };
  mine: boolean;
  tick?: Tick;
  onActions?: () => void;
}) {
  const m = message;
  const me = session.user.id;
  const attachmentId = typeof m.payload?.attachmentId === "string" ? m.payload.attachmentId : undefined;
  return (
    <Pressable
      testID={mine ? "msg-mine" : "msg-theirs"}
      onLongPress={onActions}
      style={{ alignSelf: mine ? "flex-end" : "flex-start", maxWidth: "80%", marginVertical: 2 }}
    >
      <View style={{ backgroundColor: mine ? "#dbeafe" : "#f3f4f6", borderRadius: 12, paddingHorizontal: 12, paddingVertical: 6 }}>
        {m.replyTo && !m.deletedAt && (
          <View testID="msg-quote" style={{ borderLeftWidth: 3, borderColor: colors.accent, paddingLeft: 6, marginBottom: 4 }}>
            <Text style={[ui.muted, m.replyTo.deletedAt && { fontStyle: "italic" }]} numberOfLines={2} testID="msg-quote-text">
              {summary(m.replyTo)}
            </Text>
          </View>
        )}
        {m.deletedAt ? (
          <Text style={[ui.muted, { fontSize: 15, fontStyle: "italic" }]} testID="msg-tombstone">{TOMBSTONE}</Text>
        ) : (
          <>
            {attachmentId && m.type === "image" && <AttachedImage session={session} conversationId={m.conversationId} attachmentId={attachmentId} />}
            {(m.text || !attachmentId) && <Text style={{ fontSize: 16 }} testID="msg-text">{m.text ?? `[${m.type}]`}</Text>}
          </>
        )}
        <View style={[ui.row, { justifyContent: "flex-end", gap: 4 }]}>
          {m.editedAt && !m.deletedAt && <Text style={[ui.muted, { fontSize: 11 }]} testID="msg-edited">edited</Text>}
          <Text style={[ui.muted, { fontSize: 11 }]}>{shortTime(m.createdAt)}</Text>
          {tick && <Text testID={`tick-${tick}`} aria-label={tick} style={{ fontSize: 11, color: TICKS[tick].color }}>{TICKS[tick].mark}</Text>}
          {onActions && !m.deletedAt && (
            <Pressable onPress={onActions} testID="msg-menu" hitSlop={8} accessibilityLabel="Message actions">
              <Text style={[ui.muted, { fontSize: 13 }]}>⋯</Text>
            </Pressable>
          )}
        </View>
      </View>
      {m.reactions && (
        <View style={[ui.row, { gap: 4, marginTop: 2, alignSelf: mine ? "flex-end" : "flex-start" }]}>
          {m.reactions.map((r) => (
            <View
              key={r.emoji}
              testID={`reaction-${r.emoji}`}
              style={{ borderWidth: 1, borderColor: r.userIds.includes(me) ? colors.accent : colors.border, borderRadius: 10, paddingHorizontal: 6, backgroundColor: "#fff" }}
            >
              <Text style={{ fontSize: 12 }}>{r.count > 1 ? `${r.emoji} ${r.count}` : r.emoji}</Text>
            </View>
          ))}
        </View>
      )}
    </Pressable>
  );
}
