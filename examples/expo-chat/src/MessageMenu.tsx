// The actions of one message, shown above the composer once a message is
// long-pressed (or its ⋯ tapped): react with a few emoji, reply; on your own
// messages edit and unsend; delete for me. Tapping your current reaction
// removes it.
import { Pressable, Text, View } from "react-native";
import type { ChatMessage } from "@duet/client";
import { summary } from "./MessageBubble";
import { colors, ui } from "./ui";

export const EMOJI = ["👍", "❤️", "😂", "😮", "😢"] as const;

export type MessageAction =
  | { kind: "react"; emoji: string | null }
  | { kind: "reply" }
  | { kind: "edit" }
  | { kind: "unsend" }
  | { kind: "hide" }
  | { kind: "close" };

function Action({ id, label, onPress, danger }: { id: string; label: string; onPress: () => void; danger?: boolean }) {
  return (
    <Pressable testID={id} onPress={onPress} style={{ paddingHorizontal: 8, paddingVertical: 6 }}>
      <Text style={[ui.link, danger && { color: "#b91c1c" }]}>{label}</Text>
    </Pressable>
  );
}

export function MessageMenu({ message, me, onAction }: { message: ChatMessage; me: string | undefined; onAction: (a: MessageAction) => void }) {
  const mine = message.senderId === me;
  const current = message.reactions?.find((r) => me !== undefined && r.userIds.includes(me))?.emoji;
  return (
    <View testID="message-menu" style={{ borderTopWidth: 1, borderColor: colors.border, padding: 8, gap: 4 }}>
      <Text style={ui.muted} numberOfLines={1}>{summary(message)}</Text>
      <View style={[ui.row, { gap: 4 }]}>
        {EMOJI.map((e) => (
          <Pressable
            key={e}
            testID={`react-${e}`}
            onPress={() => onAction({ kind: "react", emoji: e === current ? null : e })}
            style={{ padding: 4, borderRadius: 8, backgroundColor: e === current ? "#dbeafe" : "transparent" }}
          >
            <Text style={{ fontSize: 20 }}>{e}</Text>
          </Pressable>
        ))}
      </View>
      <View style={[ui.row, { flexWrap: "wrap", gap: 0 }]}>
        <Action id="action-reply" label="Reply" onPress={() => onAction({ kind: "reply" })} />
        {mine && message.type === "text" && <Action id="action-edit" label="Edit" onPress={() => onAction({ kind: "edit" })} />}
        {mine && <Action id="action-unsend" label="Unsend" danger onPress={() => onAction({ kind: "unsend" })} />}
        <Action id="action-hide" label="Delete for me" danger onPress={() => onAction({ kind: "hide" })} />
        <Action id="action-close" label="Cancel" onPress={() => onAction({ kind: "close" })} />
      </View>
    </View>
  );
}
