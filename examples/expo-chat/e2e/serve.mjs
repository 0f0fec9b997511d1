// A tiny static server for the web export that also proxies Duet's API and
// its /ws upgrade, so the browser sees one origin (an app served from another
// origin needs that origin in Duet's DUET_ALLOWED_ORIGINS instead).
// With S3_URL and BUCKET it proxies `/BUCKET/...` to the object store too
// (Duet is then given this server as DUET_S3_PUBLIC_ENDPOINT): presigned
// uploads and downloads stay same-origin, so the local S3 server needs no
// CORS set-up. The Host header is passed unchanged, because the presigned
// signature covers it.
//
//   node e2e/serve.mjs DIST_DIR PORT DUET_URL [S3_URL BUCKET]
// Prints "listening on http://127.0.0.1:PORT" once ready.
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";

const [dir = "dist", portArg = "0", duetUrl = "http://127.0.0.1:8080", s3Url, bucket] = process.argv.slice(2);
const root = path.resolve(dir);
const duet = new URL(duetUrl);
const s3 = s3Url && bucket ? { url: new URL(s3Url), path: new RegExp(`^/${bucket.replace(/[^A-Za-z0-9.-]/g, "")}/`) } : undefined;
const API = /^\/(auth|me|users|conversations|search|devices|ws)(\/|\?|$)/;
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".json": "application/json", ".css": "text/css", ".png": "image/png", ".ico": "image/x-icon", ".svg": "image/svg+xml", ".ttf": "font/ttf" };

function proxy(req, res, to = duet) {
  const upstream = http.request(
    { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ code: "unavailable", message: "Duet is unreachable" }));
  });
  req.pipe(upstream);
}

function serveFile(req, res) {
  const urlPath = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
  let file = path.join(root, urlPath);
  if (!file.startsWith(root) || !existsSync(file) || statSync(file).isDirectory()) file = path.join(root, "index.html");
  res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
  createReadStream(file).pipe(res);
}

const server = http.createServer((req, res) => {
  const url = req.url ?? "";
  if (s3 && s3.path.test(url)) proxy(req, res, s3.url);
  else if (API.test(url)) proxy(req, res);
  else serveFile(req, res);
});

// WebSocket: replay the upgrade request to Duet and splice the two sockets.
server.on("upgrade", (req, socket, head) => {
  const up = net.connect(Number(duet.port), duet.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    up.write(lines.join("\r\n") + "\r\n\r\n");
    if (head.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  const close = () => {
    up.destroy();
    socket.destroy();
  };
  up.on("error", close);
  socket.on("error", close);
  up.on("close", close);
  socket.on("close", close);
});

server.listen(Number(portArg), "127.0.0.1", () => {
  const addr = server.address();
  console.log(`listening on http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : portArg}`);
});
