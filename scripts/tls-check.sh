#!/usr/bin/env bash
# The TLS port of `hello --tls`, probed with openssl s_client, both modes:
# TLS 1.3 and 1.2 are accepted (with forward-secret AEAD suites), TLS 1.1 and
# 1.0 are refused by the server (the client is allowed to offer them, so the
# refusal is the server's), weak cipher suites are refused, client-initiated
# renegotiation is refused, and a request is answered over each accepted
# version. With TESTSSL=1 and testssl.sh installed, also runs testssl.sh's
# protocol, cipher and renegotiation checks.
#
#   scripts/tls-check.sh
#
# Needs openssl (Debian package openssl); optional testssl.sh (package
# testssl.sh). Loopback only; about 5 s (testssl.sh: about 1 min more).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need openssl

work="$(mktemp -d)"
pass=0
ok() { pass=$((pass + 1)); log "  ok: $*"; }

# s_client ARGS...: connect, send a request, print everything (bounded).
s_client() {
  printf 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' |
    timeout 10 openssl s_client -connect "$T_ADDR" -servername localhost -ign_eof "$@" 2>&1 || true
}

check_mode() {
  local mode="$1" out
  start_hello T --mode "$mode" --grace 5 --tls

  for v in 1_3 1_2; do
    out="$(s_client "-tls$v")"
    echo "$out" >"$work/tls$v"
    local want="TLSv${v/_/.}"
    echo "$out" | grep -q "^New, $want, Cipher is " || die "TLS ${v/_/.} refused: $(echo "$out" | grep -E 'New,|error' | head -3)"
    echo "$out" | grep -q 'Hello, World!' || die "no response over TLS ${v/_/.}"
    local cipher
    cipher="$(echo "$out" | sed -n "s/^New, $want, Cipher is //p")"
    case "$cipher" in
      TLS_AES_* | TLS_CHACHA20_* | ECDHE-*-GCM-* | ECDHE-*-CHACHA20-*) ;;
      *) die "TLS ${v/_/.} negotiated a weak suite: $cipher" ;;
    esac
    ok "TLS ${v/_/.} accepted ($cipher), request answered"
  done

  # Old versions: offered for real (SECLEVEL=0 lets OpenSSL 3 send them),
  # refused by the server with an alert.
  for v in 1_1 1; do
    local name="TLS 1.${v#1_}"
    [ "$v" = 1 ] && name="TLS 1.0"
    out="$(s_client "-tls$v" -cipher 'DEFAULT:@SECLEVEL=0')"
    echo "$out" | grep -q '^New, TLSv' && die "$name was accepted"
    echo "$out" | grep -q 'alert' || die "$name: no alert from the server: $(echo "$out" | grep -i error | head -2)"
    ok "$name refused by the server ($(echo "$out" | grep -o 'alert [a-z ]*' | head -1))"
  done

  # Weak suites over TLS 1.2: CBC modes (usable with this ECDSA key, so a
  # lax server would pick one), RC4, 3DES, NULL, anonymous.
  out="$(s_client -tls1_2 -cipher 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:RC4:3DES:NULL:aNULL:@SECLEVEL=0')"
  echo "$out" | grep -q '^New, TLSv1.2' && die "a weak TLS 1.2 suite was accepted: $(grep '^New' <<<"$out")"
  echo "$out" | grep -q 'alert' || die "weak suites: no alert from the server"
  ok "weak TLS 1.2 suites (CBC, RC4, 3DES, NULL, anon) refused by the server"

  # Client-initiated renegotiation ("R" on s_client's stdin, TLS 1.2).
  out="$( (sleep 1; echo R; sleep 2) | timeout 10 openssl s_client -connect "$T_ADDR" -tls1_2 2>&1 || true)"
  echo "$out" | grep -q 'RENEGOTIATING' || die "renegotiation was not attempted: $out"
  echo "$out" | grep -qi 'no renegotiation\|alert' || die "renegotiation was not refused: $(echo "$out" | tail -5)"
  ok "client-initiated renegotiation refused ($(echo "$out" | grep -oi 'no renegotiation' | head -1))"

  # The server still serves after all that.
  out="$(s_client -tls1_3)"
  echo "$out" | grep -q 'Hello, World!' || die "not serving after the probes"
  log "  server after the probes (rss KiB, fds, threads): $(proc_sample "$T_PID")"
  stop_hello "$T_PID"
}

start=$(date +%s)
for mode in threads event; do
  log "mode $mode"
  check_mode "$mode"
done

if [ "${TESTSSL:-0}" = 1 ]; then
  if command -v testssl >/dev/null || command -v testssl.sh >/dev/null; then
    tool="$(command -v testssl || command -v testssl.sh)"
    start_hello T --mode event --grace 5 --tls
    log "testssl.sh: protocols, cipher categories, renegotiation"
    timeout 300 "$tool" --quiet --color 0 --warnings off -p -s -R "$T_ADDR" >"$work/testssl" 2>&1 || true
    grep -E 'SSLv|TLS 1|NULL|Anonymous|Export|LOW|3DES|renegotiation' "$work/testssl" | sed 's/^/    /'
    grep -Eq 'TLS 1(\.0)? +offered|TLS 1\.1 +offered|SSLv[23] +offered' "$work/testssl" &&
      die "testssl.sh: an obsolete protocol is offered"
    grep -Eq 'Secure Client-Initiated Renegotiation +VULNERABLE' "$work/testssl" &&
      die "testssl.sh: client-initiated renegotiation allowed"
    ok "testssl.sh: no obsolete protocol, no client renegotiation"
    stop_hello "$T_PID"
  else
    log "TESTSSL=1 but testssl.sh is not installed (Debian package testssl.sh): skipped"
  fi
fi
rm -rf "$work"
echo "tls-check.sh: OK: $pass checks in $(($(date +%s) - start)) s ($(openssl version | cut -d' ' -f1-2))"
