// Sign up or sign in; the server's address is editable (defaults to EXPO_PUBLIC_DUET_URL or this page's origin).
import { useState } from "react";
import { Pressable, Text, TextInput, View } from "react-native";
import type { DuetSession } from "@duet/client";
import { authenticate, defaultBaseUrl, errorText, type User } from "./session";
import { ui } from "./ui";

export function SignIn({ onSignedIn }: { onSignedIn: (baseUrl: string, auth: DuetSession, user: User) => void }) {
  const [mode, setMode] = useState<"signin" | "signup">("signup");
  const [baseUrl, setBaseUrl] = useState(defaultBaseUrl());
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const { auth, user } = await authenticate(baseUrl, mode, { email: email.trim(), password, name: name.trim() });
      onSignedIn(baseUrl, auth, user);
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };

  return (
    <View style={[ui.screen, ui.pad]}>
      <Text style={ui.title}>Duet</Text>
      <TextInput style={ui.input} testID="server" value={baseUrl} onChangeText={setBaseUrl} placeholder="Server" autoCapitalize="none" />
      {mode === "signup" && <TextInput style={ui.input} testID="name" value={name} onChangeText={setName} placeholder="Name" />}
      <TextInput style={ui.input} testID="email" value={email} onChangeText={setEmail} placeholder="Email" autoCapitalize="none" inputMode="email" />
      <TextInput style={ui.input} testID="password" value={password} onChangeText={setPassword} placeholder="Password" secureTextEntry onSubmitEditing={submit} />
      {error && <Text style={ui.error} testID="auth-error">{error}</Text>}
      <Pressable style={ui.button} testID="auth-submit" onPress={submit} disabled={busy}>
        <Text style={ui.buttonText}>{mode === "signup" ? "Sign up" : "Sign in"}</Text>
      </Pressable>
      <Pressable testID="auth-toggle" onPress={() => setMode(mode === "signup" ? "signin" : "signup")}>
        <Text style={ui.link}>{mode === "signup" ? "Have an account? Sign in" : "New here? Sign up"}</Text>
      </Pressable>
    </View>
  );
}
