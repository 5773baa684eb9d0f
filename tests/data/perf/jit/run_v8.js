const fs = require('fs');
const m = new WebAssembly.Module(fs.readFileSync(process.argv[2]));
const inst = new WebAssembly.Instance(m, {env: {a: x => x, b: x => x & 1}});
const t = Date.now(); let s = 0;
while (Date.now() - t < 800) s ^= inst.exports.run(50);
console.log(s);
