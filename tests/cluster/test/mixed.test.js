// A mixed cluster on one Redis: a Node socket.io 4.8 server with @socket.io/redis-adapter and two
// Switchyard nodes, in classic mode and then sharded mode. Every cluster operation must cross both
// ways, and nothing may time out.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import {
  startRedis,
  startMixedTrio,
  connect,
  cmd,
  nextEvent,
  record,
  countEvents,
  eventually,
  sleep,
  stopAll,
  switchyardEmit,
} from "../lib/cluster.js";

// "sharded" is the dynamic subscription mode (Node's default); the other two run the same tests.
for (const variant of ["classic", "sharded", "sharded/static", "sharded/dynamic-private"]) {
  const [mode, subscriptionMode = "dynamic"] = variant.split("/");
  describe(`mixed cluster, ${variant} mode`, () => {
    let redis, nodeServer, sy1, sy2;
    let cn, c1, c2; // clients on the Node server and on the two Switchyard nodes

    before(async () => {
      redis = await startRedis();
      // Every server sees three servers before the tests start.
      ({ nodeServer, sy1, sy2, cn, c1, c2 } = await startMixedTrio({ url: redis.url, mode, subscriptionMode }));
    });

    after(stopAll);

    it("broadcasts to all cross both ways", async () => {
      for (const sender of [cn, c1, c2]) {
        const got = [cn, c1, c2].map((c) => nextEvent(c, "hello"));
        assert.equal(await cmd(sender, "broadcast", { event: "hello", args: [sender.label, { n: 1 }] }), true);
        for (const args of await Promise.all(got)) {
          assert.deepEqual(args, [sender.label, { n: 1 }]);
        }
      }
    });

    it("room, multi-room and except broadcasts reach exactly their members", async () => {
      await cn.emitWithAck("join", ["red", "blue"]);
      await c1.emitWithAck("join", "blue");
      await c2.emitWithAck("join", "red");
      await sleep(150); // sharded dynamic mode subscribes to room channels asynchronously
      const seen = new Map([cn, c1, c2].map((c) => [c, record(c, "r")]));
      // One end marker from each server after its broadcasts: a server's messages arrive in order.
      const done = [cn, c1, c2].map((c) => countEvents(c, "r-end", 3));
      await cmd(c1, "broadcast", { to: ["red"], event: "r", args: ["red"] });
      await cmd(cn, "broadcast", { to: ["blue"], event: "r", args: ["blue"] });
      await cmd(c2, "broadcast", { to: ["red", "blue"], event: "r", args: ["red+blue"] });
      await cmd(cn, "broadcast", { except: ["red"], event: "r", args: ["not-red"] });
      await cmd(c1, "broadcast", { to: ["blue"], except: ["red"], event: "r", args: ["blue-not-red"] });
      for (const c of [cn, c1, c2]) await cmd(c, "broadcast", { event: "r-end" });
      await Promise.all(done);
      const names = (c) => seen.get(c).map(([name]) => name).sort();
      assert.deepEqual(names(cn), ["blue", "red", "red+blue"]);
      assert.deepEqual(names(c1), ["blue", "blue-not-red", "not-red", "red+blue"]);
      assert.deepEqual(names(c2), ["red", "red+blue"]);
    });

    it("binary crosses as binary both ways", async () => {
      const fromSwitchyard = nextEvent(cn, "bin");
      await cmd(c1, "broadcast", { to: [cn.id], event: "bin", args: ["x"] });
      assert.deepEqual(await fromSwitchyard, ["x"]);
      const got = nextEvent(c2, "bin");
      nodeServer.io.to(c2.id).emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from("hi") });
      const [buffer, nested] = await got;
      assert.deepEqual([...buffer], [1, 2, 3]);
      assert.equal(Buffer.from(nested.nested).toString(), "hi");
    });

    it("fetchSockets sees every server's sockets, both ways", async () => {
      await c1.emitWithAck("setData", { who: "sy1" });
      await cn.emitWithAck("setData", { who: "node" });
      for (const asker of [cn, c1, c2]) {
        const sockets = await cmd(asker, "fetchSockets");
        assert.deepEqual(sockets.map((s) => s.id).sort(), [cn.id, c1.id, c2.id].sort(), `asked ${asker.label}`);
        assert.deepEqual(sockets.find((s) => s.id === c1.id).data, { who: "sy1" });
        assert.deepEqual(sockets.find((s) => s.id === cn.id).data, { who: "node" });
        assert.ok(sockets.find((s) => s.id === cn.id).rooms.includes("red"));
      }
      const inRed = await cmd(c1, "fetchSockets", { to: ["red"] });
      assert.deepEqual(inRed.map((s) => s.id).sort(), [cn.id, c2.id].sort());
    });

    it("serverSideEmit with acks works both ways", async () => {
      const fromNode = await cmd(cn, "serverSideEmit", { event: "ping", args: [7] });
      assert.equal(fromNode.error, undefined, JSON.stringify(fromNode));
      assert.deepEqual(fromNode.responses.map((r) => r[0]).sort(), ["switchyard", "switchyard"]);
      assert.ok(fromNode.responses.every((r) => r[2] === 7));
      const fromSwitchyard = await cmd(c1, "serverSideEmit", { event: "ping", args: ["x"] });
      assert.equal(fromSwitchyard.error, undefined, JSON.stringify(fromSwitchyard));
      assert.deepEqual(fromSwitchyard.responses.map((r) => r[0]).sort(), ["node", "switchyard"]);
      // Switchyard servers without a handler answer empty: a Node requester does not wait for its timeout.
      const started = Date.now();
      const unheard = await cmd(cn, "serverSideEmit", { event: "nobody-listens", args: [] });
      assert.equal(unheard.error, undefined, JSON.stringify(unheard));
      assert.equal(unheard.responses.length, 2);
      assert.ok(Date.now() - started < 1000);
      // Without acks, every other server's handler runs.
      await cmd(c2, "serverSideEmitNoAck", { event: "note", args: ["from-sy2"] });
      await eventually("the Node server to get the note", async () => (await cmd(cn, "notes")).length === 1);
      await eventually("sy1 to get the note", async () => (await cmd(c1, "notes")).length === 1);
      assert.deepEqual(await cmd(cn, "notes"), [["from-sy2"]]);
    });

    it("broadcast with acks gathers every client's answer, from either kind of server", async () => {
      for (const asker of [cn, c1]) {
        const result = await cmd(asker, "emitWithAck", { event: "ask", args: [1], timeout: 3000 });
        assert.equal(result.error, undefined, JSON.stringify(result));
        assert.deepEqual(result.responses.sort(), ["node-client", "sy1-client", "sy2-client"]);
      }
    });

    it("remote join, leave and disconnect cross both ways", async () => {
      await cmd(cn, "socketsJoin", { to: [c1.id], rooms: ["joined"] });
      await cmd(c2, "socketsJoin", { to: [cn.id], rooms: ["joined"] });
      await eventually("both to be in 'joined'", async () => {
        const members = await cmd(c2, "fetchSockets", { to: ["joined"] });
        return members.length === 2;
      });
      await cmd(c1, "socketsLeave", { to: ["joined"], rooms: ["joined"] });
      await eventually("'joined' to be empty", async () => (await cmd(cn, "fetchSockets", { to: ["joined"] })).length === 0);
      if (mode === "classic") {
        const rooms = await nodeServer.io.of("/").adapter.allRooms();
        assert.ok(rooms.has("blue") && rooms.has("red"), [...rooms].join(","));
        const fromSwitchyard = await cmd(c1, "allRooms");
        assert.ok(fromSwitchyard.includes("red") && fromSwitchyard.includes("blue"), fromSwitchyard.join(","));
      }
    });

    it("@socket.io/redis-emitter reaches Switchyard's clients; switchyard emit reaches Node's", async () => {
      if (mode === "classic") {
        const client = createClient({ url: redis.url });
        await client.connect();
        try {
          const emitter = new Emitter(client);
          const got = [nextEvent(c1, "from-emitter"), nextEvent(c2, "from-emitter")];
          emitter.to("blue").emit("from-emitter", "blue only");
          emitter.emit("from-emitter", "everyone");
          const [a1, a2] = await Promise.all(got);
          assert.deepEqual(a1, ["blue only"]); // c1 is in blue: it sees the room emit first
          assert.deepEqual(a2, ["everyone"]);
          emitter.in(c2.id).socketsJoin("by-emitter");
          await eventually("the emitter's join", async () => (await cmd(cn, "fetchSockets", { to: ["by-emitter"] })).length === 1);
        } finally {
          await client.disconnect();
        }
      }
      const got = nextEvent(cn, "from-cli");
      await switchyardEmit(["--redis", redis.url, "--mode", mode, "--room", "red", "from-cli", '{"k":1}', "word"]);
      assert.deepEqual(await got, [{ k: 1 }, "word"]);
    });

    it("a disconnect request closes the socket wherever it is", async () => {
      const gone = nextEvent(c2, "disconnect");
      await cmd(cn, "disconnectSockets", { to: [c2.id] });
      assert.equal((await gone)[0], "io server disconnect");
      const gone1 = nextEvent(cn, "disconnect");
      await cmd(c1, "disconnectSockets", { to: [cn.id] });
      assert.equal((await gone1)[0], "io server disconnect");
    });
  });
}
