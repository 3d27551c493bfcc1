#!/usr/bin/env node
// Single-request decision latency of the JavaScript router.
//
//   node serving/js/bench.mjs BUNDLE_DIR [--seconds S] [--requests FILE.jsonl] [--json]
//
// Replays requests one at a time (route = features + predictions for every candidate + policy), after a
// warm-up, and prints load time, p50 / p99 per decision in microseconds and decisions per second on one
// thread. The requests are the bundle's conformance vectors, or one request object per line of FILE.jsonl
// (what `beast bench route` writes, so both routers are timed on the same prompts); --json prints one
// JSON object {load_ms, decisions, p50_us, p99_us, per_s} instead of text.

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

import { RouteRequest, Router } from "./beast-router.mjs";

function main(argv) {
  const args = [...argv];
  const option = (name) => {
    const at = args.indexOf(name);
    if (at < 0) return undefined;
    const value = args[at + 1];
    args.splice(at, 2);
    return value;
  };
  const seconds = Number(option("--seconds") ?? 2);
  const requestsFile = option("--requests");
  const asJson = args.includes("--json");
  if (asJson) args.splice(args.indexOf("--json"), 1);
  if (args.length !== 1 || !(seconds > 0)) {
    process.stderr.write("usage: node serving/js/bench.mjs BUNDLE_DIR [--seconds S] [--requests FILE.jsonl] [--json]\n");
    return 2;
  }
  const t0 = performance.now();
  const router = Router.load(args[0]);
  const loadMs = performance.now() - t0;
  const rel = router.bundle.manifest.conformance?.file ?? "conformance.jsonl";
  const lines = (requestsFile === undefined ? router.bundle.text(rel) : readFileSync(requestsFile, "utf8")).split("\n");
  const requests = lines
    .filter((l) => l.trim())
    .map((l) => RouteRequest.fromDict(requestsFile === undefined ? JSON.parse(l).request : JSON.parse(l)));
  if (!requests.length) throw new Error(`${requestsFile ?? rel}: no requests to replay`);
  const warm = performance.now();
  for (let i = 0; performance.now() - warm < 500; i++) router.route(requests[i % requests.length], 0);
  const times = [];
  const start = performance.now();
  for (let i = 0; performance.now() - start < seconds * 1000; i++) {
    const t = performance.now();
    router.route(requests[i % requests.length], 0);
    times.push((performance.now() - t) * 1000);
  }
  const total = (performance.now() - start) / 1000;
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
  if (asJson) {
    process.stdout.write(JSON.stringify({ load_ms: loadMs, decisions: times.length, p50_us: q(0.5), p99_us: q(0.99), per_s: times.length / total }) + "\n");
    return 0;
  }
  process.stdout.write(
    `bundle ${args[0]}: ${router.models.length} candidates, quality heads ${router.heads}, policy ${router.policy.name}, loaded in ${loadMs.toFixed(0)} ms\n` +
      `${times.length} decisions: p50 ${q(0.5).toFixed(1)} us, p99 ${q(0.99).toFixed(1)} us, ${(times.length / total).toFixed(0)} decisions/s (one thread)\n`,
  );
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (exc) {
  process.stderr.write(`error: ${exc.message}\n`);
  process.exitCode = 2;
}
