// Ground truth for wasmprof's source-map decoder: Mozilla's npm `source-map` (0.7).
// usage: node sourcemap_truth.js MAP_FILE [OFFSET ...]
// Prints one JSON object: {"mappings": [[generatedColumn, source|null, line|null,
// column|null, name|null], ...] in generated order, "lookups": {offset: {source, line,
// column, name}}} where lookups use originalPositionFor(line 1, column offset,
// GREATEST_LOWER_BOUND) exactly as a devtools does for a Wasm offset.
const fs = require("fs");
const path = require("path");
const { SourceMapConsumer } = require(path.join(process.env.WASMPROF_NPM_TOOLS, "source-map"));

(async () => {
  const raw = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const offsets = process.argv.slice(3).map(Number);
  await SourceMapConsumer.with(raw, null, (c) => {
    const mappings = [];
    c.eachMapping((m) => {
      mappings.push([m.generatedColumn, m.source, m.originalLine, m.originalColumn, m.name]);
    }, null, SourceMapConsumer.GENERATED_ORDER);
    const lookups = {};
    for (const off of offsets) {
      lookups[off] = c.originalPositionFor({ line: 1, column: off,
                                             bias: SourceMapConsumer.GREATEST_LOWER_BOUND });
    }
    process.stdout.write(JSON.stringify({ mappings, lookups }));
  });
})().catch((e) => { console.error(e); process.exit(1); });
