// The conversation list (last message, unread badge, typing) and "start a chat by email".
import { useState } from "react";
import { FlatList, Pressable, Text, TextInput, View } from "react-native";
import { summary } from "./MessageBubble";
import { OfflineBanner } from "./OfflineBanner";
import { errorText, shortTime, useChat, usePeers, type Session } from "./session";
import { colors, ui } from "./ui";

export function Conversations({ session, onOpen, onSignOut }: { session: Session; onOpen: (id: string) => void; onSignOut: () => void }) {
  const chat = useChat(session);
  usePeers(session);
  const [email, setEmail] = useState("");
  const [error, setError] = useState<string>();

  const start = async () => {
    setError(undefined);
    try {
      onOpen(await session.startConversation(email.trim()));
      setEmail("");
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <View style={ui.screen}>
      <View style={ui.header}>
        <Text style={[ui.title, { flex: 1 }]}>Chats</Text>
        <Text style={ui.muted} testID="me">{session.user.name}</Text>
        <Pressable onPress={onSignOut} testID="sign-out"><Text style={ui.link}>Sign out</Text></Pressable>
      </View>
      <OfflineBanner session={session} />
      <View style={[ui.pad, ui.row]}>
        <TextInput style={[ui.input, { flex: 1 }]} testID="peer-email" value={email} onChangeText={setEmail} placeholder="Start a chat: their email" autoCapitalize="none" onSubmitEditing={start} />
        <Pressable style={ui.button} testID="start-chat" onPress={start}><Text style={ui.buttonText}>Chat</Text></Pressable>
      </View>
      {error && <Text style={[ui.error, { paddingHorizontal: 16 }]} testID="start-error">{error}</Text>}
      <FlatList
        data={chat.conversationList}
        keyExtractor={(id) => id}
        ListEmptyComponent={<Text style={[ui.muted, { padding: 16 }]}>No conversations yet.</Text>}
        renderItem={({ item: id }) => {
          const c = chat.conversations[id];
          if (!c) return null;
          const name = session.peer(c.peerId)?.name ?? "…";
          const pending = c.outbox[c.outbox.length - 1];
          const last = c.messages[c.messages.length - 1];
          const preview = c.peerTyping ? "typing…" : pending ? pending.text : last ? (last.senderId === chat.userId ? "You: " : "") + summary(last) : "";
          return (
            <Pressable testID={`conv-${name}`} onPress={() => onOpen(id)} style={{ flexDirection: "row", alignItems: "center", gap: 12, paddingHorizontal: 16, paddingVertical: 12, borderBottomWidth: 1, borderColor: colors.border }}>
              <View style={{ flex: 1 }}>
                <Text style={{ fontSize: 16, fontWeight: "600" }}>{name}</Text>
                <Text style={[ui.muted, c.peerTyping && { color: colors.accent }]} numberOfLines={1} testID={`preview-${name}`}>{preview}</Text>
              </View>
              <Text style={ui.muted}>{shortTime(last?.createdAt)}</Text>
              {c.unreadCount > 0 && (
                <View style={{ backgroundColor: colors.accent, borderRadius: 10, minWidth: 20, paddingHorizontal: 6, alignItems: "center" }}>
                  <Text style={{ color: "#fff", fontWeight: "600" }} testID={`unread-${name}`}>{c.unreadCount}</Text>
                </View>
              )}
            </Pressable>
          );
        }}
      />
    </View>
  );
}
