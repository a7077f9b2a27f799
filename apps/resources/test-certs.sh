#!/usr/bin/env bash
# Certificates for a TEST setup of Maple's TLS links (docs/security.md): a throwaway CA, a server certificate
# for the given names, and a client certificate, all signed by that CA and valid for 30 days.
#
#   bash apps/resources/test-certs.sh DIR [NAME ...]      (names default to 127.0.0.1 and localhost)
#
# Writes DIR/ca.pem, DIR/server.pem + server-key.pem, DIR/client.pem + client-key.pem. Keys are EC P-256 in
# unencrypted PKCS#8 (-----BEGIN PRIVATE KEY-----), the form Python, gRPC, librdkafka and the Kafka broker
# all read. Use certificates from your own CA for anything that is not a test.
set -euo pipefail
dir=${1:?usage: test-certs.sh DIR [NAME ...]}
shift
if [ $# -eq 0 ]; then names=(127.0.0.1 localhost); else names=("$@"); fi
san=""
for name in "${names[@]}"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
done
san=${san%,}
mkdir -p "$dir"
cd "$dir"
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca-key.pem
openssl req -x509 -new -key ca-key.pem -out ca.pem -days 30 -subj "/O=Maple test/CN=Maple test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
issue() {  # issue NAME SUBJECT-CN EXTENDED-KEY-USAGE [SAN]
  key "$1-key.pem"
  openssl req -new -key "$1-key.pem" -out "$1.csr" -subj "/O=Maple test/CN=$2" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyAgreement"
    echo "extendedKeyUsage=$3"
    [ -n "${4:-}" ] && echo "subjectAltName=$4"
  } > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -out "$1.pem" \
    -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue server "${names[0]}" serverAuth,clientAuth "$san"
issue client maple-client clientAuth
rm -f ca.srl
chmod 644 ca.pem server.pem client.pem
echo "wrote $dir: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem (server names: ${names[*]})"
