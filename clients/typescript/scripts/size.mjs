// Prints the SDK's bundle size: dist/index.js bundled with its runtime
// dependency (openapi-fetch), minified by esbuild, and gzipped.
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import path from "node:path";

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const result = await build({
  entryPoints: [path.join(pkg, "dist/index.js")],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "neutral",
  target: "es2020",
  write: false,
  logLevel: "error",
});
const code = result.outputFiles[0].contents;
const gz = gzipSync(code, { level: 9 });
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`@duet/client bundle (with openapi-fetch): ${kb(code.length)} minified, ${kb(gz.length)} minified+gzip`);
