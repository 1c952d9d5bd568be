// A mixed cluster on a three-master Redis Cluster, sharded mode: a Node socket.io server with
// createShardedAdapter on a node-redis cluster client, and two Switchyard nodes. Channels are spread
// over the masters by hash slot, so this checks slot routing on both sides.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startRedisCluster,
  startMixedTrio,
  cmd,
  nextEvent,
  sleep,
  stopAll,
} from "../lib/cluster.js";

describe("mixed cluster, sharded mode over a Redis Cluster", () => {
  let cn, c1, c2;

  before(async () => {
    const { urls } = await startRedisCluster();
    ({ cn, c1, c2 } = await startMixedTrio({ clusterNodes: urls, mode: "sharded" }));
  });

  after(stopAll);

  it("broadcasts to all and to rooms cross both ways", async () => {
    for (const sender of [cn, c1]) {
      const got = [cn, c1, c2].map((c) => nextEvent(c, "hello"));
      await cmd(sender, "broadcast", { event: "hello", args: [sender.label] });
      for (const args of await Promise.all(got)) assert.deepEqual(args, [sender.label]);
    }
    await cn.emitWithAck("join", "team");
    await c2.emitWithAck("join", "team");
    await sleep(200); // room channels are subscribed asynchronously
    for (const sender of [c1, cn]) {
      const got = [nextEvent(cn, "team"), nextEvent(c2, "team")];
      await cmd(sender, "broadcast", { to: ["team"], event: "team", args: [sender.label] });
      for (const args of await Promise.all(got)) assert.deepEqual(args, [sender.label]);
    }
  });

  it("fetchSockets, serverSideEmit and broadcast acks cross both ways", async () => {
    for (const asker of [cn, c1]) {
      const sockets = await cmd(asker, "fetchSockets");
      assert.deepEqual(sockets.map((s) => s.id).sort(), [cn.id, c1.id, c2.id].sort());
      const ping = await cmd(asker, "serverSideEmit", { event: "ping", args: [1] });
      assert.equal(ping.error, undefined, JSON.stringify(ping));
      assert.equal(ping.responses.length, 2);
      const acks = await cmd(asker, "emitWithAck", { event: "ask" });
      assert.equal(acks.error, undefined, JSON.stringify(acks));
      assert.deepEqual(acks.responses.sort(), ["node-client", "sy1-client", "sy2-client"]);
    }
  });
});
