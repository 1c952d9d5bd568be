// The nginx configuration the tests run and docs/CLUSTER.md shows: sticky by client address (every
// request of a long-polling session must reach the node that holds it) and the WebSocket upgrade
// headers passed on. No package imports: tests/kafka's fault test loads it too.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { eventually, freePort, onCleanup, stopChild } from "../../lib/process.js";

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

function nginxBinary() {
  for (const candidate of ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new Error("nginx not found (scripts/install-deps.sh installs it)");
}

/** Runs nginx with {@link nginxConfig} in front of `upstreams` ("127.0.0.1:PORT"); resolves once it proxies. */
export async function startNginx(upstreams) {
  const prefix = mkdtempSync(path.join(os.tmpdir(), "switchyard-nginx-"));
  mkdirSync(path.join(prefix, "logs"));
  const port = await freePort();
  const conf = path.join(prefix, "nginx.conf");
  writeFileSync(conf, nginxConfig({ listen: `127.0.0.1:${port}`, upstreams, prefix }));
  const child = spawn(nginxBinary(), ["-p", prefix, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    `nginx to listen on ${port} (${stderr})`,
    () =>
      new Promise((resolve) => {
        const req = http.get(`${url}/socket.io/?EIO=4&transport=polling`, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        });
        req.on("error", () => resolve(false));
      }),
    10000,
  );
  // Bounded (SIGTERM, SIGKILL after 5 s); safe to call twice, and stopAll() calls it too.
  const stop = async () => {
    await stopChild(child, { name: `nginx on ${port}` });
    rmSync(prefix, { recursive: true, force: true });
  };
  onCleanup(stop);
  return { url, port, stop };
}
