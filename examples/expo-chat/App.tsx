// The Duet reference app: sign in, the conversation list, one conversation.
// Navigation is a plain state switch to keep the example small.
import { useEffect, useState } from "react";
import { SafeAreaView, StyleSheet } from "react-native";
import { Chat } from "./src/Chat";
import { Conversations } from "./src/Conversations";
import { Session } from "./src/session";
import { SignIn } from "./src/SignIn";

export default function App() {
  const [session, setSession] = useState<Session>();
  const [open, setOpen] = useState<string>();

  useEffect(() => {
    if (!session) return;
    void session.start();
    return () => session.stop();
  }, [session]);

  return (
    <SafeAreaView style={styles.root}>
      {!session ? (
        <SignIn onSignedIn={(baseUrl, auth, user) => setSession(new Session(baseUrl, user, auth))} />
      ) : open ? (
        <Chat session={session} conversationId={open} onBack={() => setOpen(undefined)} />
      ) : (
        <Conversations session={session} onOpen={setOpen} onSignOut={() => { void session.signOut(); setOpen(undefined); setSession(undefined); }} />
      )}
    </SafeAreaView>
  );
}

const styles = StyleSheet.create({ root: { flex: 1, backgroundColor: "#fff" } });
