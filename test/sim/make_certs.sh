#!/bin/sh
# Throwaway TLS material for the simulator's HTTPS listener: a CA and a server
# certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1, DNS:localhost) signed
# by it, EC prime256v1 keys, valid for 30 days. Used by start_simulator in
# test/lib.sh and by test_sim.py. Needs the openssl command line.
#
#     sh test/sim/make_certs.sh DIR
#
# Writes DIR/ca.pem, DIR/server.pem (0644) and DIR/server.key (0600), owned by
# the caller; the CA's key is thrown away. Silent on success; on failure prints
# openssl's messages and exits non-zero.
set -eu
[ $# -eq 1 ] && [ -d "$1" ] || { echo "usage: make_certs.sh DIR (an existing directory)" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || { echo "make_certs.sh: the openssl command is missing" >&2; exit 1; }
dir=$1
tmp=$(mktemp -d "$dir/.certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Our own config, so the system's openssl.cnf (or its absence) does not matter.
cat > "$tmp/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = dbsync test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

if ! {
  openssl req -config "$tmp/openssl.cnf" -x509 -new -nodes \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=dbsync test CA" -extensions ca -days 30 \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" &&
  openssl req -config "$tmp/openssl.cnf" -new -nodes \
    -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=127.0.0.1" -keyout "$tmp/server.key" -out "$tmp/server.csr" &&
  openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -days 30 \
    -extfile "$tmp/openssl.cnf" -extensions server -out "$tmp/server.pem"
} >"$tmp/openssl.log" 2>&1; then
  echo "make_certs.sh: openssl failed:" >&2
  cat "$tmp/openssl.log" >&2
  exit 1
fi

chmod 0644 "$tmp/ca.pem" "$tmp/server.pem"
chmod 0600 "$tmp/server.key"
mv -f "$tmp/ca.pem" "$tmp/server.pem" "$tmp/server.key" "$dir/"
