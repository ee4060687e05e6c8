#!/usr/bin/env bash
# Real backends for the demo and the tests.
#
#   backend.sh nginx-conf NAME DIR [BIG_MB]
#       writes DIR/nginx.conf for a server that answers /id with NAME,
#       /health with OK, and serves DIR/www (with a BIG_MB MiB file "big"
#       when asked). Start it with: nginx -p DIR -c DIR/nginx.conf
#       (it stays in the foreground: its PID is the caller's to stop).
#       With DIR/srv.pem and DIR/srv.key it also serves HTTPS on 9443.
set -euo pipefail

case "${1:-}" in
  nginx-conf)
    name=$2; dir=$3; big=${4:-0}
    mkdir -p "$dir/www" "$dir/tmp" "$dir/logs"
    if [ "$big" -gt 0 ] && [ ! -f "$dir/www/big" ]; then
      head -c "$((big * 1048576))" /dev/urandom > "$dir/www/big"
    fi
    tls=""
    if [ -f "$dir/srv.pem" ] && [ -f "$dir/srv.key" ]; then
      tls="server { listen 9443 ssl; ssl_certificate $dir/srv.pem; ssl_certificate_key $dir/srv.key; ssl_session_cache shared:SSL-$name:1m; ssl_session_tickets off; access_log $dir/logs/client.log clientaddr; location = /id { default_type text/plain; return 200 \"$name\\n\"; } location / { root $dir/www; } }"
    fi
    cat > "$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log $dir/logs/access.log;
  log_format bodyfile '\$request_length \$content_length \$request_body_file';
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 80;
    location = /id { default_type text/plain; return 200 "$name\n"; }
    location = /health { default_type text/plain; return 200 "OK\n"; }
    # Cookies of the server's own (the L7 persistence tests).
    location = /passive { add_header Set-Cookie "SRVID=$name; Path=/"; default_type text/plain; return 200 "$name\n"; }
    location = /rewrite { add_header Set-Cookie "SRVID=; Path=/"; default_type text/plain; return 200 "$name\n"; }
    location = /login { add_header Set-Cookie "JSESSIONID=$name\$request_id; Path=/"; default_type text/plain; return 200 "$name\n"; }
    location ~ ^/who { default_type text/plain; return 200 "$name\n"; }
    # A request's body kept whole in DIR/tmp/body, its file named in
    # logs/body.log (the L7 script tests); the answer is /id's.
    location = /body { client_max_body_size 64m; client_body_in_file_only on; access_log $dir/logs/body.log bodyfile; proxy_pass http://\$server_addr:\$server_port/id; }
    # The big file at 4 MiB/s (an answer that takes a while: the L7
    # keep-alive test).
    location = /slow { alias $dir/www/big; limit_rate 4m; default_type application/octet-stream; }
    # The big file at 800 kB/s, paced by the server (the defence tests'
    # download that spans a flood: curl's own --limit-rate once let 10 MiB
    # through in under a second).
    location = /trickle { alias $dir/www/big; limit_rate 800k; default_type application/octet-stream; }
    location / { root $dir/www; }
  }
  # What the servers learn of the client (the L7 tests): the headers on
  # 9081, the PROXY protocol's address on 9082 (ports no test takes for a dead one).
  log_format clientaddr '\$server_port \$remote_addr xff="\$http_x_forwarded_for" fwd="\$http_forwarded" pp="\$proxy_protocol_addr" "\$request"';
  server {
    listen 9081;
    access_log $dir/logs/client.log clientaddr;
    location = /id { default_type text/plain; return 200 "$name\n"; }
    location / { root $dir/www; }
  }
  server {
    listen 9082 proxy_protocol;
    access_log $dir/logs/client.log clientaddr;
    location = /id { default_type text/plain; return 200 "$name\n"; }
    location / { root $dir/www; }
  }
  # HTTPS (the L7 engine's re-encryption), when the test gave a certificate.
  $tls
}
CONF
    ;;
  *) echo "usage: $0 nginx-conf NAME DIR [BIG_MB]" >&2; exit 2 ;;
esac
