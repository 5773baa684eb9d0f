// Run one export of a Wasm module under node's V8 and print the trap's stack as JSON:
// {"message": ..., "frames": [{"name", "func_index", "offset"}]} innermost first, from
// err.stack lines `at NAME (wasm://wasm/<hash>:wasm-function[N]:0xOFF)`.
// usage: node run_v8.js MODULE.wasm EXPORT [INT_ARG ...]
const fs = require("fs");
const [file, exportName, ...args] = process.argv.slice(2);
const bytes = fs.readFileSync(file);
const imports = { env: { abort() { throw new Error("abort called"); },
                         seed() { return 42; }, trace() {} } };
WebAssembly.instantiate(bytes, imports).then(({ instance }) => {
  try {
    instance.exports[exportName](...args.map(Number));
    process.stdout.write(JSON.stringify({ message: null, frames: [] }));
  } catch (e) {
    const frames = [];
    for (const line of String(e.stack).split("\n")) {
      const m = /at (?:(\S+) )?\(?wasm:\/\/wasm\/[^:]+:wasm-function\[(\d+)\]:0x([0-9a-f]+)\)?/.exec(line);
      if (m) frames.push({ name: m[1] || null, func_index: Number(m[2]), offset: parseInt(m[3], 16) });
    }
    process.stdout.write(JSON.stringify({ message: String(e.message), frames }));
  }
});
