#!/usr/bin/env bash
# curl edge cases against hello, both modes: HEAD, Expect: 100-continue with
# a big body (and one over the limit, whose body must not be sent), chunked
# upload, HTTP/1.0 with and without keep-alive, connection reuse and
# sequential requests with --next, an HTTP/0.9 request (answered with an
# HTTP/1.1 400, never a 0.9 response), absolute-form through -x, odd and
# oversized headers, raw malformed requests over telnet://, and HTTPS.
#
#   scripts/curl-edge.sh
#
# Needs curl (Debian package curl). Loopback only; about 10 s.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
need curl
need sha256sum coreutils

work="$(mktemp -d)"
pass=0
ok() { pass=$((pass + 1)); log "  ok: $*"; }

# expect_status WANT CURL_ARGS...: run curl, require the final status.
expect_status() {
  local want="$1"
  shift
  local got
  got="$(curl -s -o "$work/body" -w '%{http_code}' --max-time 10 "$@")" || true
  [ "$got" = "$want" ] || die "curl $*: status $got, want $want (body: $(head -c 200 "$work/body"))"
}

# raw BYTES: send raw bytes (printf format) and print the first response line.
raw() {
  printf '%b' "$1" | curl -s --max-time 3 "telnet://$H_ADDR" 2>/dev/null | head -1 | tr -d '\r' || true
}

