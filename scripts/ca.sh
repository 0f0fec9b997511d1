#!/usr/bin/env bash
# A local certificate authority and one server certificate signed by it, for
# TLS on this machine (scripts/cluster's HAProxy, DUET_TLS_CERT, the TLS test).
# Usage: scripts/ca.sh DIR
# Writes, under DIR (created if missing):
#   ca.pem, ca.key          the CA (clients trust ca.pem: duet-bench --ca-file, NODE_EXTRA_CA_CERTS)
#   server.pem, server.key  the server's certificate (SAN 127.0.0.1, ::1, localhost) and its key
#   server-bundle.pem       server.pem followed by server.key, as HAProxy's `crt` wants it
# Idempotent: files that exist and still verify are kept (a CA is never
# replaced while its server certificate is valid), so clients keep trusting it.
# Keys are ECDSA P-256; the CA lives 10 years, the server certificate 2.
set -euo pipefail
dir=${1:?usage: scripts/ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

if [[ ! -s ca.pem || ! -s ca.key ]]; then
  rm -f server.pem server.key server-bundle.pem
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout ca.key -out ca.pem \
    -days 3650 -subj "/CN=Duet local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# A server certificate that no longer verifies against the CA (expired, or
# signed by a CA since replaced) is made again.
if [[ ! -s server.pem || ! -s server.key ]] || ! openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1 \
  || ! openssl x509 -in server.pem -noout -checkend 86400 >/dev/null; then
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout server.key -out server.csr \
    -subj "/CN=localhost" 2>/dev/null
  cat > server.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
EOF
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 730 \
    -extfile server.ext 2>/dev/null
  rm -f server.csr server.ext ca.srl
fi
cat server.pem server.key > server-bundle.pem
# Certificates are public; the CA certificate must be readable by clients.
chmod 644 ca.pem server.pem
echo "$PWD/ca.pem"
