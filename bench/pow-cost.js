// Cost of the web portal's browser check in V8 (the engine of Chromium): runs the SHA-256 of
// crates/web/static/pow.js on challenges like the server's and prints a table of the time to
// solve at each difficulty. Run: node bench/pow-cost.js
"use strict";
const fs = require("fs");
const path = require("path");
const src = fs.readFileSync(path.join(__dirname, "../crates/web/static/pow.js"), "utf8");
// The solver's hash and bit count, taken from the shipped file (it is an IIFE for the page).
const body = src.slice(src.indexOf("var K"), src.indexOf("function start()"));
const { sha256Words, zeroBits } = new Function(body + "; return { sha256Words, zeroBits };")();

function solve(challenge, bits) {
  for (let i = 0; ; i++) {
    if (zeroBits(sha256Words(challenge + ":" + i)) >= bits) return i;
  }
}

console.log("| pow_bits | challenges | mean ms | worst ms | mean hashes |");
console.log("|---:|---:|---:|---:|---:|");
for (const bits of [12, 14, 16, 18, 20]) {
  const n = bits >= 20 ? 5 : 20;
  let total = 0, worst = 0, hashes = 0;
  for (let k = 0; k < n; k++) {
    const c = `v1.1795564833.${bits}.${(k * 2654435761 >>> 0).toString(16).padStart(24, "0")}.0123456789abcdef0123456789abcdef`;
    const t = process.hrtime.bigint();
    hashes += solve(c, bits) + 1;
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    total += ms;
    worst = Math.max(worst, ms);
  }
  console.log(`| ${bits} | ${n} | ${(total / n).toFixed(0)} | ${worst.toFixed(0)} | ${Math.round(hashes / n)} |`);
}
