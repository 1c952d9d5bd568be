// The fixture server for these tests: Switchyard's interop server (target/release/interop) with
// INTEROP_ALLOW_EIO3=1, started per test file by the Node interop suite's launcher (which needs only
// Node's own modules). INTEROP_SERVER_CMD runs another server instead, as in tests/node.
import { useServer as useInteropServer } from "../../node/lib/server.js";

export function useServer() {
  return useInteropServer({ env: { INTEROP_ALLOW_EIO3: "1" } });
}
