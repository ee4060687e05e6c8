#!/usr/bin/env bash
# Certificates for the HTTPS tests, made fresh in DIR by openssl:
#   ca.pem ca.key         a CA
#   a.pem a.key           a.example, *.a.example (signed by the CA)
#   b.pem b.key           b.example
#   srv.pem srv.key       the lab's servers, by address (198.51.100.11-13)
#   other-ca.pem          a CA that signed none of them
#   a.ocsp                the CA's OCSP response for a.pem ("good")
# Private keys are mode 0600.
#   mkcerts.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077
q() { "$@" >/dev/null 2>&1 || { echo "mkcerts: $* failed" >&2; "$@"; exit 1; }; }

ca() { # name subject
  q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
    -days 2 -subj "/CN=$2" -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # name san [subject]
  q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=${3:-$1}"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nauthorityInfoAccess=OCSP;URI:http://ocsp.invalid/\n' "$2" > "$1.ext"
  q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
ca ca "Furiwake test CA"
ca other-ca "Another CA"
leaf a "DNS:a.example,DNS:*.a.example"
leaf b "DNS:b.example"
leaf srv "IP:198.51.100.11,IP:198.51.100.12,IP:198.51.100.13,DNS:app.internal"
# An OCSP response for a.pem, signed by the CA (RFC 6960), to staple.
touch index.txt
serial=$(openssl x509 -in a.pem -noout -serial | cut -d= -f2)
printf 'V\t301231235959Z\t\t%s\tunknown\t/CN=a\n' "$serial" > index.txt
q openssl ocsp -issuer ca.pem -cert a.pem -reqout a.req -no_nonce
q openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem -reqin a.req -respout a.ocsp -ndays 1
rm -f a.req
chmod 600 ./*.key
chmod 644 ./*.pem a.ocsp
