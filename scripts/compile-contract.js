// Compiles p2pnode/chain/contracts/RewardAnchor.sol with the pinned solc-js (installed by
// scripts/build-contract.sh into .solc/) and writes the artifact: the compiler, the
// settings, the ABI and the creation bytecode, as JSON with sorted keys.
//
//   node scripts/compile-contract.js <solc version> <source.sol> <output.json>
"use strict";

const fs = require("fs");
const path = require("path");

const [version, source, output] = process.argv.slice(2);
if (!version || !source || !output) {
  console.error("usage: compile-contract.js <solc version> <source.sol> <output.json>");
  process.exit(2);
}

const solc = require(path.join(__dirname, "..", ".solc", "node_modules", "solc"));
const long = solc.version();
if (!long.startsWith(version + "+")) {
  console.error(`solc ${long} is not the pinned ${version}`);
  process.exit(1);
}

const NAME = "RewardAnchor";
const FILE = NAME + ".sol";
const settings = {
  evmVersion: "cancun",
  metadata: { appendCBOR: false, bytecodeHash: "none" },
  optimizer: { enabled: true, runs: 200 },
};
const input = {
  language: "Solidity",
  sources: { [FILE]: { content: fs.readFileSync(source, "utf8") } },
  settings: { ...settings, outputSelection: { [FILE]: { [NAME]: ["abi", "evm.bytecode.object"] } } },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
for (const e of out.errors || []) console.error(e.formattedMessage || e.message);
if (errors.length) process.exit(1);

const contract = out.contracts[FILE][NAME];
function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  }
  return v;
}
const artifact = sorted({
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  compiler: long.replace(/\.Emscripten\.clang$/, ""),
  settings,
});
fs.writeFileSync(output, JSON.stringify(artifact, null, 1) + "\n");
