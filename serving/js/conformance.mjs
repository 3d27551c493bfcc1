#!/usr/bin/env node
// Replay a bundle's conformance vectors with the JavaScript router.
//
//   node serving/js/conformance.mjs BUNDLE_DIR [--vectors FILE]
//
// Vectors come from BUNDLE_DIR/conformance.jsonl (checked against the manifest like every bundle file) or
// from FILE. Each must reproduce: input tokens exactly, prompt / text / embedding features within 1e-6
// relative or 1e-9 absolute (null = NaN; a vector without features.embed, written before that family
// existed, does not check it), predicted quality and cost the same way, the candidate order, and the
// decision's model and code exactly. Optional fields beyond serving/conformance.py `record`: "observe"
// ([[model, ok, now], ...] fed to the circuit breaker first) and "now" (seconds, passed to route).
// Prints one line per disagreement and "N vectors, M mismatches"; exit 0 only if N > 0 and M = 0,
// 1 on a mismatch, 2 when the bundle or the file cannot be read.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";

import { RouteRequest, Router } from "./beast-router.mjs";

const RTOL = 1e-6;
const ATOL = 1e-9;

const close = (want, got) => {
  const a = want === null ? NaN : want; // JSON null = NaN
  if (Number.isNaN(a) || Number.isNaN(got)) return Number.isNaN(a) && Number.isNaN(got);
  if (a === got) return true;
  return Math.abs(a - got) <= ATOL + RTOL * Math.abs(got); // numpy.allclose(want, got)
};

function compareList(n, key, want, got, problems) {
  if ((want === null) !== (got === null)) {
    problems.push(`vector ${n}: ${key}: expected ${want === null ? "null" : "numbers"}, got ${got === null ? "null" : "numbers"}`);
    return;
  }
  if (want === null) return;
  if (!Array.isArray(want) || want.length !== got.length) {
    problems.push(`vector ${n}: ${key}: expected ${Array.isArray(want) ? want.length : "no"} values, got ${got.length}`);
    return;
  }
  const bad = [];
  for (let i = 0; i < want.length; i++) if (!close(want[i], got[i])) bad.push(i);
  if (bad.length) {
    const i = bad[0];
    problems.push(`vector ${n}: ${key} differ at ${bad.length} position(s), first [${i}]: expected ${want[i]}, got ${got[i]}`);
  }
}

export function replay(router, vectors) {
  const problems = [];
  let mismatched = 0;
  vectors.forEach((vec, idx) => {
    const n = idx + 1;
    const before = problems.length;
    try {
      const req = RouteRequest.fromDict(vec.request);
      const f = router.requestFeatures(req);
      if (f.inputTokens !== vec.features.input_tokens) problems.push(`vector ${n}: features.input_tokens: expected ${vec.features.input_tokens}, got ${f.inputTokens}`);
      compareList(n, "features.prompt", vec.features.prompt, Array.from(f.prompt), problems);
      compareList(n, "features.text", vec.features.text, f.text === null ? null : Array.from(f.text), problems);
      // embedding features: compared when the vector records them (null = the bundle has no embedding family)
      if (vec.features.embed !== undefined) compareList(n, "features.embed", vec.features.embed, f.embed === null ? null : Array.from(f.embed), problems);
      if (JSON.stringify(vec.candidates) !== JSON.stringify(router.models)) problems.push(`vector ${n}: candidates differ: expected ${JSON.stringify(vec.candidates)}, got ${JSON.stringify(router.models)}`);
      const { quality, costUsd } = router.predict(req);
      compareList(n, "quality", vec.quality, Array.from(quality), problems);
      compareList(n, "cost_usd", vec.cost_usd, Array.from(costUsd), problems);
      for (const [model, ok, t] of vec.observe ?? []) router.observe(model, ok, t);
      const d = vec.now === undefined ? router.route(req) : router.route(req, vec.now);
      if (d.model !== vec.decision.model || d.code !== vec.decision.code) {
        problems.push(`vector ${n}: decision {model: ${d.model}, code: ${d.code}} != expected {model: ${vec.decision.model}, code: ${vec.decision.code}} (${d.reason})`);
      }
    } catch (exc) {
      problems.push(`vector ${n}: ${exc.name}: ${exc.message}`);
    }
    if (problems.length > before) mismatched++;
  });
  return { problems, mismatched };
}

function parseLines(text, source) {
  const out = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line));
    } catch (exc) {
      throw new Error(`${source}: line ${i + 1}: not valid JSON (${exc.message})`);
    }
  });
  return out;
}

function main(argv) {
  const args = [...argv];
  let vectorsFile = null;
  const at = args.indexOf("--vectors");
  if (at >= 0) {
    vectorsFile = args[at + 1];
    if (!vectorsFile) throw new Error("--vectors needs a FILE");
    args.splice(at, 2);
  }
  if (args.length !== 1 || args[0].startsWith("-")) {
    process.stderr.write("usage: node serving/js/conformance.mjs BUNDLE_DIR [--vectors FILE]\n");
    return 2;
  }
  const router = Router.load(resolve(args[0]));
  let vectors;
  if (vectorsFile) {
    vectors = parseLines(readFileSync(vectorsFile, "utf8"), vectorsFile);
  } else {
    const rel = router.bundle.manifest.conformance?.file ?? "conformance.jsonl";
    vectors = parseLines(router.bundle.text(rel), rel);
  }
  const { problems, mismatched } = replay(router, vectors);
  for (const p of problems) process.stdout.write(p + "\n");
  process.stdout.write(`${vectors.length} vectors, ${mismatched} mismatches\n`);
  return vectors.length > 0 && mismatched === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("conformance.mjs")) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (exc) {
    process.stderr.write(`error: ${exc.message}\n`);
    process.exitCode = 2;
  }
}
