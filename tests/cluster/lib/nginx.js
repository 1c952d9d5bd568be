// The nginx configuration the tests run and docs/CLUSTER.md shows: sticky by client address (every
// request of a long-polling session must reach the node that holds it) and the WebSocket upgrade
// headers passed on.

/**
 * @param {{listen: string, upstreams: string[], prefix: string}} options
 *   listen: "127.0.0.1:8080"; upstreams: ["127.0.0.1:3001", ...]; prefix: a directory nginx may write to
 */
export function nginxConfig({ listen, upstreams, prefix }) {
  return `daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;

events {
  worker_connections 1024;
}

http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;

  # "Connection: upgrade" only when the client asked for an upgrade.
  map $http_upgrade $connection_upgrade {
    default upgrade;
    '' close;
  }

  upstream switchyard {
    # Sticky sessions: the same client address always reaches the same node. (ip_hash does the same
    # but hashes only the first three octets of an IPv4 address.)
    hash $remote_addr consistent;
${upstreams.map((u) => `    server ${u};`).join("\n")}
  }

  server {
    listen ${listen};

    location /socket.io/ {
      proxy_pass http://switchyard;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      # Longer than pingInterval + pingTimeout (25 s + 20 s), so idle connections are not cut.
      proxy_read_timeout 75s;
      proxy_buffering off;
    }
  }
}
`;
}