check_mode() {
  local mode="$1"
  start_hello H --mode "$mode" --grace 5
  local url="$H_URL"
  head -c 1048576 /dev/urandom >"$work/1m"
  head -c 3145728 /dev/urandom >"$work/3m"
  local sum1
  sum1="$(sha256sum <"$work/1m" | cut -d' ' -f1)"

  # HEAD: the GET's headers, no body.
  local size
  size="$(curl -s -I --max-time 10 "$url/" -D "$work/h" -o /dev/null -w '%{size_download}')"
  if ! grep -qi '^content-length: 13' "$work/h" || [ "$size" != 0 ]; then
    die "HEAD: $size body bytes, $(cat "$work/h")"
  fi
  ok "HEAD has Content-Length 13 and no body"

  # 100-continue with a 1 MiB body: 100, then the echo.
  curl -sv --max-time 10 -H 'Expect: 100-continue' --data-binary @"$work/1m" \
    -H 'Content-Type: application/octet-stream' "$url/echo" -o "$work/echo" 2>"$work/v"
  grep -q '< HTTP/1.1 100 Continue' "$work/v" || die "no 100 Continue: $(grep '^<' "$work/v")"
  [ "$(sha256sum <"$work/echo" | cut -d' ' -f1)" = "$sum1" ] || die "100-continue echo differs"
  ok "Expect: 100-continue, 1 MiB echoed intact"

  # Over the 2 MiB limit with 100-continue: 413 at once, body not sent.
  local out
  out="$(curl -s --max-time 10 -H 'Expect: 100-continue' --data-binary @"$work/3m" \
    -o /dev/null -w '%{http_code} %{size_upload}' "$url/echo")" || true
  [ "${out%% *}" = 413 ] || die "3 MiB with 100-continue: $out"
  [ "${out#* }" -lt 1048576 ] || die "3 MiB with 100-continue: curl still uploaded ${out#* } bytes"
  ok "3 MiB with Expect: 413 and only ${out#* } body bytes sent"

  # Over the limit without Expect: 413 (curl may see the close while sending).
  expect_status 413 -H 'Expect:' --data-binary @"$work/3m" "$url/echo"
  ok "3 MiB without Expect: 413"

  # Chunked upload.
  curl -s --max-time 10 -H 'Transfer-Encoding: chunked' --data-binary @"$work/1m" \
    "$url/echo" -o "$work/echo"
  [ "$(sha256sum <"$work/echo" | cut -d' ' -f1)" = "$sum1" ] || die "chunked echo differs"
  ok "chunked upload of 1 MiB echoed intact"

  # HTTP/1.0: answered, connection closed; with keep-alive: reused.
  curl -sv --http1.0 --max-time 10 "$url/" -o "$work/b" 2>"$work/v"
  [ "$(cat "$work/b")" = "Hello, World!" ] || die "HTTP/1.0 body"
  grep -qi '< connection: close' "$work/v" || die "HTTP/1.0 response without Connection: close"
  curl -sv --http1.0 -H 'Connection: keep-alive' --max-time 10 "$url/" "$url/" -o /dev/null -o /dev/null 2>"$work/v"
  grep -qi 're-using existing connection\|reusing existing connection' "$work/v" || die "HTTP/1.0 keep-alive not reused"
  ok "HTTP/1.0 closes by default, keeps alive on request"

  # Several requests on one connection with --next.
  curl -sv --max-time 10 "$url/" --next "$url/sleep/10" --next -X POST -d hi "$url/echo" \
    2>"$work/v" >"$work/all"
  [ "$(grep -ci 're-using existing connection\|reusing existing connection' "$work/v")" -ge 2 ] ||
    die "--next did not reuse the connection"
  if ! grep -q 'slept 10 ms' "$work/all" || ! grep -q 'hi' "$work/all"; then
    die "--next bodies: $(cat "$work/all")"
  fi
  ok "--next: three requests on one connection"

  # HTTP/0.9 request: an HTTP/1.1 400, never a headerless 0.9 answer.
  local line
  line="$(raw 'GET /\r\n')"
  [ "$line" = "HTTP/1.1 400 Bad Request" ] || die "HTTP/0.9 request answered: '$line'"
  out="$(curl -s --http0.9 --max-time 5 "$url/")"
  [ "$out" = "Hello, World!" ] || die "--http0.9 client: $out"
  ok "HTTP/0.9 request rejected with an HTTP/1.1 400"

  # The HTTP/2 connection preface on the HTTP/1.1 port.
  line="$(raw 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')"
  [ "$line" = "HTTP/1.1 505 HTTP Version Not Supported" ] || die "h2 preface: '$line'"
  ok "HTTP/2 preface answered 505"

  # Absolute-form (curl as a proxy client) and an empty header.
  out="$(curl -s --max-time 5 -x "$url" http://example.invalid/)"
  [ "$out" = "Hello, World!" ] || die "absolute-form: $out"
  expect_status 200 -H 'X-Empty;' "$url/"
  ok "absolute-form target and an empty header"

  # Big headers: 60 KiB fits the 64 KiB head limit; 70 KiB is 431.
  local v60 v70
  v60="$(head -c 61440 /dev/zero | tr '\0' v)"
  v70="$(head -c 71680 /dev/zero | tr '\0' v)"
  expect_status 200 -H "X-Big: $v60" "$url/"
  expect_status 431 -H "X-Big: $v70" "$url/"
  ok "60 KiB header served, 70 KiB header 431"

  # Raw malformed requests.
  [ "$(raw 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n')" = "HTTP/1.1 400 Bad Request" ] || die "duplicate Host"
  [ "$(raw 'GET / HTTP/1.1\r\nHost : a\r\n\r\n')" = "HTTP/1.1 400 Bad Request" ] || die "space before colon"
  [ "$(raw 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')" = "HTTP/1.1 400 Bad Request" ] || die "CL+TE"
  [ "$(raw 'GET / HTTP/1.1\nHost: a\n\n')" = "HTTP/1.1 400 Bad Request" ] || die "bare LF"
  ok "raw malformed requests: 400"

  # Path games reach the router undecoded: 404, not a crash or a file.
  expect_status 404 --path-as-is "$url/a/../../etc/passwd"
  expect_status 404 "$url/%2e%2e/%00"
  ok "odd paths: 404"
  stop_hello "$H_PID"

  # HTTPS, with and without asking for HTTP/2 (ALPN falls back to 1.1).
  start_hello T --mode "$mode" --grace 5 --tls
  expect_status 200 -k "$T_URL/"
  expect_status 200 -k --http2 "$T_URL/"
  curl -sk --max-time 10 -H 'Transfer-Encoding: chunked' --data-binary @"$work/1m" \
    "$T_URL/echo" -o "$work/echo"
  [ "$(sha256sum <"$work/echo" | cut -d' ' -f1)" = "$sum1" ] || die "TLS chunked echo differs"
  ok "HTTPS GET, --http2 fallback, chunked upload"
  stop_hello "$T_PID"
}

start=$(date +%s)
for mode in threads event; do
  log "mode $mode"
  check_mode "$mode"
done
rm -rf "$work"
echo "curl-edge.sh: OK: $pass checks in $(($(date +%s) - start)) s ($(curl --version | head -1 | cut -d' ' -f1-2))"
