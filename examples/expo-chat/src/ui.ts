// Shared styles: plain, one place.
import { StyleSheet } from "react-native";

export const colors = { accent: "#2563eb", muted: "#6b7280", border: "#e5e7eb", bg: "#f9fafb", warn: "#b45309" };

export const ui = StyleSheet.create({
  screen: { flex: 1, backgroundColor: "#fff", maxWidth: 640, width: "100%", alignSelf: "center" },
  pad: { padding: 16, gap: 10 },
  title: { fontSize: 22, fontWeight: "600" },
  input: { borderWidth: 1, borderColor: colors.border, borderRadius: 8, paddingHorizontal: 12, paddingVertical: 10, fontSize: 16 },
  button: { backgroundColor: colors.accent, borderRadius: 8, paddingVertical: 10, paddingHorizontal: 16, alignItems: "center" },
  buttonText: { color: "#fff", fontWeight: "600", fontSize: 16 },
  link: { color: colors.accent, fontSize: 15 },
  error: { color: "#b91c1c" },
  muted: { color: colors.muted, fontSize: 13 },
  row: { flexDirection: "row", alignItems: "center", gap: 8 },
  header: { flexDirection: "row", alignItems: "center", gap: 12, padding: 12, borderBottomWidth: 1, borderColor: colors.border },
  banner: { backgroundColor: "#fef3c7", padding: 8, alignItems: "center" },
  bannerText: { color: colors.warn },
});
