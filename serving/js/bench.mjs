#!/usr/bin/env node
// Single-request decision latency of the JavaScript router.
//
//   node serving/js/bench.mjs BUNDLE_DIR [--seconds S]
//
// Replays the requests of the bundle's conformance vectors one at a time (route = features + predictions
// for every candidate + policy), after a warm-up, and prints load time, p50 / p99 per decision in
// microseconds and decisions per second on one thread.

import { performance } from "node:perf_hooks";

import { RouteRequest, Router } from "./beast-router.mjs";

function main(argv) {
  const args = [...argv];
  let seconds = 2;
  const at = args.indexOf("--seconds");
  if (at >= 0) {
    seconds = Number(args[at + 1]);
    args.splice(at, 2);
  }
  if (args.length !== 1 || !(seconds > 0)) {
    process.stderr.write("usage: node serving/js/bench.mjs BUNDLE_DIR [--seconds S]\n");
    return 2;
  }
  const t0 = performance.now();
  const router = Router.load(args[0]);
  const loadMs = performance.now() - t0;
  const rel = router.bundle.manifest.conformance?.file ?? "conformance.jsonl";
  const requests = router.bundle
    .text(rel)
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => RouteRequest.fromDict(JSON.parse(l).request));
  if (!requests.length) throw new Error(`${rel}: no requests to replay`);
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
