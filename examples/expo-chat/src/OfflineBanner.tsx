// Shown while the socket is not connected, with the count of messages waiting to go out.
import { Text, View } from "react-native";
import { useChat, type Session } from "./session";
import { ui } from "./ui";

export function OfflineBanner({ session }: { session: Session }) {
  const chat = useChat(session);
  if (chat.connection === "connected") return null;
  let pending = 0;
  for (const c of Object.values(chat.conversations)) pending += c.outbox.filter((e) => e.status === "pending").length;
  const what = chat.connection === "offline" ? "Offline" : chat.connection === "unauthorized" ? "Signed out by the server" : "Connecting…";
  return (
    <View style={ui.banner} testID="offline-banner">
      <Text style={ui.bannerText}>
        {what}
        {pending > 0 ? ` · ${pending} waiting to send` : ""}
      </Text>
    </View>
  );
}
