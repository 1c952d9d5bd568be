// Waiting for events with a bound, shared by every Node test suite (no package imports, so any suite
// can load it by relative path whatever its own node_modules hold).

/** Resolves with the arguments of the next `event` on `emitter`, or rejects after `ms`. */
export function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for "${event}"`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/** Resolves with the first argument of the next `event`. */
export async function next(emitter, event, ms = 5000) {
  const [first] = await once(emitter, event, ms);
  return first;
}
