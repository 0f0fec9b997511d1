// Picking an image to attach. On the web a file input (no dependency); a
// native app would use expo-image-picker (`launchImageLibraryAsync`, then
// `await (await fetch(asset.uri)).blob()` for the bytes) — not added here,
// so that `expo export --platform web` keeps building offline.
import { Platform } from "react-native";

export interface PickedImage {
  data: Blob;
  contentType: string;
  fileName: string;
}

/** Asks for one image; undefined when cancelled. Native: throws (see the module comment). */
export function pickImage(): Promise<PickedImage | undefined> {
  if (Platform.OS !== "web" || typeof document === "undefined") {
    return Promise.reject(new Error("Attaching images needs expo-image-picker in a native build."));
  }
  return new Promise((resolve) => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "image/png,image/jpeg,image/webp,image/gif";
    input.onchange = () => {
      const file = input.files?.[0];
      resolve(file ? { data: file, contentType: file.type || "application/octet-stream", fileName: file.name } : undefined);
    };
    input.oncancel = () => resolve(undefined);
    input.click();
  });
}
